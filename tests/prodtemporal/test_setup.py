"""``flotilla setup`` on the production-shaped server: namespace and search attributes made
through the API, idempotently, and the one-line errors where the server refuses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from devenv.temporal import TemporalServer
from flotilla.ids import SEARCH_ATTRIBUTES
from runtime.temporal import ensure_namespace

ROOT = Path(__file__).resolve().parents[2]


def run_setup(server: TemporalServer, namespace: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TEMPORAL_ADDRESS": server.address, "TEMPORAL_NAMESPACE": namespace}
    return subprocess.run(
        [sys.executable, "-m", "starters.cli", "setup", "--retention", "24h"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


async def test_setup_creates_the_namespace_and_attributes_once(
    production_temporal: TemporalServer, temporal_client: Client
) -> None:
    namespace = f"setup-{uuid.uuid4().hex[:8]}"
    first = run_setup(production_temporal, namespace)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == f"namespace {namespace}: created, retention 24h0m0s"
    assert first.stdout.splitlines()[1].startswith("search attributes: added ")
    described = await temporal_client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    assert described.config.workflow_execution_retention_ttl.ToTimedelta() == timedelta(hours=24)
    listed = await temporal_client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    assert set(SEARCH_ATTRIBUTES) <= set(listed.custom_attributes)

    again = run_setup(production_temporal, namespace)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split("\n") == [
        f"namespace {namespace}: present",
        "search attributes: present",
        "",
    ]
    # An existing namespace keeps its retention, whatever --retention says.
    assert await ensure_namespace(temporal_client, namespace, timedelta(hours=1)) is None


async def test_a_full_visibility_store_is_a_one_line_error_that_says_what_to_do(
    production_temporal: TemporalServer, temporal_client: Client
) -> None:
    # Another application took 2 of SQL visibility's 10 Keyword columns: 8 are left for 9.
    other = f"other-{uuid.uuid4().hex[:8]}"
    await ensure_namespace(temporal_client, other, timedelta(hours=24))
    for _ in range(60):
        try:
            await temporal_client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=other,
                    search_attributes={
                        "OtherAppA": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
                        "OtherAppB": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
                    },
                )
            )
            break
        except RPCError:  # a new namespace reaches the frontend's cache within seconds
            await asyncio.sleep(1)
    result = run_setup(production_temporal, other)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "has no room for flotilla's search attributes" in lines[0]
    assert "cannot have more than 10 search attribute of type Keyword" in lines[0]
    assert f"temporal operator search-attribute remove --namespace {other}" in lines[0]
