"""Signed commits: is a fetched commit signed by one of the keys a GitRepo trusts?

A GitRepo's ``verifyCommits.secretName`` names a secret (in its namespace) of trusted keys:
``allowed_signers`` in ssh-keygen's format for SSH signatures, and any key ending ``.asc``
holding an armored OpenPGP public key. git verifies with the real ``ssh-keygen`` or ``gpg``,
against only those keys: a private keyring and signers file per check, removed afterwards.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from flotilla.errors import COMMIT_NOT_VERIFIED, FlotillaError, one_line

ALLOWED_SIGNERS_KEY = "allowed_signers"
PGP_SUFFIX = ".asc"
_TIMEOUT_SECONDS = 60


class CommitNotVerifiedError(FlotillaError):
    """The commit is unsigned, or not signed by a trusted key: nothing of it is deployed."""

    type = COMMIT_NOT_VERIFIED


def verify_commit(repo: Path, commit: str, keys: dict[str, str], *, where: str) -> None:
    """Raise CommitNotVerifiedError unless ``commit`` in ``repo`` carries a good signature by
    one of ``keys`` (the secret's data; ``where`` names the secret for messages)."""
    signers = keys.get(ALLOWED_SIGNERS_KEY, "")
    armored = [value for name, value in sorted(keys.items()) if name.endswith(PGP_SUFFIX)]
    if not signers.strip() and not armored:
        raise FlotillaError(
            f"verifyCommits: {where} has neither {ALLOWED_SIGNERS_KEY} (SSH) nor a "
            f"*{PGP_SUFFIX} key (OpenPGP)",
            type=COMMIT_NOT_VERIFIED,
        )
    short = commit[:12]
    header = _git(repo, ["cat-file", "commit", commit], {}).stdout
    if "\ngpgsig " not in header.split("\n\n", 1)[0]:
        raise CommitNotVerifiedError(f"commit {short} is not signed; {where} requires it")
    with tempfile.TemporaryDirectory(prefix="flotilla-verify-") as tmp:
        home = Path(tmp)
        allowed = home / "allowed_signers"
        allowed.write_text(signers if signers.endswith("\n") else signers + "\n")
        gnupg = home / "gnupg"
        gnupg.mkdir(mode=0o700)
        env = {"GNUPGHOME": str(gnupg)}
        for index, key in enumerate(armored):
            path = home / f"key{index}{PGP_SUFFIX}"
            path.write_text(key)
            subprocess.run(
                ["gpg", "--batch", "--quiet", "--import", str(path)],
                env={**os.environ, **env},
                capture_output=True,
                timeout=_TIMEOUT_SECONDS,
                check=False,
            )
        try:
            checked = _git(
                repo,
                [
                    "-c",
                    f"gpg.ssh.allowedSignersFile={allowed}",
                    "verify-commit",
                    "--raw",
                    commit,
                ],
                env,
            )
        finally:
            # gpg started an agent for the private keyring only when keys were imported.
            if armored:
                _kill_agent(env)
    if checked.returncode != 0:
        raise CommitNotVerifiedError(
            f"commit {short} is not signed by a key in {where}: {_reason(checked.stderr)}"
        )


def _kill_agent(env: dict[str, str]) -> None:
    subprocess.run(
        ["gpgconf", "--kill", "gpg-agent"],
        env={**os.environ, **env},
        capture_output=True,
        timeout=_TIMEOUT_SECONDS,
        check=False,
    )


def _git(repo: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **env, "GIT_TERMINAL_PROMPT": "0"},
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_SECONDS,
        check=False,
    )


def _reason(stderr: str) -> str:
    """The part of gpg's or ssh-keygen's answer a person acts on, on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "NO_PUBKEY" in line or "No public key" in line:
            return "signed by an unknown OpenPGP key"
        if "BADSIG" in line or "BAD signature" in line:
            return "bad OpenPGP signature"
        if "No principal matched" in line or "not in allowed" in line.lower():
            return "signed by an SSH key that allowed_signers does not list"
        if "Could not verify signature" in line:
            return "bad SSH signature"
    return one_line(" ".join(lines), 200) or "signature not verified"
