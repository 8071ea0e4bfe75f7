"""Notification delivery with real components: the Temporal dev server, the worker (as its own
process where it is killed), and HTTP receivers this test starts on loopback ports.

Events are signalled to ``notifications/<ns>`` by the test, as a GitRepo or an image policy
run would; ``tests/notifications/test_rollout_events.py`` covers the GitRepo sending them
from a real rollout.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from temporalio.client import Client

from activities.secrets import FileSecretStore
from devenv.temporal import TemporalDevServer
from flotilla.errors import FlotillaError
from flotilla.ids import notification_workflow_id
from flotilla.notifications import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    EventKind,
    NotificationEvent,
    delivery_key,
)
from starters.control import Control
from tests.e2e.harness import start_flotilla
from tests.e2e.test_worker_restart import worker_process
from workflows.notifications_models import NOTIFY_SIGNAL, NotifyRequest

HMAC_KEY = "test-hmac-key"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def key(self) -> str:
        return self.headers[DELIVERY_HEADER]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP receiver on a fixed loopback port that can go down and come back."""

    port: int
    delay: float = 0.0
    got: list[Received] = field(default_factory=list)
    # Requests read, including those still being held (``delay``).
    arrived: int = 0
    runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.arrived += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            self.got.append(Received(request.path, dict(request.headers), body))
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def on(self, path: str) -> list[Received]:
        return [r for r in self.got if r.path == path]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def config(ns: str, providers: dict[str, str]) -> str:
    """One Provider per ``name: type`` and an Alert sending every event of gitrepo ``repo``
    to each."""
    docs = []
    for name, kind in providers.items():
        docs.append(
            f"apiVersion: notifications.flotilla.dev/v1alpha1\nkind: Provider\n"
            f"metadata: {{name: {name}, namespace: {ns}}}\n"
            f"spec: {{type: {kind}, secretRef: {{name: {name}-secret}}}}\n"
        )
        docs.append(
            f"apiVersion: notifications.flotilla.dev/v1alpha1\nkind: Alert\n"
            f"metadata: {{name: all-to-{name}, namespace: {ns}}}\n"
            f"spec:\n  providerRef: {{name: {name}}}\n"
            f"  eventKinds: [{', '.join(k.value for k in EventKind)}]\n"
            f"  eventSources: [{{kind: GitRepo, name: repo}}]\n"
        )
    return "---\n".join(docs)


def events(ns: str, first: int, count: int) -> list[NotificationEvent]:
    kinds = [EventKind.ROLLOUT_STARTED, EventKind.ERR_APPLIED, EventKind.BUNDLE_READY]
    return [
        NotificationEvent(
            kind=kinds[i % len(kinds)],
            namespace=ns,
            gitrepo="repo",
            bundle="repo-web",
            commit=f"{i:040x}",
            clusters=["prod-1", "prod-2"],
            workflow_id=f"bundle/{ns}/repo-web",
            key=f"gitrepo/{ns}/repo/test-run#{i}",
        )
        for i in range(first, first + count)
    ]


async def until(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.2)


async def signal_events(client: Client, ns: str, batch: list[NotificationEvent]) -> None:
    await client.get_workflow_handle(notification_workflow_id(ns)).signal(
        NOTIFY_SIGNAL, NotifyRequest(events=batch)
    )


async def delivered(control: Control, ns: str, count: int) -> None:
    """Wait until every provider's deliveries up to ``count`` completed in history."""
    deadline = time.monotonic() + 60
    while True:
        status = await control.notification_status(ns)
        if all(p.delivered >= count and not p.queued for p in status.providers):
            return
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.2)


def check_signed(message: Received) -> None:
    expected = hmac.new(HMAC_KEY.encode(), message.body, hashlib.sha256).hexdigest()
    assert message.headers[SIGNATURE_HEADER] == f"sha256={expected}"


