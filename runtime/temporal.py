"""The one place a Temporal client is made, for the worker, the CLI and the agent alike.

Every client gets the pydantic data converter that workflows and activities rely on. TLS,
mTLS client certificates and API keys (Temporal Cloud) come from ``TemporalSettings``; the
key and certificates are read from files here and go nowhere else.
"""

from __future__ import annotations

import re
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

from flotilla.errors import UnreachableError
from flotilla.settings import SettingsError, TemporalSettings


def _read(path: Path, variable: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise SettingsError(f"{variable}={str(path)!r} cannot be read: {err.strerror}") from None


def tls_config(settings: TemporalSettings) -> TLSConfig | bool:
    """The client's TLS settings: False for plain gRPC, True for system roots, else a config."""
    if not settings.uses_tls:
        return False
    if not (settings.tls_ca_file or settings.tls_cert_file or settings.tls_server_name):
        return True
    return TLSConfig(
        server_root_ca_cert=(
            _read(settings.tls_ca_file, "TEMPORAL_TLS_CA_FILE") if settings.tls_ca_file else None
        ),
        client_cert=(
            _read(settings.tls_cert_file, "TEMPORAL_TLS_CERT_FILE")
            if settings.tls_cert_file
            else None
        ),
        client_private_key=(
            _read(settings.tls_key_file, "TEMPORAL_TLS_KEY_FILE") if settings.tls_key_file else None
        ),
        domain=settings.tls_server_name,
    )


def api_key(settings: TemporalSettings) -> str | None:
    if settings.api_key_file is None:
        return None
    key = _read(settings.api_key_file, "TEMPORAL_API_KEY_FILE").decode().strip()
    if not key:
        raise SettingsError(f"TEMPORAL_API_KEY_FILE={str(settings.api_key_file)!r} is empty")
    return key


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
            api_key=api_key(settings),
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
