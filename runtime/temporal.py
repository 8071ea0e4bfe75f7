"""The one place a Temporal client is made, for the worker, the CLI and the agent alike.

Every client gets the pydantic data converter that workflows and activities rely on. TLS,
mTLS client certificates and API keys (Temporal Cloud) come from ``TemporalSettings``; the
key and certificates are read from files here and go nowhere else.
"""

from __future__ import annotations

import re
from datetime import timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

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
        if "cannot have more than" in err.message:
            # SQL visibility has a fixed number of columns per type (Keyword01..10, ...).
            raise SettingsError(
                f"Temporal namespace {namespace!r} has no room for flotilla's search attributes "
                f"{names} ({err.message.removeprefix('Unable to create search attributes: ')}): "
                "remove custom attributes nothing uses (`temporal operator search-attribute "
                f"remove --namespace {namespace} --name NAME`) or give flotilla a namespace of "
                "its own"
            ) from None
        raise SettingsError(
            f"Temporal namespace {namespace!r} lacks flotilla's search attributes {names} and "
            f"they cannot be added from here ({err.message}): register them as "
            'docs/installation.md, "Search attributes", shows'
        ) from None
    return sorted(missing)


async def ensure_namespace(
    client: Client, namespace: str, retention: timedelta
) -> timedelta | None:
    """Create ``namespace`` with ``retention`` unless it exists; returns the retention it was
    created with, or None when it was already there (its retention is left as it is).

    A server that refuses (no admin rights, Temporal Cloud, where namespaces are made in the
    Cloud console) is a SettingsError that says who can create it and how.
    """
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace)
        )
        return None
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise _namespace_refused(namespace, retention, err) from None
    period = Duration()
    period.FromTimedelta(retention)
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace, workflow_execution_retention_period=period
            )
        )
    except RPCError as refused:
        if refused.status == RPCStatusCode.ALREADY_EXISTS:
            return None
        raise _namespace_refused(namespace, retention, refused) from None
    return retention


def _namespace_refused(namespace: str, retention: timedelta, err: RPCError) -> SettingsError:
    hours = int(retention.total_seconds() // 3600)
    return SettingsError(
        f"cannot check or create Temporal namespace {namespace!r} ({err.message}): have an "
        f"administrator run `temporal operator namespace create --retention {hours}h "
        f"{namespace}` (Temporal Cloud: create it in the Cloud console), or set "
        "TEMPORAL_NAMESPACE to one that exists"
    )
