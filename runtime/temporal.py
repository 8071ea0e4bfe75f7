"""The one place a Temporal client is made, for the worker, the CLI and the agent alike.

Every client gets the pydantic data converter that workflows and activities rely on. TLS,
mTLS client certificates and API keys (Temporal Cloud) come from ``TemporalSettings``; the
key and certificates are read from files here and go nowhere else.
"""

from __future__ import annotations

import re

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, TLSConfig

from flotilla.errors import UnreachableError
from flotilla.ids import SEARCH_ATTRIBUTES
from flotilla.settings import SettingsError, TemporalSettings
from runtime.credentials import read_api_key, read_setting_file


def tls_config(settings: TemporalSettings) -> TLSConfig | bool:
    """The client's TLS settings: False for plain gRPC, True for system roots, else a config."""
    if not settings.uses_tls:
        return False
    if not (settings.tls_ca_file or settings.tls_cert_file or settings.tls_server_name):
        return True
    return TLSConfig(
        server_root_ca_cert=(
            read_setting_file(settings.tls_ca_file, "TEMPORAL_TLS_CA_FILE")
            if settings.tls_ca_file
            else None
        ),
        client_cert=(
            read_setting_file(settings.tls_cert_file, "TEMPORAL_TLS_CERT_FILE")
            if settings.tls_cert_file
            else None
        ),
        client_private_key=(
            read_setting_file(settings.tls_key_file, "TEMPORAL_TLS_KEY_FILE")
            if settings.tls_key_file
            else None
        ),
        domain=settings.tls_server_name,
    )


async def connect(settings: TemporalSettings, *, address: str | None = None) -> Client:
    """Connect to Temporal as ``settings`` say (``address`` overrides the host only).

    A server that does not answer is an UnreachableError naming the address and the fix.
    """
    target = address or settings.address
    try:
        return await Client.connect(
            target,
            namespace=settings.namespace,
            data_converter=pydantic_data_converter,
            tls=tls_config(settings),
            api_key=read_api_key(settings),
        )
    except RuntimeError as err:
        raise UnreachableError(
            f"cannot reach Temporal at {target}: {_reason(str(err))}; start it, or set "
            "TEMPORAL_ADDRESS (and TEMPORAL_TLS_* / TEMPORAL_API_KEY_FILE for a secured server)"
        ) from None


def _reason(text: str) -> str:
    """The SDK's native client reports a failed connection as a RuntimeError holding a
    transport dump; its innermost quoted message is the part a person can act on."""
    quoted = re.findall(r'(?:message|error): "([^"]+)"', text)
    if quoted:
        return str(quoted[-1]).lower()
    if "UnknownIssuer" in text:
        return "its TLS certificate is not signed by a trusted CA (set TEMPORAL_TLS_CA_FILE)"
    named = re.findall(r"error: ([A-Za-z]+(?:\([A-Za-z]+\))?)", text)
    if named:
        return str(named[-1])
    return " ".join(text.split())[-200:] or "no answer"


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register flotilla's search attributes that the namespace lacks; returns their names.

    A workflow that upserts an unregistered attribute fails every workflow task, so a worker
    checks before it polls. Where the operator API refuses (Temporal Cloud, a namespace
    without admin rights), this is a SettingsError naming what to register and how.
    """
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    present = {*response.custom_attributes, *response.system_attributes}
    missing = {name: kind for name, kind in SEARCH_ATTRIBUTES.items() if name not in present}
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={
                    name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
                    for name, kind in missing.items()
                },
            )
        )
    except RPCError as err:
        names = ", ".join(f"{name} ({kind})" for name, kind in sorted(missing.items()))
        raise SettingsError(
            f"Temporal namespace {namespace!r} lacks flotilla's search attributes {names} and "
            f"they cannot be added from here ({err.message}): register them as "
            'docs/installation.md, "Search attributes", shows'
        ) from None
    return sorted(missing)
