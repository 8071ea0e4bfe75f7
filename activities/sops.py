"""Decrypt a bundle's SOPS files with the real ``sops`` program, for one render, in memory.

The age identities reach sops only through the environment of its own process (never its
command line, never a file); sops runs with a private, empty home and config directory, so
neither the worker's own keys nor a stray ``.sops.yaml`` take part. Plaintext comes back on
sops's stdout and lives in the returned bundle only: messages name the file and the secret
the key came from, and a failure's text is scrubbed of the identities.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activities.tools import ToolPaths, run_tool
from flotilla.bundles import Bundle
from flotilla.deployment import secret_strings
from flotilla.errors import RenderError
from flotilla.models import BundleDeploymentOptions
from flotilla.sops import (
    decrypted_documents,
    encrypted_documents,
    is_encrypted,
    reveal,
    sops_format,
    token_plaintexts,
)


@dataclass(frozen=True)
class AgeKey:
    """Age identities for sops, and the secret ("namespace/name") they came from."""

    secret: str
    identities: str = field(repr=False)


@dataclass(frozen=True)
class Decrypted:
    """A bundle with its SOPS files decrypted, the tokens' values, and every plaintext string."""

    bundle: Bundle
    plaintexts: dict[str, Any]
    secrets: list[str]

    def reveal_options(self, options: BundleDeploymentOptions) -> BundleDeploymentOptions:
        """``options`` with the tokens of encrypted values files in ``helm.values`` decrypted."""
        helm = options.helm
        if not self.plaintexts or helm is None or not helm.values:
            return options
        values = reveal(helm.values, self.plaintexts)
        return options.model_copy(update={"helm": helm.model_copy(update={"values": values})})


def encrypted_files(bundle: Bundle) -> list[str]:
    """Paths (relative to the bundle) of its SOPS files: content and helm values files."""
    content = [path for path, data in bundle.resources.items() if is_encrypted(path, data)]
    return sorted([*content, *bundle.sealed_values])


def decrypt_bundle(
    bundle: Bundle, key: AgeKey | None, *, workdir: Path, tools: ToolPaths
) -> Decrypted:
    """Decrypt every SOPS file of ``bundle``; without any, the bundle comes back as it is."""
    encrypted = encrypted_files(bundle)
    if not encrypted:
        return Decrypted(bundle=bundle, plaintexts={}, secrets=[])
    if key is None:
        where = posixpath.join(bundle.path, encrypted[0])
        raise RenderError("is SOPS-encrypted and no age key was given", file=where)
    sops = tools.require("sops")
    resources = dict(bundle.resources)
    plaintexts: dict[str, Any] = {}
    secrets: list[str] = []
    workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="sops-", dir=workdir))
    try:
        for path in encrypted:
            sealed = bundle.sealed_values.get(path)
            data = bundle.resources[path] if sealed is None else sealed
            where = posixpath.join(bundle.path, path)
            text = _decrypt(sops, where, data, key, scratch)
            decrypted = decrypted_documents(where, text)
            found = token_plaintexts(encrypted_documents(path, data), decrypted)
            # Only what was encrypted is secret (often just data: and stringData:).
            secrets.extend(secret_strings(list(found.values())))
            if sealed is None:
                resources[path] = text.encode()
            else:
                plaintexts.update(found)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Decrypted(
        bundle=bundle.model_copy(update={"resources": resources, "sealed_values": {}}),
        plaintexts=plaintexts,
        secrets=secrets,
    )


def _decrypt(sops: str, where: str, data: bytes, key: AgeKey, scratch: Path) -> str:
    kind = sops_format(where)
    assert kind is not None  # is_encrypted only accepts YAML and JSON
    # Ciphertext only: the file is safe on disk; the private dir just keeps renders apart.
    encrypted = scratch / f"input.{kind}"
    encrypted.write_bytes(data)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(scratch),
        "XDG_CONFIG_HOME": str(scratch),
        "SOPS_AGE_KEY": key.identities,
    }
    return run_tool(
        [sops, "decrypt", "--input-type", kind, "--output-type", kind, str(encrypted)],
        what="sops decrypt",
        file=where,
        env=env,
        cwd=scratch,
        redact=key.identities.split(),
        note=f" (age key from secret {key.secret})",
    )
