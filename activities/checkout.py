"""Read a checkout directory into the in-memory file listing the pure bundle reader works on."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from flotilla.bundles import FLEETIGNORE, MAX_FILE_BYTES, FileListing, ReadResult, read_bundles
from flotilla.errors import SpecError


def read_checkout(root: Path) -> FileListing:
    """List every regular file and symlink below ``root`` (hidden directories skipped).

    Symlinks are recorded, never followed here, so nothing outside the checkout is read;
    an absolute target inside the checkout is made relative. Files over the size limit are
    recorded by size and not read.
    """
    if not root.is_dir():
        raise SpecError("is not a directory", file=str(root))
    real_root = os.path.realpath(root)
    listing = FileListing()
    stack = [("", os.fspath(root))]
    while stack:
        relative, directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                path = f"{relative}/{name}" if relative else name
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    listing.symlinks[path] = _link_target(entry.path, real_root)
                elif stat.S_ISDIR(info.st_mode):
                    # Hidden directories (.git first of all) never hold bundle content.
                    if not name.startswith("."):
                        stack.append((path, entry.path))
                elif stat.S_ISREG(info.st_mode):
                    if name.startswith(".") and name != FLEETIGNORE:
                        continue
                    if info.st_size > MAX_FILE_BYTES:
                        listing.too_large[path] = info.st_size
                    else:
                        with open(entry.path, "rb") as handle:
                            listing.files[path] = handle.read()
    return listing


def _link_target(link: str, real_root: str) -> str:
    target = os.readlink(link)
    if not os.path.isabs(target):
        return target
    real = os.path.realpath(target)
    if real == real_root or real.startswith(real_root + os.sep):
        return os.path.relpath(real, os.path.realpath(os.path.dirname(link)))
    return target


def read_checkout_bundles(
    root: Path, *, gitrepo_name: str, paths: Sequence[str] = (".",), namespace: str = ""
) -> ReadResult:
    """Read a checkout from disk and find its bundles (see ``flotilla.bundles.read_bundles``)."""
    return read_bundles(
        read_checkout(root), gitrepo_name=gitrepo_name, paths=paths, namespace=namespace
    )
