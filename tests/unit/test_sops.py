"""Recognising SOPS files and putting decrypted values in place of their tokens."""

from __future__ import annotations

import pytest

from flotilla.bundles import FileListing, read_bundles
from flotilla.errors import RenderError
from flotilla.sops import (
    decrypted_documents,
    encrypted_documents,
    is_encrypted,
    reveal,
    token_plaintexts,
)

TOKEN_A = "ENC[AES256_GCM,data:AAAA,iv:1,tag:1,type:str]"
TOKEN_B = "ENC[AES256_GCM,data:BBBB,iv:2,tag:2,type:int]"
METADATA = "sops:\n  mac: ENC[AES256_GCM,data:mac,type:str]\n  version: 3.13.3\n"
ENCRYPTED = f"db:\n  password: {TOKEN_A}\n  port: {TOKEN_B}\n  host: db.local\n{METADATA}"


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        ("secret.yaml", ENCRYPTED, True),
        ("secret.yml", f"a: 1\n---\nb: 2\n{METADATA}", False),  # metadata in the first document
        ("secret.yaml", f"a: {TOKEN_A}\n{METADATA}---\nb: 2\n{METADATA}", True),
        ("secret.json", '{"a": 1, "sops": {"mac": "x", "version": "3"}}', True),
        ("secret.yaml", "sops: {version: 3}\n", False),  # no MAC: not sops's metadata
        ("secret.txt", ENCRYPTED, False),
        ("secret.yaml", "sops: [\n", False),
        ("plain.yaml", "a: 1\n", False),
    ],
)
def test_is_encrypted(path: str, text: str, expected: bool) -> None:
    assert is_encrypted(path, text.encode()) is expected


def test_tokens_map_to_the_values_at_the_same_place() -> None:
    (encrypted,) = encrypted_documents("v.yaml", ENCRYPTED.encode())
    assert "sops" not in encrypted
    decrypted = {"db": {"password": "hunter2", "port": 5432, "host": "db.local"}}
    plaintexts = token_plaintexts(encrypted, decrypted)
    assert plaintexts == {TOKEN_A: "hunter2", TOKEN_B: 5432}
    merged = {"db": {"password": TOKEN_A, "port": TOKEN_B, "host": "x"}, "l": [TOKEN_A]}
    assert reveal(merged, plaintexts) == {
        "db": {"password": "hunter2", "port": 5432, "host": "x"},
        "l": ["hunter2"],
    }


def test_unparsable_decrypted_content_is_withheld_from_the_message() -> None:
    with pytest.raises(RenderError) as err:
        decrypted_documents("b/v.yaml", "password: [hunter2\n")
    assert "hunter2" not in str(err.value)
    assert str(err.value) == (
        "b/v.yaml: decrypted content does not parse (details withheld: it is secret)"
    )


def test_encrypted_values_files_fold_as_tokens_and_travel_with_the_bundle() -> None:
    fleet_yaml = (
        "helm:\n  chart: chart\n  values: {db: {host: base}}\n  valuesFiles: [v.yaml, p.yaml]\n"
    )
    files = {
        "fleet.yaml": fleet_yaml,
        "v.yaml": ENCRYPTED,
        "p.yaml": "db: {port: 1}\n",
        "chart/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n",
    }
    listing = FileListing(files={f"b/{k}": v.encode() for k, v in files.items()})
    (bundle,) = read_bundles(listing, gitrepo_name="t", paths=["b"]).bundles
    assert bundle.options.helm is not None
    # Merge order holds: the plain file after the encrypted one still wins for "port".
    assert bundle.options.helm.values == {
        "db": {"host": "db.local", "password": TOKEN_A, "port": 1}
    }
    assert bundle.sealed_values == {"v.yaml": ENCRYPTED.encode()}
    assert "v.yaml" not in bundle.resources
    other = ENCRYPTED.replace("3.13.3", "3.13.4").encode()  # e.g. a recipient added
    changed = read_bundles(
        FileListing(files={**listing.files, "b/v.yaml": other}), gitrepo_name="t", paths=["b"]
    )
    assert changed.bundles[0].digest != bundle.digest