async def test_exactly_one_message_per_event_across_a_worker_sigkill(
    temporal_server: TemporalDevServer, temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    ns = f"nt-{uuid.uuid4().hex[:8]}"
    receiver = Receiver(free_port())
    await receiver.start()
    secrets = FileSecretStore(tmp_path / "secrets")
    for name in ("hook", "slack", "teams"):
        data = {"address": receiver.url(f"/{name}")}
        if name == "hook":
            data["token"] = HMAC_KEY
        secrets.put(ns, f"{name}-secret", data)
    control = Control(temporal_client, task_queue=task_queue, secrets=secrets)
    paths = ("/hook", "/slack", "/teams")
    with worker_process(tmp_path, temporal_server, task_queue, ns) as worker:
        try:
            worker.start()
            await control.apply_text(
                config(ns, {"hook": "webhook", "slack": "slack", "teams": "msteams"}),
                file="n.yaml",
            )
            await signal_events(temporal_client, ns, events(ns, 0, 4))
            await until(lambda: all(len(receiver.on(p)) >= 4 for p in paths), "first batch")
            await delivered(control, ns, 4)

            # Killed while idle (every delivery recorded in history); the next events arrive
            # while no worker runs.
            worker.kill()
            await signal_events(temporal_client, ns, events(ns, 4, 4))
            worker.start()
            await until(lambda: all(len(receiver.on(p)) >= 8 for p in paths), "second batch")
            await delivered(control, ns, 8)

            # Killed with a delivery in flight: the receiver holds each request for 3 s.
            receiver.delay = 3.0
            await signal_events(temporal_client, ns, events(ns, 8, 2))
            await until(lambda: receiver.arrived > len(receiver.got), "a request in flight")
            worker.kill()
            receiver.delay = 0.0
            worker.start()
            await until(
                lambda: all(len({r.key for r in receiver.on(p)}) >= 10 for p in paths),
                "third batch",
                timeout=180,
            )
            await asyncio.sleep(3)  # anything still coming would be a double
        finally:
            await receiver.stop()
            await temporal_client.get_workflow_handle(notification_workflow_id(ns)).terminate()

    sent = events(ns, 0, 10)
    for path in paths:
        got = receiver.on(path)
        counts = Counter(r.key for r in got)
        keys = [delivery_key(e, path.strip("/")) for e in sent]
        assert set(counts) == set(keys), (path, counts)
        # The first two batches, delivered around a kill of an idle worker: once each.
        assert [counts[k] for k in keys[:8]] == [1] * 8, (path, counts)
        # The batch killed mid-delivery: a repeat only of a request the dead worker had sent,
        # with the same key and body, so a receiver honouring the key sees it once.
        for key in keys[8:]:
            assert counts[key] <= 2, (path, counts)
            assert len({r.body for r in got if r.key == key}) == 1
    hooks = receiver.on("/hook")
    for message in hooks:
        check_signed(message)
    # Messages of one provider arrive in the order the events happened.
    commits = [m.json()["commit"] for m in hooks]
    assert sorted(dict.fromkeys(commits)) == list(dict.fromkeys(commits))
    slack = receiver.on("/slack")[0].json()
    assert slack["text"].startswith("bundle repo-web of gitrepo")
    assert slack["blocks"][0]["type"] == "section"
    teams = receiver.on("/teams")[0].json()
    assert teams["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"


async def test_a_receiver_that_is_down_delays_only_its_own_messages(
    temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    up = Receiver(free_port())
    down = Receiver(free_port())
    await up.start()
    fl = await start_flotilla(temporal_client, task_queue, tmp_path)
    ns = fl.namespace
    try:
        fl.control.secrets.put(ns, "up-secret", {"address": up.url("/up")})
        fl.control.secrets.put(ns, "down-secret", {"address": down.url("/down"), "token": HMAC_KEY})
        await fl.control.apply_text(config(ns, {"up": "slack", "down": "webhook"}), file="n.yaml")
        await signal_events(temporal_client, ns, events(ns, 0, 3))
        await until(lambda: len(up.on("/up")) == 3, "the receiver that is up")
        # The receiver has the messages a moment before their activity completes in history.
        deadline = time.monotonic() + 30
        while True:
            status = await fl.control.notification_status(ns)
            queued = {p.name: p.queued for p in status.providers}
            if queued["up"] == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert queued == {"down": 3, "up": 0}, queued

        await down.start()
        await until(lambda: len(down.on("/down")) == 3, "held messages", timeout=90)
        for message in down.on("/down"):
            check_signed(message)
        assert [m.json()["commit"][-1] for m in down.on("/down")] == ["0", "1", "2"]
        status = await fl.control.notification_status(ns)
        assert {p.name: (p.queued, p.delivered) for p in status.providers} == {
            "down": (0, 3),
            "up": (0, 3),
        }
    finally:
        await up.stop()
        await down.stop()
        await temporal_client.get_workflow_handle(notification_workflow_id(ns)).terminate()
        await fl.worker.stop()


async def test_an_alert_naming_a_missing_provider_is_refused_in_one_line(
    temporal_client: Client, task_queue: str, tmp_path: Path
) -> None:
    fl = await start_flotilla(temporal_client, task_queue, tmp_path)
    ns = fl.namespace
    text = (
        "apiVersion: notifications.flotilla.dev/v1alpha1\nkind: Alert\n"
        f"metadata: {{name: a, namespace: {ns}}}\n"
        "spec: {providerRef: {name: nope}, eventKinds: [ErrApplied], "
        "eventSources: [{kind: GitRepo}]}\n"
    )
    try:
        with pytest.raises(FlotillaError) as caught:
            await fl.control.apply_text(text, file="n.yaml")
        assert str(caught.value) == (
            f"alert a: spec.providerRef.name: 'nope' is not a Provider of namespace {ns!r} "
            "(apply the Provider first)"
        )
    finally:
        await temporal_client.get_workflow_handle(notification_workflow_id(ns)).terminate()
        await fl.worker.stop()
