"""SSH host-key verification of git servers: which URLs use SSH, and what ssh's refusal means.

Fleet (0.13 and later) checks host keys strictly: the ``known_hosts`` key of the GitRepo's
client secret, else the fleet-wide known hosts, else the fetch fails; an operator may turn
the checks off for the whole installation, insecurely. flotilla keeps those rules; the
fleet-wide known hosts are the Secret ``known-hosts`` (key ``known_hosts``) in the system
namespace, as flotilla keeps every other credential in the secret store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

KNOWN_HOSTS_KEY = "known_hosts"
KNOWN_HOSTS_SECRET = "known-hosts"  # noqa: S105 - a secret's name, not a secret

# scp-like: user@host:path (no scheme, a colon before the first slash)
_SCP_LIKE = re.compile(r"^(?:[^@/:\s]+@)?(?P<host>[^@/:\s\[\]]+|\[[^\]]+\]):(?!//)")
_CHANGED = re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED")
_UNKNOWN = re.compile(r"No (?P<type>\S+) host key is known for (?P<host>\S+)")
_OFFERED = re.compile(
    r"fingerprint for the (?P<type>\S+) key sent by the remote host is\s+(?P<fp>\S+?)\.?\s"
)
_CHANGED_HOST = re.compile(r"Host key for (?P<host>\S+) has changed")
_FAILED = "Host key verification failed"


def ssh_host(repo: str) -> str | None:
    """``host`` or ``[host]:port`` (known_hosts' form) when ``repo`` is reached over SSH."""
    if "://" in repo:
        parts = urlsplit(repo)
        if parts.scheme not in ("ssh", "git+ssh", "ssh+git"):
            return None
        host = parts.hostname or ""
        return f"[{host}]:{parts.port}" if parts.port and parts.port != 22 else host
    match = _SCP_LIKE.match(repo)
    if match is None or repo.startswith(("/", ".")):
        return None
    return match["host"].strip("[]")


@dataclass(frozen=True)
class HostKeyRefusal:
    """ssh refused the server's host key: unknown, or different from the one known."""

    host: str
    changed: bool
    key_type: str = ""
    fingerprint: str = ""

    def message(self, where: str) -> str:
        """One line for the status: what happened, and what to do (``where`` names the
        secrets the known hosts came from)."""
        offered = f" (it offers {self.key_type} {self.fingerprint})" if self.fingerprint else ""
        if self.changed:
            return (
                f"SSH host key of {self.host} has CHANGED{offered} and does not match "
                f"{where}: a reinstalled server or a man in the middle; check the new key's "
                "fingerprint with the server's owner before updating known_hosts"
            )
        return (
            f"SSH host key of {self.host} is not known{offered}: add the host's key line "
            f"(ssh-keyscan, after checking its fingerprint) to {where}"
        )


def host_key_refusal(stderr: str, host: str) -> HostKeyRefusal | None:
    """What ssh's error output says about the host key, or None when it is another error."""
    if _FAILED not in stderr:
        return None
    if _CHANGED.search(stderr):
        offered = _OFFERED.search(stderr + "\n")
        named = _CHANGED_HOST.search(stderr)
        return HostKeyRefusal(
            host=named["host"] if named else host,
            changed=True,
            key_type=offered["type"] if offered else "",
            fingerprint=offered["fp"] if offered else "",
        )
    unknown = _UNKNOWN.search(stderr)
    return HostKeyRefusal(
        host=unknown["host"] if unknown else host,
        changed=False,
        key_type=unknown["type"] if unknown else "",
    )
