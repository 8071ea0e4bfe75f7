"""Temporal's HTTP API, for reading visibility without loading the Temporal SDK.

The SDK's client costs over half a second to import (its protobuf API and native bridge),
more than the CLI's whole budget for ``flotilla get``. Listing workflows with their search
attributes needs neither: the frontend's HTTP API (grpc-gateway, port 7243 by default)
answers ``ListWorkflowExecutions`` as JSON. Only that one read goes this way; everything
else (queries, updates, signals) uses the SDK, and so does ``get`` whenever this path is
not available (:class:`HttpUnavailable`), so the HTTP API is an optimisation, never a need.

TLS, mTLS and the API key follow the same ``TemporalSettings`` as the gRPC client.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from flotilla.settings import TemporalSettings
from runtime.credentials import read_api_key, read_setting_file

PAGE_SIZE = 1000
CONNECT_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_SECONDS = 15.0
_MAX_PAGES = 100


class HttpUnavailable(Exception):
    """The HTTP API cannot answer (not configured, not listening, or an unexpected reply);
    the caller reads through the SDK instead."""


@dataclass(frozen=True)
class Execution:
    """One workflow as visibility lists it: its id and its search attributes' values."""

    workflow_id: str
    status: str
    search_attributes: dict[str, Any]


def list_workflows(settings: TemporalSettings, query: str) -> list[Execution]:
    """Every workflow matching the visibility ``query``, all pages.

    Raises HttpUnavailable when the HTTP API is not set or does not answer as expected.
    """
    if not settings.http_address:
        raise HttpUnavailable("TEMPORAL_HTTP_ADDRESS is not set")
    executions: list[Execution] = []
    token = ""
    path = f"/api/v1/namespaces/{quote(settings.namespace, safe='')}/workflows"
    with _Connection(settings) as connection:
        for _ in range(_MAX_PAGES):
            params = {"query": query, "pageSize": str(PAGE_SIZE)}
            if token:
                params["nextPageToken"] = token
            page = connection.get_json(f"{path}?{urlencode(params)}")
            executions.extend(_execution(item) for item in page.get("executions") or [])
            token = page.get("nextPageToken") or ""
            if not token:
                return executions
    raise HttpUnavailable(f"more than {_MAX_PAGES} pages of workflows")


def _execution(item: dict[str, Any]) -> Execution:
    fields = ((item.get("searchAttributes") or {}).get("indexedFields")) or {}
    return Execution(
        workflow_id=(item.get("execution") or {}).get("workflowId", ""),
        status=item.get("status", ""),
        search_attributes={name: _decode(payload) for name, payload in fields.items()},
    )


def _decode(payload: dict[str, Any]) -> Any:
    """A search attribute's value: a JSON payload, base64 in the HTTP API's JSON."""
    try:
        return json.loads(base64.b64decode(payload.get("data", "")))
    except ValueError:
        return None


class _Connection:
    """One keep-alive connection to the HTTP API for the pages of one listing."""

    def __init__(self, settings: TemporalSettings) -> None:
        assert settings.http_address
        host, _, port = settings.http_address.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port) if port.isdigit() else 0
        self.headers = {"Accept": "application/json"}
        key = read_api_key(settings)
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.connection: http.client.HTTPConnection
        if settings.uses_tls:
            self.connection = _HTTPSConnection(
                self.host, self.port, _tls_context(settings), settings.tls_server_name
            )
        else:
            self.connection = http.client.HTTPConnection(
                self.host, self.port, timeout=CONNECT_TIMEOUT_SECONDS
            )

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.close()

    def get_json(self, path: str) -> dict[str, Any]:
        try:
            self.connection.request("GET", path, headers=self.headers)
            # Connected: a listing may take longer than the connect budget.
            if self.connection.sock is not None:
                self.connection.sock.settimeout(READ_TIMEOUT_SECONDS)
            response = self.connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as err:
            raise HttpUnavailable(f"{type(err).__name__}: {err}") from None
        if response.status != 200:
            raise HttpUnavailable(f"HTTP {response.status}: {body[:200]!r}")
        try:
            data = json.loads(body)
        except ValueError:
            raise HttpUnavailable("the answer is not JSON") from None
        if not isinstance(data, dict):
            raise HttpUnavailable("the answer is not a JSON object")
        return data


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS that verifies ``server_name`` when it differs from the host connected to."""

    def __init__(
        self, host: str, port: int, context: ssl.SSLContext, server_name: str | None
    ) -> None:
        super().__init__(host, port, timeout=CONNECT_TIMEOUT_SECONDS, context=context)
        self._context = context
        self._server_name = server_name or host

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)


def _tls_context(settings: TemporalSettings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.tls_ca_file:
        context.load_verify_locations(
            cadata=read_setting_file(settings.tls_ca_file, "TEMPORAL_TLS_CA_FILE").decode()
        )
    if settings.tls_cert_file and settings.tls_key_file:
        # ssl loads a client certificate only from files; the settings name files already.
        context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
    return context
