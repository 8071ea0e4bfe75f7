"""Tests here run on the production-shaped Temporal server instead of the dev server.

``temporal_server`` and ``temporal_client`` are overridden for this directory, so the e2e
tests imported into it, and every fixture built on them (``flotilla``), use that server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from devenv.temporal import TemporalServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # One xdist group: the server (PostgreSQL and Temporal) then starts on one worker only.
    for item in items:
        if "tests/prodtemporal/" in str(item.path):
            item.add_marker(pytest.mark.prodtemporal)
            item.add_marker(pytest.mark.xdist_group("prodtemporal"))


@pytest.fixture(scope="session")
def temporal_server(production_temporal: TemporalServer) -> TemporalServer:
    return production_temporal


@pytest.fixture(scope="session")
async def temporal_client(production_temporal: TemporalServer) -> AsyncIterator[Client]:
    yield await Client.connect(production_temporal.address, data_converter=pydantic_data_converter)
