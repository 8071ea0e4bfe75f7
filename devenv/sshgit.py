"""``sshd`` on loopback serving git repositories over SSH, with its own host and client keys.

Tests of SSH host-key verification need a real SSH server whose host key they know (and can
change): this one runs OpenSSH's sshd as the current user, on a free port, with a host key
it generates, accepting only the client key it generates. Repositories are served from
``<root>/repos/<name>.git`` as ``ssh://<user>@127.0.0.1:<port><root>/repos/<name>.git``.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
from pathlib import Path

from devenv.gitserver import git
from devenv.process import ManagedProcess, StartupError, free_port

START_TIMEOUT = 20.0
SSHD = "/usr/sbin/sshd"


def keygen(path: Path, comment: str) -> None:
    """An ed25519 key pair at ``path`` and ``path.pub`` (replaced if present)."""
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def fingerprint(public_key: Path) -> str:
    """``SHA256:...`` of a public key, as ssh prints it."""
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(public_key)], check=True, capture_output=True, text=True
    ).stdout
    return out.split()[1]


class SshGitServer:
    """sshd serving bare repositories under ``root`` to the client key ``client_key``."""

    def __init__(self, root: Path, *, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.host_key = root / "ssh_host_ed25519_key"
        self.client_key = root / "client_ed25519"
        self.user = getpass.getuser()
        self.process: ManagedProcess | None = None

    @property
    def repos(self) -> Path:
        return self.root / "repos"

    def url(self, name: str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{self.repos}/{name}.git"

    def known_hosts_line(self) -> str:
        """The known_hosts entry of this server's current host key."""
        key = self.host_key.with_suffix(".pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n"

    def host_fingerprint(self) -> str:
        return fingerprint(self.host_key.with_suffix(".pub"))

    def start(self) -> SshGitServer:
        if not Path(SSHD).exists() or shutil.which("ssh") is None:
            raise StartupError(
                "sshd is missing: run `make install` (Debian package openssh-server)"
            )
        self.repos.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            keygen(self.host_key, "flotilla-test-host")
        if not self.client_key.exists():
            keygen(self.client_key, "flotilla-test-client")
        authorized = self.root / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        config = self.root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {self.port}",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {authorized}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    # Test directories belong to the test's user, under /tmp.
                    "StrictModes no",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        # sshd wants its privilege-separation directory even when it runs as a plain user.
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            "sshd", [SSHD, "-D", "-e", "-f", str(config)], self.root / "sshd.log"
        ).start()

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        self.process.wait_until(listening, timeout=START_TIMEOUT, what=f"sshd on {self.port}")
        return self

    def create_repo(self, name: str, files: dict[str, str]) -> str:
        """A bare repository with one commit of ``files`` on ``main``; returns its ssh URL."""
        bare = self.repos / f"{name}.git"
        git("init", "--bare", str(bare), cwd=self.root)
        work = self.root / "work" / name
        work.mkdir(parents=True)
        git("init", cwd=work)
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        git("add", "-A", cwd=work)
        git("commit", "-m", "initial", cwd=work)
        git("push", str(bare), "HEAD:main", cwd=work)
        return self.url(name)

    def rotate_host_key(self) -> None:
        """A new host key, as after a reinstall or a man in the middle; sshd restarts."""
        keygen(self.host_key, "flotilla-test-host-rotated")
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> SshGitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
