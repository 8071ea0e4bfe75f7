"""A flotilla per test without clusters: in-process worker, fresh task queue and namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.e2e.harness import Flotilla, start_flotilla


@pytest.fixture
async def flotilla(
    temporal_client: Client, task_queue: str, tmp_path: Path
) -> AsyncIterator[Flotilla]:
    fl = await start_flotilla(temporal_client, task_queue, tmp_path)
    try:
        yield fl
    finally:
        await fl.cleanup()
        await fl.worker.stop()
