"""Debian's ``docker-registry`` (CNCF distribution) on loopback, and a way to push a tiny image.

Pushing speaks the OCI distribution API over plain HTTP: upload the config and one layer as
blobs, then PUT an OCI image manifest under a tag. No Docker engine is involved. A registry
may also ask for credentials (``auth``: an ``htpasswd_auth`` block or a token block) and
serve TLS with a certificate made by ``self_signed_certificate``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import ssl
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from devenv.process import ManagedProcess, StartupError, free_port

START_TIMEOUT = 20.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# The one user of registries started with ``htpasswd_auth``; bcrypt of the password made once
# with crypt.crypt and a $2b$05$ salt.
BASIC_USER, BASIC_PASSWORD = "robot", "s3cret-pass"
_HTPASSWD = f"{BASIC_USER}:$2b$05$KcVwkjbG9ZotpwZIGYi9uePEK/mX1eJdSFwZN4VuXyqVA7zi9goEW\n"

_CONFIG_TEMPLATE = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: {quiet}
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  debug:
    addr: ""
{tls}{auth}"""


def htpasswd_auth(directory: Path) -> str:
    """The ``auth:`` block of a registry that takes BASIC_USER and BASIC_PASSWORD only."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "htpasswd"
    path.write_text(_HTPASSWD)
    return f"auth:\n  htpasswd:\n    realm: flotilla\n    path: {path}\n"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, made with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "registry.crt", directory / "registry.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _registry_binary() -> str:
    found = shutil.which("docker-registry") or (
        "/usr/bin/docker-registry" if Path("/usr/bin/docker-registry").exists() else None
    )
    if not found:
        raise StartupError(
            "docker-registry is missing: run `make install` (Debian package docker-registry)"
        )
    return found


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(content: bytes) -> bytes:
    """A gzipped tar with one file, deterministic so the same content gives the same digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("content.txt")
        info.size = len(content)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


class LocalRegistry:
    """A real OCI registry at ``127.0.0.1:<port>`` with its storage in ``directory`` (or
    ``storage``); stopped and started again, it keeps its port and its content."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        tied_to_parent: bool = True,
        storage: Path | None = None,
        auth: str = "",
        tls: tuple[Path, Path] | None = None,
        access_log: bool = False,
    ) -> None:
        self.dir = directory
        self.port = port or free_port()
        self.tied_to_parent = tied_to_parent
        self.storage = storage or directory / "storage"
        self.auth = auth
        # One line per request in registry.log (benchmarks count requests with it).
        self.access_log = access_log
        self.tls = tls
        self.process: ManagedProcess | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def start(self) -> LocalRegistry:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "config.yml"
        tls = (
            f"  tls:\n    certificate: {self.tls[0]}\n    key: {self.tls[1]}\n" if self.tls else ""
        )
        config.write_text(
            _CONFIG_TEMPLATE.format(
                storage=self.storage,
                port=self.port,
                tls=tls,
                auth=self.auth,
                quiet="false" if self.access_log else "true",
            )
        )
        self.process = ManagedProcess(
            "docker-registry",
            [_registry_binary(), "serve", str(config)],
            self.dir / "registry.log",
            tied_to_parent=self.tied_to_parent,
        ).start()
        self.process.wait_until(self._ready, timeout=START_TIMEOUT, what="registry /v2/")
        return self

    def _ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else None
        try:
            with urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=context) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except urllib.error.HTTPError as err:
            return bool(self.auth) and err.code == 401
        except OSError:
            return False

    def _call(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        url = path if path.startswith("http") else f"{self.url}{path}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return resp.status, dict(resp.headers), resp.read()

    def _upload_blob(self, repository: str, blob: bytes) -> str:
        digest = _digest(blob)
        try:
            self._call("HEAD", f"/v2/{repository}/blobs/{digest}")
            return digest
        except urllib.error.HTTPError as err:
            if err.code != 404:
                raise
        _, headers, _ = self._call("POST", f"/v2/{repository}/blobs/uploads/")
        location = headers["Location"]
        separator = "&" if "?" in location else "?"
        self._call(
            "PUT",
            f"{location}{separator}digest={digest}",
            blob,
            {"Content-Type": "application/octet-stream"},
        )
        return digest

    def push_image(self, repository: str, tag: str, content: bytes | str = b"flotilla") -> str:
        """Push a one-layer image; return its manifest digest. New content → new digest."""
        layer = _layer(content.encode() if isinstance(content, str) else content)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [_digest(gzip.decompress(layer))]},
                "config": {},
            },
            sort_keys=True,
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG,
                    "digest": self._upload_blob(repository, config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": OCI_LAYER,
                        "digest": self._upload_blob(repository, layer),
                        "size": len(layer),
                    }
                ],
            },
            sort_keys=True,
        ).encode()
        _, headers, _ = self._call(
            "PUT", f"/v2/{repository}/manifests/{tag}", manifest, {"Content-Type": OCI_MANIFEST}
        )
        return headers.get("Docker-Content-Digest") or _digest(manifest)

    def head_digest(self, repository: str, reference: str) -> str:
        """The manifest digest behind a tag, as a registry client sees it (HEAD request)."""
        _, headers, _ = self._call(
            "HEAD", f"/v2/{repository}/manifests/{reference}", headers={"Accept": OCI_MANIFEST}
        )
        return headers["Docker-Content-Digest"]

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
