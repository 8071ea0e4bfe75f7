"""SOPS-encrypted files in a bundle: recognise them, and put decrypted values where they belong.

SOPS keeps a file's structure in clear and encrypts each leaf to an ``ENC[AES256_GCM,...]``
token; its metadata (recipients, MAC) sits under a top-level ``sops`` key (in every document
of a multi-document YAML file). Decryption itself is the real ``sops`` program's job, at
render time; this module only reads the clear structure.

An encrypted helm values file is folded into ``helm.values`` when the bundle is read, like any
values file, but with its tokens: merge order, targetCustomizations and the options digest
work unchanged and see only ciphertext. At render time each token is swapped for the value
it encrypts (tokens are unique: every leaf has its own random IV).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from typing import Any

from flotilla.errors import RenderError, SpecError
from flotilla.yamlload import load_yaml_documents

SOPS_KEY = "sops"
ENCRYPTED_PREFIX = "ENC["
_YAML = (".yaml", ".yml")
_JSON = ".json"


def sops_format(path: str) -> str | None:
    """The format sops is told for a file (``yaml`` or ``json``), None for other files."""
    extension = posixpath.splitext(path)[1].lower()
    if extension in _YAML:
        return "yaml"
    if extension == _JSON:
        return "json"
    return None


def _documents(path: str, data: bytes) -> list[Any]:
    text = data.decode("utf-8", errors="replace")
    if sops_format(path) == "json":
        try:
            return [json.loads(text)]
        except ValueError:
            return []
    try:
        return load_yaml_documents(text, file=path)
    except SpecError:  # a file that does not parse is simply not a SOPS file
        return []


def _is_metadata(document: Any) -> bool:
    metadata = document.get(SOPS_KEY) if isinstance(document, dict) else None
    return isinstance(metadata, dict) and "mac" in metadata and "version" in metadata


def is_encrypted(path: str, data: bytes) -> bool:
    """True for a YAML or JSON file that sops encrypted (its first document has the metadata)."""
    if sops_format(path) is None or SOPS_KEY.encode() not in data:
        return False
    documents = _documents(path, data)
    return bool(documents) and _is_metadata(documents[0])


def encrypted_documents(path: str, data: bytes) -> list[Any]:
    """An encrypted file's documents without the ``sops`` metadata: tokens in their leaves."""
    return [
        {k: v for k, v in document.items() if k != SOPS_KEY}
        if isinstance(document, dict)
        else document
        for document in _documents(path, data)
    ]


def token_plaintexts(encrypted: Any, decrypted: Any) -> dict[str, Any]:
    """Each token of ``encrypted`` mapped to the value at the same place in ``decrypted``."""
    found: dict[str, Any] = {}
    if isinstance(encrypted, str) and encrypted.startswith(ENCRYPTED_PREFIX):
        found[encrypted] = decrypted
    elif isinstance(encrypted, dict) and isinstance(decrypted, dict):
        for key, value in encrypted.items():
            if key in decrypted:
                found.update(token_plaintexts(value, decrypted[key]))
    elif isinstance(encrypted, list) and isinstance(decrypted, list):
        for item, plain in zip(encrypted, decrypted, strict=False):
            found.update(token_plaintexts(item, plain))
    return found


def reveal(values: Any, plaintexts: Mapping[str, Any]) -> Any:
    """``values`` with every known token replaced by its plaintext (a new tree)."""
    if isinstance(values, str):
        return plaintexts.get(values, values)
    if isinstance(values, dict):
        return {key: reveal(value, plaintexts) for key, value in values.items()}
    if isinstance(values, list):
        return [reveal(item, plaintexts) for item in values]
    return values


def decrypted_documents(path: str, text: str) -> list[Any]:
    """sops's output, parsed the way the file was written (YAML or JSON).

    A parser's message quotes the offending line, which is plaintext here: it is not passed on.
    """
    try:
        if sops_format(path) == "json":
            return [json.loads(text)]
        return load_yaml_documents(text, file=path)
    except (ValueError, SpecError):
        raise RenderError(
            "decrypted content does not parse (details withheld: it is secret)", file=path
        ) from None
