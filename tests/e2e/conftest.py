"""A flotilla per test: in-process worker on a fresh task queue and a fresh Fleet namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from devenv.cluster import LocalCluster
from tests.e2e.harness import Flotilla, start_flotilla


@pytest.fixture
async def flotilla(
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    tools_on_path: list[Path],
    local_cluster: LocalCluster,
) -> AsyncIterator[Flotilla]:
    fl = await start_flotilla(temporal_client, task_queue, tmp_path)
    try:
        yield fl
    finally:
        await fl.cleanup()
        await fl.worker.stop()
