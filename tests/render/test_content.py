"""The content store (activities.content) and reading a checkout from disk (activities.checkout)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from activities.checkout import read_checkout, read_checkout_bundles
from activities.content import ContentError, FileContentStore, serialize_bundle
from flotilla.bundles import MAX_FILE_BYTES

CM = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"


def test_put_get_has(tmp_path: Path) -> None:
    store = FileContentStore(tmp_path)
    digest = store.put(b"hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert store.has(digest) and store.get(digest) == b"hello"
    assert store.put(b"hello") == digest  # idempotent
    assert not store.has(hashlib.sha256(b"other").hexdigest())
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [digest]  # no temp left


def test_get_verifies_the_digest(tmp_path: Path) -> None:
    store = FileContentStore(tmp_path)
    digest = store.put(b"hello")
    (tmp_path / digest[:2] / digest).write_bytes(b"tampered")
    with pytest.raises(ContentError, match="is corrupt"):
        store.get(digest)
    with pytest.raises(ContentError, match="is not in the store"):
        store.get("0" * 64)
    with pytest.raises(ContentError, match="not a sha256 hex digest"):
        store.get("../../etc/passwd")


def write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def test_bundle_round_trip_is_stable(tmp_path: Path) -> None:
    checkout = tmp_path / "repo"
    write(
        checkout,
        {
            "app/fleet.yaml": b"helm: {values: {b: 1, a: 2}}\n",
            "app/cm.yaml": CM,
            "app/bin.dat": bytes(range(256)),
        },
    )
    (bundle,) = read_checkout_bundles(checkout, gitrepo_name="r").bundles
    store = FileContentStore(tmp_path / "store")
    digest = store.put_bundle(bundle)
    again = store.get_bundle(digest)
    assert again == bundle and again.resources["bin.dat"] == bytes(range(256))
    assert serialize_bundle(again) == serialize_bundle(bundle)
    assert store.put_bundle(again) == digest


def test_read_checkout_skips_hidden_dirs_and_records_links_and_big_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"a/cm.yaml": CM, ".git/HEAD": b"ref", "a/.hidden": b"x", "a/.fleetignore": b"x\n"},
    )
    os.symlink("cm.yaml", tmp_path / "a/link.yaml")
    os.symlink(str(tmp_path / "a/cm.yaml"), tmp_path / "a/abs-inside.yaml")
    os.symlink("/etc/hostname", tmp_path / "a/outside.yaml")
    with open(tmp_path / "a/big.yaml", "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    listing = read_checkout(tmp_path)
    assert set(listing.files) == {"a/cm.yaml", "a/.fleetignore"}
    assert listing.symlinks == {
        "a/link.yaml": "cm.yaml",
        "a/abs-inside.yaml": "cm.yaml",
        "a/outside.yaml": "/etc/hostname",
    }
    assert listing.too_large == {"a/big.yaml": MAX_FILE_BYTES + 1}
