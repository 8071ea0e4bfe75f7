"""Read a checkout directory into the in-memory file listing the pure bundle reader works on."""

from __future__ import annotations

import os
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
                # DirEntry answers these from the directory listing, without a stat call.
                if entry.is_symlink():
                    listing.symlinks[path] = _link_target(entry.path, real_root)
                elif entry.is_dir(follow_symlinks=False):
                    # Hidden directories (.git first of all) never hold bundle content.
                    if not name.startswith("."):
                        stack.append((path, entry.path))
                elif entry.is_file(follow_symlinks=False) and (
                    not name.startswith(".") or name == FLEETIGNORE
                ):
                    _read_file(listing, path, entry.path)
    return listing


def _read_file(listing: FileListing, path: str, full_path: str) -> None:
    with open(full_path, "rb") as handle:
        # Reading one byte past the limit tells an oversized file apart without a stat call;
        # the rest of it is never read.
        data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            listing.too_large[path] = os.fstat(handle.fileno()).st_size
        else:
            listing.files[path] = data


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
