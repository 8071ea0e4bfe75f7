"""Image polling against the real registry, git daemon and Temporal: a harness per test.

``ImageWorld`` runs a worker with the image-policy workflow and its activities on the test's
task queue, and plays the GitRepo workflow's part: it reads a commit with the real GitOps
activities and calls ``sync_image_schedules`` as the GitRepo workflow does after each commit.
``CountingProxy`` sits in front of the real registry to count requests; ``FaultServer`` is a
loopback fake that answers 401/429/500 for fault injection beside the real-registry tests.
"""

from __future__ import annotations

import asyncio
import http.client
import http.server
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
)
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.content import ContentStore, FileContentStore
from activities.gitops import GitOpsActivities
from activities.gitops_models import FetchRequest, GitSource, LsRemoteRequest
from activities.registry import RegistryActivities
from activities.schedules import ScheduleActivities, image_policy_prefix
from activities.schedules_models import ImagePolicyInput, SyncSchedulesRequest, SyncSchedulesResult
from activities.secrets import FileSecretStore, SecretStore
from activities.writeback import WriteBackActivities
from devenv.gitserver import GitDaemon, git
from devenv.registry import LocalRegistry
from flotilla.models import GitRepoSpec
from workflows.imagepolicy import ImagePolicyWorkflow
from workflows.imagepolicy_models import ImagePolicyResult

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    *,
    timeout: float = 60.0,
    interval: float = 0.3,
) -> T:
    """Probe until ``check`` holds; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    value = await probe()
    while not check(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)
        value = await probe()
    return value


def fleet_yaml(image: str, **scan: object) -> str:
    """One imageScans entry; ``tagName`` defaults to ``app``."""
    entry = {"image": image, "tagName": "app", **scan}
    return "imageScans:\n  - " + json.dumps(entry) + "\n"


def deployment_yaml(image_line: str, *, name: str = "app") -> str:
    return (
        "apiVersion: apps/v1\nkind: Deployment\n"
        f"metadata:\n  name: {name}\nspec:\n  template:\n    spec:\n      containers:\n"
        f"        - name: {name}\n          {image_line}\n"
    )


@dataclass
class ImageWorld:
    client: Client
    task_queue: str
    namespace: str
    gitrepo: str
    git_daemon: GitDaemon
    repo_name: str
    url: str
    gitops: GitOpsActivities
    schedules: ScheduleActivities
    spec: GitRepoSpec
    created: set[str] = field(default_factory=set)

    def head_file(self, path: str) -> str:
        work = self.git_daemon.working_copy(self.repo_name)
        git("pull", "-q", "--ff-only", "origin", "main", cwd=work)
        return (work / path).read_text()

    def log(self) -> list[str]:
        work = self.git_daemon.working_copy(self.repo_name)
        git("pull", "-q", "--ff-only", "origin", "main", cwd=work)
        return git("log", "--format=%s|%an", cwd=work).splitlines()

    async def sync(self, *, notifications: bool = True, **spec_changes: Any) -> SyncSchedulesResult:
        """What the GitRepo workflow does after reading a commit: read it, sync schedules
        (``notifications``: whether its registry snapshot says the namespace has a config)."""
        if spec_changes:
            self.spec = self.spec.model_copy(update=spec_changes)
        env = ActivityEnvironment()
        source = GitSource.from_spec(self.spec, self.namespace)
        head = env.run(self.gitops.ls_remote, LsRemoteRequest(source=source))
        fetched = env.run(
            self.gitops.fetch_bundles,
            FetchRequest(
                namespace=self.namespace, gitrepo=self.gitrepo, source=source, commit=head.commit
            ),
        )
        result = await env.run(
            self.schedules.sync_image_schedules,
            SyncSchedulesRequest(
                namespace=self.namespace,
                gitrepo=self.gitrepo,
                gitrepo_workflow_id=f"gitrepo/{self.namespace}/{self.gitrepo}",
                spec=self.spec,
                commit=head.commit,
                bundles=fetched.bundles,
                task_queue=self.task_queue,
                notifications=notifications,
            ),
        )
        self.created.update(result.created)
        return result

    def policy_id(self, scan: str = "app", bundle: str | None = None) -> str:
        return f"{image_policy_prefix(self.namespace, self.gitrepo)}{bundle or self.gitrepo}/{scan}"

    async def schedule_input(self, policy_id: str) -> ImagePolicyInput:
        description = await self.client.get_schedule_handle(policy_id).describe()
        action = description.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        [value] = await self.client.data_converter.decode(
            list(action.args),
            [ImagePolicyInput],
        )
        assert isinstance(value, ImagePolicyInput)
        return value

    async def run_ids(self, policy_id: str) -> list[tuple[str, str]]:
        """(workflow id, run id) of the schedule's recent runs; ids repeat within a second."""
        description = await self.client.get_schedule_handle(policy_id).describe()
        runs = [a.action for a in description.info.recent_actions]
        return [
            (r.workflow_id, r.first_execution_run_id)
            for r in runs
            if isinstance(r, ScheduleActionExecutionStartWorkflow)
        ]

    async def trigger(self, policy_id: str) -> tuple[str, str]:
        """Run the schedule's action now; return the run it started."""
        before = set(await self.run_ids(policy_id))
        await self.client.get_schedule_handle(policy_id).trigger()
        ids = await eventually(
            lambda: self.run_ids(policy_id), lambda ids: bool(set(ids) - before), timeout=20
        )
        [new] = sorted(set(ids) - before)
        return new

    async def run_once(self, policy_id: str) -> ImagePolicyResult:
        workflow_id, run_id = await self.trigger(policy_id)
        handle = self.client.get_workflow_handle(
            workflow_id, run_id=run_id, result_type=ImagePolicyResult
        )
        result = await handle.result()
        assert isinstance(result, ImagePolicyResult)
        return result

    async def cleanup(self) -> None:
        async for entry in await self.client.list_schedules():
            if entry.id.startswith(image_policy_prefix(self.namespace, self.gitrepo)):
                self.created.add(entry.id)
        for policy_id in self.created:
            try:
                await self.client.get_schedule_handle(policy_id).delete()
            except Exception:  # already deleted by the test
                continue


