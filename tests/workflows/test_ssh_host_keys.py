"""Git over SSH verifies the server's host key, against a real sshd serving a real repository.

The known hosts come from the GitRepo's client secret (key ``known_hosts``), else the
fleet-wide Secret ``known-hosts`` in the system namespace; an unknown or changed key fails
with one line naming the host and the fingerprint it offers, and nothing is fetched. The
opt-out (Fleet's insecure-skip-host-key-checks) fetches and says so in the status.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.content import FileContentStore
from activities.gitops import GitOpsActivities
from activities.gitops_models import FetchRequest, GitSource, LsRemoteRequest
from activities.secrets import FileSecretStore
from devenv.sshgit import SshGitServer, keygen
from flotilla.errors import HOST_KEY_REJECTED

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
NS = "team-a"
SYSTEM = "flotilla-system"


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshGitServer]:
    with SshGitServer(tmp_path / "sshd") as server:
        yield server


def _gitops(tmp_path: Path, *, skip: bool = False) -> tuple[GitOpsActivities, FileSecretStore]:
    secrets = FileSecretStore(tmp_path / "secrets")
    gitops = GitOpsActivities(
        None,
        secrets,
        FileContentStore(tmp_path / "content"),
        tmp_path / "work",
        system_namespace=SYSTEM,
        skip_host_key_checks=skip,
    )
    return gitops, secrets


def _client_secret(
    secrets: FileSecretStore, sshd: SshGitServer, known_hosts: str | None = None
) -> GitSource:
    data = {"ssh-privatekey": sshd.client_key.read_text()}
    if known_hosts is not None:
        data["known_hosts"] = known_hosts
    secrets.put(NS, "git-ssh", data, type="kubernetes.io/ssh-auth")
    return GitSource(
        repo=sshd.create_repo("app", {"cm.yaml": CM}),
        branch="main",
        namespace=NS,
        client_secret_name="git-ssh",
    )


def _refused(gitops: GitOpsActivities, source: GitSource) -> ApplicationError:
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(gitops.ls_remote, LsRemoteRequest(source=source))
    assert err.value.type == HOST_KEY_REJECTED and err.value.non_retryable
    assert "\n" not in err.value.message
    return err.value


def test_the_known_host_key_fetches(sshd: SshGitServer, tmp_path: Path) -> None:
    gitops, secrets = _gitops(tmp_path)
    source = _client_secret(secrets, sshd, sshd.known_hosts_line())
    env = ActivityEnvironment()
    head = env.run(gitops.ls_remote, LsRemoteRequest(source=source))
    assert len(head.commit) == 40 and head.warning == ""
    fetched = env.run(
        gitops.fetch_bundles,
        FetchRequest(namespace=NS, gitrepo="r", source=source, commit=head.commit),
    )
    assert fetched.commit == head.commit and [b.name for b in fetched.bundles] == ["r"]


def test_fleet_wide_known_hosts_serve_when_the_secret_has_none(
    sshd: SshGitServer, tmp_path: Path
) -> None:
    gitops, secrets = _gitops(tmp_path)
    source = _client_secret(secrets, sshd)
    error = _refused(gitops, source)
    assert error.message == (
        f"{source.repo}: cannot verify the SSH host key of [127.0.0.1]:{sshd.port}: no "
        f"known_hosts in secret {NS}/git-ssh nor secret {SYSTEM}/known-hosts; add the host's "
        "key line (ssh-keyscan, after checking its fingerprint) there"
    )
    secrets.put(SYSTEM, "known-hosts", {"known_hosts": sshd.known_hosts_line()})
    head = ActivityEnvironment().run(gitops.ls_remote, LsRemoteRequest(source=source))
    assert len(head.commit) == 40


def test_an_unknown_host_key_is_refused_with_its_fingerprint(
    sshd: SshGitServer, tmp_path: Path
) -> None:
    gitops, secrets = _gitops(tmp_path)
    # known_hosts lists another server only.
    other = tmp_path / "other"
    keygen(other, "other")
    line = f"git.example.com {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n"
    source = _client_secret(secrets, sshd, line)
    error = _refused(gitops, source)
    assert f"SSH host key of [127.0.0.1]:{sshd.port} is not known" in error.message
    assert f"(it offers ED25519 {sshd.host_fingerprint()})" in error.message
    assert f"secret {NS}/git-ssh or secret {SYSTEM}/known-hosts" in error.message


def test_a_changed_host_key_is_refused_and_named(sshd: SshGitServer, tmp_path: Path) -> None:
    gitops, secrets = _gitops(tmp_path)
    source = _client_secret(secrets, sshd, sshd.known_hosts_line())
    ActivityEnvironment().run(gitops.ls_remote, LsRemoteRequest(source=source))
    sshd.rotate_host_key()
    error = _refused(gitops, source)
    assert f"SSH host key of [127.0.0.1]:{sshd.port} has CHANGED" in error.message
    assert f"(it offers ED25519 {sshd.host_fingerprint()})" in error.message
    assert "man in the middle" in error.message


def test_the_insecure_opt_out_fetches_and_says_so(sshd: SshGitServer, tmp_path: Path) -> None:
    gitops, secrets = _gitops(tmp_path, skip=True)
    source = _client_secret(secrets, sshd)
    head = ActivityEnvironment().run(gitops.ls_remote, LsRemoteRequest(source=source))
    assert len(head.commit) == 40
    assert head.warning.startswith("SSH host keys are not verified")
