"""verifyCommits: only commits signed by a trusted key are read, with real git, ssh-keygen and
gpg signatures made by the test against a real git daemon; the rest fail with one line."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.content import FileContentStore
from activities.gitops import GitOpsActivities
from activities.gitops_models import FetchRequest, FetchResult, GitSource, LsRemoteRequest
from activities.secrets import FileSecretStore
from devenv.gitserver import GitDaemon, git
from devenv.sshgit import keygen
from flotilla.errors import COMMIT_NOT_VERIFIED
from flotilla.models import GitRepoSpec
from tests.e2e.harness import Flotilla, gitrepo_yaml
from tests.workflows.test_restrictions import restriction_yaml, settled, status_of

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
NS = "team-a"


@pytest.fixture
def gnupg(tmp_path: Path) -> Iterator[Path]:
    """A private GnuPG home with one signing key; its agent is stopped afterwards."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "Signer <signer@example.test>",
         "ed25519", "sign", "never"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    yield home
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True, check=False)


def _commit(work: Path, name: str, *sign: str, env: dict[str, str] | None = None) -> str:
    (work / f"{name}.yaml").write_text(CM.replace("name: a", f"name: {name}"))
    git("add", "-A", cwd=work)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.test", *sign, "commit", "-q",
         "-m", name],
        cwd=work, env={**os.environ, **(env or {})}, check=True, capture_output=True,
    )  # fmt: skip
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def _fetch(gitops: GitOpsActivities, source: GitSource, commit: str) -> FetchResult:
    return ActivityEnvironment().run(
        gitops.fetch_bundles, FetchRequest(namespace=NS, gitrepo="r", source=source, commit=commit)
    )


def _refused(gitops: GitOpsActivities, source: GitSource, commit: str) -> str:
    with pytest.raises(ApplicationError) as err:
        _fetch(gitops, source, commit)
    assert err.value.type == COMMIT_NOT_VERIFIED and err.value.non_retryable
    assert "\n" not in err.value.message
    return err.value.message


