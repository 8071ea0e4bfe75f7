"""Git credentials come from the secret store by name: a repo behind HTTP basic auth is read,
a wrong password is one line in the status, and the password is nowhere in history."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.secrets import FileSecretStore
from devenv.gitserver import GitDaemon, basic_auth_git_server, serve_git_over_http
from flotilla.ids import gitrepo_workflow_id
from tests.e2e.harness import Flotilla, gitrepo_yaml

PASSWORD = "p4ss-w0rd-never-in-history"


@pytest.fixture
def https_git(git_daemon: GitDaemon, tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """The same server over TLS with a self-signed certificate; yields its URL and the PEM."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server = basic_auth_git_server(git_daemon.root / "repos", "flotilla", PASSWORD)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", cert.read_bytes()
    server.shutdown()


@pytest.fixture
def http_git(git_daemon: GitDaemon) -> Iterator[str]:
    with serve_git_over_http(git_daemon.root / "repos", "flotilla", PASSWORD) as base:
        yield base


async def test_basic_auth_credentials_from_the_secret_store(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str, http_git: str
) -> None:
    git_daemon.create_repo(
        repo_name,
        {
            "a/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
            "a/fleet.yaml": "{}\n",
        },
    )
    url = f"{http_git}/{repo_name}.git"
    ns = flotilla.namespace
    secrets = FileSecretStore(flotilla.settings.secrets_dir)
    secrets.put(ns, "git-creds", {"username": "flotilla", "password": PASSWORD})
    secrets.put(ns, "git-wrong", {"username": "flotilla", "password": "not-it"})

    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "auth", url, clientSecretName="git-wrong"), file="gitrepo.yaml"
    )
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "auth"), lambda s: bool(s.error)
    )
    assert "\n" not in status.error and "ls-remote failed" in status.error
    assert "not-it" not in status.error

    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "auth", url, clientSecretName="git-creds"), file="gitrepo.yaml"
    )
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "auth"),
        lambda s: not s.error and [b.name for b in s.bundles] == ["auth-a"],
    )
    assert len(status.commit) == 40
    history = await flotilla.client.get_workflow_handle(
        gitrepo_workflow_id(ns, "auth")
    ).fetch_history()
    text = json.dumps(history.to_json_dict())
    assert PASSWORD not in text and "not-it" not in text
    assert base64.b64encode(f"flotilla:{PASSWORD}".encode()).decode() not in text


async def test_https_trusts_the_ca_bundle_or_skips_verification_when_told(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str, https_git: tuple[str, bytes]
) -> None:
    base, pem = https_git
    git_daemon.create_repo(
        repo_name, {"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"}
    )
    url = f"{base}/{repo_name}.git"
    ns = flotilla.namespace
    FileSecretStore(flotilla.settings.secrets_dir).put(
        ns, "git-creds", {"username": "flotilla", "password": PASSWORD}
    )
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "tls", url, clientSecretName="git-creds"), file="gitrepo.yaml"
    )
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "tls"), lambda s: bool(s.error)
    )
    assert "certificate" in status.error.lower() and "\n" not in status.error

    ca = base64.b64encode(pem).decode()
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "tls", url, clientSecretName="git-creds", caBundle=ca),
        file="gitrepo.yaml",
    )
    await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "tls"),
        lambda s: not s.error and len(s.commit) == 40,
    )
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "skip", url, clientSecretName="git-creds", insecureSkipTLSVerify=True),
        file="gitrepo.yaml",
    )
    await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "skip"),
        lambda s: not s.error and len(s.commit) == 40,
    )
