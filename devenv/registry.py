"""Debian's ``docker-registry`` (CNCF distribution) on loopback, and a way to push a tiny image.

Pushing speaks the OCI distribution API over plain HTTP: upload the config and one layer as
blobs, then PUT an OCI image manifest under a tag. No Docker engine is involved.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from devenv.process import ManagedProcess, StartupError, free_port

START_TIMEOUT = 20.0
# The one user of a registry started with ``basic_auth``. docker-registry reads only bcrypt
# hashes; this one was made once with crypt.crypt and a $2b$05$ salt.
AUTH_USER, AUTH_PASSWORD = "robot", "s3cret-pass"
HTPASSWD = f"{AUTH_USER}:$2b$05$KcVwkjbG9ZotpwZIGYi9uePEK/mX1eJdSFwZN4VuXyqVA7zi9goEW\n"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

_CONFIG_TEMPLATE = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  debug:
    addr: ""
"""


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
    """A real OCI registry at ``127.0.0.1:<port>`` with its storage in ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        tied_to_parent: bool = True,
        basic_auth: bool = False,
    ) -> None:
        self.dir = directory
        self.port = port or free_port()
        self.tied_to_parent = tied_to_parent
        # Basic auth for AUTH_USER (htpasswd); push_image and head_digest then do not work.
        self.basic_auth = basic_auth
        self.process: ManagedProcess | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> LocalRegistry:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "config.yml"
        text = _CONFIG_TEMPLATE.format(storage=self.dir / "storage", port=self.port)
        if self.basic_auth:
            htpasswd = self.dir / "htpasswd"
            htpasswd.write_text(HTPASSWD)
            text += f"auth:\n  htpasswd:\n    realm: flotilla\n    path: {htpasswd}\n"
        config.write_text(text)
        self.process = ManagedProcess(
            "docker-registry",
            [_registry_binary(), "serve", str(config)],
            self.dir / "registry.log",
            tied_to_parent=self.tied_to_parent,
        ).start()
        self.process.wait_until(self._ready, timeout=START_TIMEOUT, what="registry /v2/")
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except urllib.error.HTTPError as err:
            return self.basic_auth and err.code == 401
        except (OSError, urllib.error.URLError):
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
