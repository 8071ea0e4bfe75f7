"""Which git URLs go over SSH, and what ssh's refusals say (outputs of OpenSSH 9.2)."""

from __future__ import annotations

import pytest

from flotilla.hostkeys import HostKeyRefusal, host_key_refusal, ssh_host

UNKNOWN = (
    "No ED25519 host key is known for [127.0.0.1]:53203 and you have requested strict "
    "checking.\n"
    """Host key verification failed.
fatal: Could not read from remote repository.
"""
)
CHANGED = """@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
The fingerprint for the ED25519 key sent by the remote host is
SHA256:yBXHDc1YVyoSS1fr59hq4z9/K46XGtRYBm89/m8fStI.
Please contact your system administrator.
Host key for [127.0.0.1]:53203 has changed and you have requested strict checking.
Host key verification failed.
fatal: Could not read from remote repository.
"""


@pytest.mark.parametrize(
    ("repo", "host"),
    [
        ("ssh://git@github.com/org/repo.git", "github.com"),
        ("ssh://git@github.com:22/org/repo.git", "github.com"),
        ("ssh://git@127.0.0.1:2222/srv/repo.git", "[127.0.0.1]:2222"),
        ("git+ssh://git@gitlab.example/a/b", "gitlab.example"),
        ("git@github.com:org/repo.git", "github.com"),
        ("github.com:org/repo.git", "github.com"),
        ("https://github.com/org/repo.git", None),
        ("git://127.0.0.1:9418/repo.git", None),
        ("/srv/git/repo.git", None),
        ("./relative/repo", None),
        ("file:///srv/git/repo.git", None),
    ],
)
def test_ssh_host(repo: str, host: str | None) -> None:
    assert ssh_host(repo) == host


def test_unknown_host_key() -> None:
    refusal = host_key_refusal(UNKNOWN, "[127.0.0.1]:53203")
    assert refusal == HostKeyRefusal(host="[127.0.0.1]:53203", changed=False, key_type="ED25519")
    assert refusal.message("secret ns/git").startswith(
        "SSH host key of [127.0.0.1]:53203 is not known: add the host's key line"
    )


def test_changed_host_key_names_the_offered_fingerprint() -> None:
    refusal = host_key_refusal(CHANGED, "x")
    assert refusal == HostKeyRefusal(
        host="[127.0.0.1]:53203",
        changed=True,
        key_type="ED25519",
        fingerprint="SHA256:yBXHDc1YVyoSS1fr59hq4z9/K46XGtRYBm89/m8fStI",
    )
    message = refusal.message("secret ns/git")
    assert "has CHANGED (it offers ED25519 SHA256:yBXHDc1YVyoSS1fr59hq4z9/K46XGtRYBm89/m8fStI)" in (
        message
    )
    assert "\n" not in message


def test_other_ssh_failures_are_not_host_key_refusals() -> None:
    assert host_key_refusal("Permission denied (publickey).\nfatal: Could not read", "h") is None
