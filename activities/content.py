"""Content store: immutable bytes addressed by sha256; bundles are stored the same way.

Two backends implement :class:`ContentStore`, chosen by ``Settings.content_backend``:
``FileContentStore`` (a local directory, the embedded default: one machine only) and
``OciContentStore`` (``activities/ocicontent.py``: an OCI registry every process reaches).

Errors:

ContentError                 malformed digest, content missing or corrupt: permanent
 └── ContentUnavailableError the store cannot be reached or refuses us: retryable

Every entry also records when it was last written, for garbage collection
(``activities/contentgc.py``, docs/content-store.md): putting content that is already there
refreshes that time once it is older than ``touch_after``, so content a new commit uses
again is never swept just because an old commit wrote it first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flotilla.bundles import Bundle
from flotilla.errors import CONTENT_MISSING, CONTENT_UNAVAILABLE, FlotillaError

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class ContentError(FlotillaError):
    """A digest is malformed, missing from the store, or its bytes no longer match it: resending
    the same digest finds the same nothing, so it is not retried."""

    type = CONTENT_MISSING


class ContentUnavailableError(ContentError):
    """The store cannot be reached or refuses us; the content itself may well be there."""

    type = CONTENT_UNAVAILABLE
    retryable = True


def check_digest(digest: str) -> None:
    if not _DIGEST.match(digest):
        raise ContentError(f"not a sha256 hex digest: {digest[:80]!r}")


@dataclass(frozen=True)
class ContentEntry:
    """One stored digest for garbage collection: when it was last written, and a version
    token that ``delete`` compares so an entry rewritten since it was listed survives."""

    digest: str
    written: datetime
    version: str


class ContentStore(ABC):
    """Immutable blobs by sha256 hex digest; bundles are blobs of their serialization."""

    # Putting existing content refreshes its written time once it is at least this old.
    # Garbage collection needs a grace period of at least this (see collect_garbage).
    touch_after: timedelta = timedelta(0)

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store ``data`` and return its digest; storing the same bytes again is a no-op
        except that it refreshes the written time (see ``touch_after``)."""

    @abstractmethod
    def has(self, digest: str) -> bool:
        """Tell whether the store holds ``digest``."""

    @abstractmethod
    def get(self, digest: str) -> bytes:
        """Return the bytes of ``digest``, checked against it; ContentError when missing."""

    @abstractmethod
    def entries(self) -> Iterator[ContentEntry]:
        """Every stored digest with its written time, in no particular order."""

    @abstractmethod
    def delete(self, entry: ContentEntry) -> bool:
        """Remove ``entry`` unless it was written again since it was listed; True if removed."""

    def put_bundle(self, bundle: Bundle) -> str:
        """Store a bundle (content and options) and return the digest of its serialization."""
        return self.put(serialize_bundle(bundle))

    def get_bundle(self, digest: str) -> Bundle:
        """Load a bundle stored by ``put_bundle``."""
        return Bundle.model_validate_json(self.get(digest))


class FileContentStore(ContentStore):
    """Immutable blobs on disk, one file per sha256 digest, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        check_digest(digest)
        # Two levels of fan-out keep directories small for stores with millions of blobs.
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        try:
            # One system call both answers "is it there?" and refreshes the written time.
            os.utime(path)
            return digest
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file in the same directory and rename: readers never see a
        # partial blob, and concurrent writers of the same digest race harmlessly.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def has(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def get(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ContentError(f"content {digest} is not in the store at {self.root}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ContentError(f"content {digest} is corrupt in the store at {self.root}")
        return data

    def entries(self) -> Iterator[ContentEntry]:
        for path in self.root.glob("??/*"):
            if not _DIGEST.match(path.name):
                continue  # a writer's temporary file
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            yield ContentEntry(
                digest=path.name,
                written=datetime.fromtimestamp(stat.st_mtime, UTC),
                version=str(stat.st_mtime_ns),
            )

    def delete(self, entry: ContentEntry) -> bool:
        path = self._path(entry.digest)
        try:
            if str(path.stat().st_mtime_ns) != entry.version:
                return False  # put again since it was listed: in use after all
            path.unlink()
        except FileNotFoundError:
            return False
        return True


def serialize_bundle(bundle: Bundle) -> bytes:
    """A stable byte form of a bundle: JSON with sorted keys, file bytes as base64."""
    data = json.loads(bundle.model_dump_json(by_alias=True))
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
