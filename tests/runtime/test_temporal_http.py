"""Reading visibility over Temporal's HTTP API (the CLI's `get` tables), against a real dev
server: plain, and through a real TLS frontend with client certificates; and the worker's
check that flotilla's search attributes are registered."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from temporalio.api.operatorservice.v1 import RemoveSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from devenv.temporal import TemporalDevServer
from flotilla.ids import SA_GITREPO, SA_KIND, SA_MESSAGE, SA_READY
from flotilla.settings import TemporalSettings, settings_from_env
from runtime.temporal import ensure_search_attributes
from runtime.temporalhttp import HttpUnavailable, list_workflows
from tests.runtime.test_temporal_tls import make_pki, tls_frontend


async def _start_listed(client: Client, kind: str) -> str:
    """A workflow with flotilla's search attributes, on a queue no worker serves."""
    workflow_id = f"gitrepo/http-{uuid.uuid4().hex[:8]}/a b/c"
    await client.start_workflow(
        "GitRepoWorkflow",
        id=workflow_id,
        task_queue=f"nobody-{uuid.uuid4().hex[:8]}",
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SearchAttributeKey.for_keyword(SA_KIND), kind),
                SearchAttributePair(SearchAttributeKey.for_keyword(SA_GITREPO), "a b"),
                SearchAttributePair(SearchAttributeKey.for_keyword(SA_MESSAGE), "Modified: ü"),
                SearchAttributePair(SearchAttributeKey.for_int(SA_READY), 3),
            ]
        ),
    )
    return workflow_id


async def test_lists_workflows_with_their_search_attributes(
    temporal_server: TemporalDevServer, temporal_client: Client
) -> None:
    kind = f"Test{uuid.uuid4().hex[:8]}"
    workflow_id = await _start_listed(temporal_client, kind)
    settings = TemporalSettings(
        address=temporal_server.address, http_address=temporal_server.http_address
    )
    # Visibility is eventually consistent: a workflow started a moment ago may not be listed
    # yet (seen on a loaded CI machine), so ask again for a while before judging.
    deadline = time.monotonic() + 15
    while True:
        executions = await asyncio.to_thread(list_workflows, settings, f"{SA_KIND} = '{kind}'")
        if executions or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert [e.workflow_id for e in executions] == [workflow_id]
    attributes = executions[0].search_attributes
    assert (attributes[SA_GITREPO], attributes[SA_MESSAGE], attributes[SA_READY]) == (
        "a b",
        "Modified: ü",
        3,
    )
    assert executions[0].status == "WORKFLOW_EXECUTION_STATUS_RUNNING"


async def test_unavailable_when_nothing_answers_or_not_set(
    temporal_server: TemporalDevServer,
) -> None:
    for http_address in (None, "127.0.0.1:1", temporal_server.address):
        # Nothing listening, not set, and the gRPC port (which does not speak HTTP/1.1 JSON).
        settings = TemporalSettings(address=temporal_server.address, http_address=http_address)
        with pytest.raises(HttpUnavailable):
            await asyncio.to_thread(list_workflows, settings, "")


async def test_through_a_tls_frontend_with_a_client_certificate(
    temporal_server: TemporalDevServer, temporal_client: Client, tmp_path: Path
) -> None:
    kind = f"Test{uuid.uuid4().hex[:8]}"
    workflow_id = await _start_listed(temporal_client, kind)
    pki = make_pki(tmp_path / "pki")
    async with tls_frontend(pki, temporal_server.http_address, require_client_cert=True) as (
        address,
        clients,
    ):
        env = {
            "TEMPORAL_ADDRESS": temporal_server.address,
            "TEMPORAL_HTTP_ADDRESS": address,
            "TEMPORAL_TLS_CA_FILE": str(pki / "ca.crt"),
        }
        without_certificate = settings_from_env(env, tmp_path).temporal
        with pytest.raises(HttpUnavailable):
            await asyncio.to_thread(list_workflows, without_certificate, f"{SA_KIND} = '{kind}'")
        settings = settings_from_env(
            {
                **env,
                "TEMPORAL_TLS_CERT_FILE": str(pki / "client.crt"),
                "TEMPORAL_TLS_KEY_FILE": str(pki / "client.key"),
            },
            tmp_path,
        ).temporal
        executions = await asyncio.to_thread(list_workflows, settings, f"{SA_KIND} = '{kind}'")
        assert [e.workflow_id for e in executions] == [workflow_id]
        assert "client" in clients


async def test_worker_registers_missing_search_attributes(tmp_path: Path) -> None:
    """A namespace made before a search attribute existed gets it when a worker starts."""
    with TemporalDevServer(tmp_path / "temporal", headless=True) as server:
        client = await Client.connect(server.address)
        await client.operator_service.remove_search_attributes(
            RemoveSearchAttributesRequest(namespace="default", search_attributes=[SA_MESSAGE])
        )
        assert await ensure_search_attributes(client, "default") == [SA_MESSAGE]
        assert await ensure_search_attributes(client, "default") == []
