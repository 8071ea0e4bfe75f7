"""Where a Temporal server refuses what `flotilla setup` asks, the error is one line that
says who can do it and how (no server needed: the refusals are the server's gRPC statuses)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode

from flotilla.settings import SettingsError
from runtime.temporal import ensure_namespace, ensure_search_attributes


class Refusing:
    def __init__(self, status: RPCStatusCode, message: str) -> None:
        self.error = RPCError(message, status, b"")

    async def __call__(self, request: Any) -> Any:
        raise self.error


def client_with(**calls: Any) -> Any:
    return SimpleNamespace(
        workflow_service=SimpleNamespace(**calls), operator_service=SimpleNamespace(**calls)
    )


async def test_no_right_to_create_the_namespace_names_the_command_for_an_admin() -> None:
    denied = Refusing(RPCStatusCode.PERMISSION_DENIED, "Request unauthorized.")
    client = client_with(describe_namespace=denied)
    with pytest.raises(SettingsError) as err:
        await ensure_namespace(client, "fleet", timedelta(hours=72))
    message = str(err.value)
    assert "\n" not in message
    assert "'fleet' (Request unauthorized.)" in message
    assert "temporal operator namespace create --retention 72h fleet" in message


async def test_registering_refused_names_the_attributes_and_the_docs() -> None:
    async def listed(request: Any) -> Any:
        return SimpleNamespace(custom_attributes={}, system_attributes={})

    client = client_with(
        list_search_attributes=listed,
        add_search_attributes=Refusing(RPCStatusCode.PERMISSION_DENIED, "Request unauthorized."),
    )
    with pytest.raises(SettingsError) as err:
        await ensure_search_attributes(client, "fleet")
    message = str(err.value)
    assert "\n" not in message
    assert "FlotillaGitRepo (Keyword)" in message and "docs/installation.md" in message
