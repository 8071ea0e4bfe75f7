"""The Temporal connection of the CLI and the worker over TLS and mTLS, as a real secured
frontend (self-hosted with TLS, or Temporal Cloud) asks for it.

The dev server speaks plaintext only, so a TLS terminator runs in front of it: a real TLS
server (the standard library's ``ssl``, HTTP/2 by ALPN, client certificates required for
mTLS) that forwards the decrypted bytes to the dev server. Certificates come from openssl.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import ListNamespacesRequest
from temporalio.client import Client

from devenv.temporal import TemporalDevServer
from flotilla.errors import UnreachableError
from flotilla.settings import settings_from_env
from runtime.temporal import connect


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(directory: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt", cwd=directory,
    )  # fmt: skip
    for name, usage, san in (
        ("server", "serverAuth", "subjectAltName=IP:127.0.0.1"),
        ("client", "clientAuth", "subjectAltName=DNS:flotilla-worker"),
    ):
        (directory / f"{name}.ext").write_text(
            f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n{san}\n"
        )
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
            cwd=directory,
        )  # fmt: skip
    return directory


@contextlib.asynccontextmanager
async def tls_frontend(
    pki: Path, upstream: str, *, require_client_cert: bool
) -> AsyncIterator[tuple[str, list[str]]]:
    """A TLS listener on 127.0.0.1 forwarding to ``upstream``; yields its address and the
    subjects of the client certificates it accepted."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    context.set_alpn_protocols(["h2"])
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki / "ca.crt")
    host, port = upstream.rsplit(":", 1)
    clients: list[str] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        if peer:
            clients.append(dict(item[0] for item in peer["subject"])["commonName"])
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        # The test's event loop ends with connections open: their pipes are cancelled then.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield address, clients
    finally:
        server.close()


async def test_mtls_connection_with_a_client_certificate(
    temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    async with tls_frontend(pki, temporal_server.address, require_client_cert=True) as (
        address,
        clients,
    ):
        settings = settings_from_env(
            {
                "TEMPORAL_ADDRESS": address,
                "TEMPORAL_TLS_CA_FILE": str(pki / "ca.crt"),
                "TEMPORAL_TLS_CERT_FILE": str(pki / "client.crt"),
                "TEMPORAL_TLS_KEY_FILE": str(pki / "client.key"),
            },
            tmp_path,
        )
        client = await connect(settings.temporal)
        # A real round trip through the TLS frontend: the namespace is described.
        namespaces = [ns async for ns in _namespaces(client)]
        assert "default" in namespaces
        assert clients and clients[0] == "client"


async def _namespaces(client: Client) -> AsyncIterator[str]:
    response = await client.workflow_service.list_namespaces(ListNamespacesRequest())
    for ns in response.namespaces:
        yield ns.namespace_info.name


async def test_tls_with_an_api_key_and_failures_are_one_line(
    temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    key = tmp_path / "api-key"
    key.write_text("cloud-key-123\n")
    async with tls_frontend(pki, temporal_server.address, require_client_cert=False) as (
        address,
        _,
    ):
        good = settings_from_env(
            {
                "TEMPORAL_ADDRESS": address,
                "TEMPORAL_TLS_CA_FILE": str(pki / "ca.crt"),
                "TEMPORAL_API_KEY_FILE": str(key),
            },
            tmp_path,
        )
        client = await connect(good.temporal)
        assert "default" in [ns async for ns in _namespaces(client)]

        # Plaintext against a TLS frontend, or TLS against a server whose CA is not trusted:
        # one line naming the address, never a transport dump.
        for env in (
            {"TEMPORAL_ADDRESS": address},
            {"TEMPORAL_ADDRESS": address, "TEMPORAL_TLS": "true"},
        ):
            with pytest.raises(UnreachableError) as err:
                await asyncio.wait_for(
                    connect(settings_from_env(env, tmp_path).temporal), timeout=60
                )
            assert str(err.value).startswith(f"cannot reach Temporal at {address}: ")
            if env.get("TEMPORAL_TLS"):
                assert "not signed by a trusted CA (set TEMPORAL_TLS_CA_FILE)" in str(err.value)
            assert "\n" not in str(err.value) and "tonic" not in str(err.value)
