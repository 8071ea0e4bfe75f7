"""A flotilla installation inside the test process: worker, control API, stores, helpers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from temporalio.client import Client

from activities.secrets import SecretStore
from starters.control import Control
from worker import FlotillaWorker, WorkerConfig

T = TypeVar("T")


@dataclass
class Flotilla:
    namespace: str
    client: Client
    control: Control
    worker: FlotillaWorker
    config: WorkerConfig

    async def eventually(
        self,
        probe: Callable[[], Awaitable[T]],
        check: Callable[[T], bool],
        *,
        timeout: float = 120.0,
        interval: float = 0.5,
    ) -> T:
        """Probe until check holds; fail with the last value seen."""
        deadline = time.monotonic() + timeout
        value = await probe()
        while not check(value):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s; last value: {value!r}")
            await asyncio.sleep(interval)
            value = await probe()
        return value

    async def cleanup(self) -> None:
        record = os.environ.get("FLOTILLA_RECORD_HISTORIES")
        if record:
            await self.save_histories(Path(record))
        for prefix in ("gitrepo", "bundle", "registry"):
            query = (
                f"WorkflowId STARTS_WITH '{prefix}/{self.namespace}' "
                "AND ExecutionStatus = 'Running'"
            )
            async for wf in self.client.list_workflows(query):
                await self.client.get_workflow_handle(wf.id).terminate("test finished")

    async def save_histories(self, directory: Path) -> None:
        """Write every workflow's history of this namespace as JSON (for replay tests)."""
        directory.mkdir(parents=True, exist_ok=True)
        query = f"WorkflowId STARTS_WITH '{{}}/{self.namespace}'"
        for prefix in ("gitrepo", "bundle", "registry"):
            async for wf in self.client.list_workflows(query.format(prefix)):
                history = await self.client.get_workflow_handle(
                    wf.id, run_id=wf.run_id
                ).fetch_history()
                name = wf.id.replace(f"/{self.namespace}", "").replace("/", "-")
                (directory / f"{name}-{wf.run_id[-8:]}.json").write_text(history.to_json())


async def start_flotilla(
    client: Client, task_queue: str, tmp: Path, *, namespace: str | None = None
) -> Flotilla:
    namespace = namespace or f"fl-{uuid.uuid4().hex[:8]}"
    config = WorkerConfig(
        task_queue=task_queue,
        namespaces=[namespace],
        control_threads=4,
        cluster_threads=6,
        refresh_seconds=0.5,
        linger_seconds=30.0,
        workdir=tmp / "work",
        secrets_dir=tmp / "secrets",
        content_dir=tmp / "content",
    )
    worker = FlotillaWorker(client, config)
    await worker.start()
    control = Control(client, task_queue=task_queue, secrets=SecretStore(tmp / "secrets"))
    return Flotilla(namespace, client, control, worker, config)


def helm_history(kubeconfig: Path, release: str, namespace: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [
            "helm",
            "history",
            release,
            "-n",
            namespace,
            "-o",
            "json",
            "--kubeconfig",
            str(kubeconfig),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    history: list[dict[str, object]] = json.loads(out.stdout)
    return history


def gitrepo_yaml(namespace: str, name: str, url: str, **spec: object) -> str:
    lines = [
        "apiVersion: fleet.cattle.io/v1alpha1",
        "kind: GitRepo",
        f"metadata: {{name: {name}, namespace: {namespace}}}",
        "spec:",
        f"  repo: {url}",
        "  branch: main",
        "  pollingInterval: 1s",
    ]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in spec.items()]
    return "\n".join(lines) + "\n"