@pytest.fixture
def stores(tmp_path: Path) -> tuple[SecretStore, ContentStore]:
    return FileSecretStore(tmp_path / "secrets"), FileContentStore(tmp_path / "content")


@pytest.fixture
async def image_worker(
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    stores: tuple[SecretStore, ContentStore],
) -> AsyncIterator[tuple[GitOpsActivities, ScheduleActivities]]:
    secrets, content = stores
    gitops = GitOpsActivities(temporal_client, secrets, content, tmp_path / "git")
    registry = RegistryActivities(secrets)
    writeback = WriteBackActivities(gitops, tmp_path / "writeback")
    schedules = ScheduleActivities(temporal_client, content, gitops)
    with ThreadPoolExecutor(8) as pool:
        worker = Worker(
            temporal_client,
            task_queue=task_queue,
            workflows=[ImagePolicyWorkflow],
            activities=[
                registry.poll_registry,
                writeback.write_back,
                schedules.record_policy_state,
                schedules.request_gitrepo_sync,
            ],
            activity_executor=pool,
        )
        async with worker:
            yield gitops, schedules


@pytest.fixture
async def make_world(
    temporal_client: Client,
    task_queue: str,
    git_daemon: GitDaemon,
    image_worker: tuple[GitOpsActivities, ScheduleActivities],
) -> AsyncIterator[Callable[..., ImageWorld]]:
    worlds: list[ImageWorld] = []
    gitops, schedules = image_worker

    def make(files: dict[str, str | bytes], **spec: Any) -> ImageWorld:
        repo_name = f"img-{uuid.uuid4().hex[:10]}"
        url = git_daemon.create_repo(repo_name, files)
        world = ImageWorld(
            client=temporal_client,
            task_queue=task_queue,
            namespace=f"ns-{uuid.uuid4().hex[:6]}",
            gitrepo=repo_name,
            git_daemon=git_daemon,
            repo_name=repo_name,
            url=url,
            gitops=gitops,
            schedules=schedules,
            spec=GitRepoSpec.model_validate({"repo": url, "branch": "main", **spec}),
        )
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        await world.cleanup()


# ---------------------------------------------------------------------------------------------
# HTTP helpers: a counting proxy to the real registry, and a fault-injecting fake
# ---------------------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class CountingProxy:
    """Forwards every request to ``target`` (host:port) and counts them by method and path."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                with proxy._lock:
                    proxy.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(proxy.target, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _forward

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


Reply = tuple[int, dict[str, str], bytes]


class FaultServer:
    """A loopback fake registry: ``responder(method, path, headers)`` decides every answer."""

    def __init__(self, responder: Callable[[str, str, dict[str, str]], Reply]) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.requests.append((self.command, self.path, headers))
                status, out_headers, body = responder(self.command, self.path, headers)
                self.send_response(status)
                for key, value in out_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(registry: LocalRegistry) -> Iterator[CountingProxy]:
    with CountingProxy(registry.host) as counting:
        yield counting