def test_only_commits_signed_by_trusted_keys_are_read(
    git_daemon: GitDaemon, repo_name: str, tmp_path: Path, gnupg: Path
) -> None:
    url = git_daemon.create_repo(repo_name, {"cm.yaml": CM})
    work = git_daemon.working_copy(repo_name)
    secrets = FileSecretStore(tmp_path / "secrets")
    gitops = GitOpsActivities(None, secrets, FileContentStore(tmp_path / "c"), tmp_path / "w")
    spec = GitRepoSpec.model_validate(
        {"repo": url, "branch": "main", "verifyCommits": {"secretName": "signers"}}
    )
    source = GitSource.from_spec(spec, NS)
    assert source.verify_secret_name == "signers"

    trusted, stranger = tmp_path / "trusted", tmp_path / "stranger"
    keygen(trusted, "trusted")
    keygen(stranger, "stranger")
    public = " ".join(trusted.with_suffix(".pub").read_text().split()[:2])
    pgp_public = subprocess.run(
        ["gpg", "--batch", "--armor", "--export", "signer@example.test"],
        env={**os.environ, "GNUPGHOME": str(gnupg)}, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    secrets.put(
        NS,
        "signers",
        {"allowed_signers": f"ci@example.test {public}\n", "release.asc": pgp_public},
    )
    where = f"{url}: commit"

    # Unsigned: nothing is read.
    unsigned = _commit(work, "unsigned")
    assert _refused(gitops, source, unsigned) == (
        f"{where} {unsigned[:12]} is not signed; secret {NS}/signers requires it"
    )
    # Signed with SSH by a key allowed_signers lists: read.
    ssh = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={trusted}", "-c", "commit.gpgsign=true"]
    good = _commit(work, "ssh-signed", *ssh)
    assert _fetch(gitops, source, good).commit == good
    # Signed with SSH by a key nobody trusts: refused.
    other = [
        "-c",
        "gpg.format=ssh",
        "-c",
        f"user.signingkey={stranger}",
        "-c",
        "commit.gpgsign=true",
    ]
    bad = _commit(work, "stranger", *other)
    message = _refused(gitops, source, bad)
    assert message.startswith(f"{where} {bad[:12]} is not signed by a key in secret {NS}/signers:")
    # Signed with OpenPGP by the trusted key: read.
    pgp = _commit(
        work,
        "pgp-signed",
        *["-c", "user.signingkey=signer@example.test", "-c", "commit.gpgsign=true"],
        env={"GNUPGHOME": str(gnupg)},
    )
    assert _fetch(gitops, source, pgp).commit == pgp
    # The same secret without the OpenPGP key: the signature is by an unknown key.
    secrets.put(NS, "signers", {"allowed_signers": f"ci@example.test {public}\n"})
    assert _refused(gitops, source, pgp).endswith("signed by an unknown OpenPGP key")

    # ls-remote is not affected: a GitRepo still sees the new head and says why it is refused.
    head = ActivityEnvironment().run(gitops.ls_remote, LsRemoteRequest(source=source))
    assert head.commit == pgp


async def test_a_workspace_restriction_requires_verified_commits_of_every_gitrepo(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str, tmp_path: Path
) -> None:
    """`requireVerifiedCommits` on a Policy: a GitRepo without verifyCommits is Restricted with
    one line; one with it reads an SSH-signed head (signed here by git) and refuses an
    unsigned one, as verifyCommits alone does."""
    ns = flotilla.namespace
    url = git_daemon.create_repo(repo_name, {"cm.yaml": CM})
    work = git_daemon.working_copy(repo_name)
    trusted = tmp_path / "trusted"
    keygen(trusted, "trusted")
    public = " ".join(trusted.with_suffix(".pub").read_text().split()[:2])
    flotilla.control.secrets.put(ns, "signers", {"allowed_signers": f"ci@example.test {public}\n"})
    ssh = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={trusted}", "-c", "commit.gpgsign=true"]
    signed = _commit(work, "signed", *ssh)
    await flotilla.control.apply_text(
        restriction_yaml("Policy", ns, "signed-only", "requireVerifiedCommits: true\n"),
        file="policy.yaml",
    )
    await flotilla.control.apply_text(gitrepo_yaml(ns, "plain", url), file="a.yaml")
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "checked", url, verifyCommits={"secretName": "signers"}), file="b.yaml"
    )
    plain, checked = await asyncio.gather(settled(flotilla, "plain"), settled(flotilla, "checked"))
    assert plain.state == "Restricted"
    assert "\n" not in plain.message
    assert (
        "spec.verifyCommits: is required by Policy signed-only (requireVerifiedCommits)"
        in plain.message
    )
    assert checked.state == "Ready" and checked.commit == signed

    # An unsigned head is refused by the verification the restriction required.
    unsigned = _commit(work, "unsigned")
    refused = await flotilla.eventually(
        lambda: status_of(flotilla, "checked"),
        lambda s: f"{unsigned[:12]} is not signed" in s.message,
        timeout=180,
    )
    assert refused.commit == signed and "\n" not in refused.message

    # The administrator names the keys: a GitRepo that trusts a secret of its own is refused.
    flotilla.control.secrets.put(ns, "own-keys", {"allowed_signers": f"me@example.test {public}\n"})
    await flotilla.control.apply_text(
        restriction_yaml(
            "GitRepoRestriction", ns, "ops-keys", "allowedVerifyCommitsSecretNames: [signers]\n"
        ),
        file="restriction.yaml",
    )
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "own", url, verifyCommits={"secretName": "own-keys"}), file="c.yaml"
    )
    own = await settled(flotilla, "own")
    assert own.state == "Restricted" and "\n" not in own.message
    assert (
        "spec.verifyCommits.secretName: 'own-keys' is not allowed by GitRepoRestriction "
        "ops-keys (allowed: 'signers')" in own.message
    )
