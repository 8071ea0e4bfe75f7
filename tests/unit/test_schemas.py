"""The published JSON Schemas are generated from the models and accept every example."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from flotilla.schemas import SCHEMA_MODELS, json_schema
from starters.schema import schema_text

ROOT = Path(__file__).resolve().parents[2]
KINDS = {
    "GitRepo": "gitrepo",
    "HelmOp": "helmop",
    "Cluster": "cluster",
    "ClusterGroup": "clustergroup",
}


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", list(SCHEMA_MODELS))
def test_published_schema_is_what_the_models_generate(name: str) -> None:
    published = ROOT / "schemas" / f"{name}.json"
    assert published.read_text() == schema_text(name), (
        f"{published} is out of date: run `flotilla schema --write schemas`"
    )


@pytest.mark.parametrize(
    "path", sorted(ROOT.glob("examples/**/fleet.yaml")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_example_fleet_yaml_is_valid(path: Path) -> None:
    data = yaml.safe_load(path.read_text()) or {}
    assert list(_validator("fleet.yaml").iter_errors(data)) == []


def _objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(ROOT.glob("examples/*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") in KINDS:
                found.append((f"{path.name}:{document['kind']}", document))
    return found


@pytest.mark.parametrize(("where", "document"), _objects(), ids=[w for w, _ in _objects()])
def test_every_example_object_is_valid(where: str, document: dict[str, Any]) -> None:
    assert list(_validator(KINDS[document["kind"]]).iter_errors(document)) == []


def test_the_examples_cover_every_object_kind_an_editor_meets_first() -> None:
    assert {w.split(":")[1] for w, _ in _objects()} >= {"GitRepo", "HelmOp", "Cluster"}


@pytest.mark.parametrize(
    "document",
    [
        {"helm": {"chrat": "nginx"}},  # a typo
        {"defaultNamespace": 3},  # a wrong type
        {"targetCustomizations": [{"name": "x", "clusterSelectr": {}}]},
        {"rolloutStrategy": {"maxUnavailable": {"nope": 1}}},
    ],
)
def test_typos_and_wrong_types_are_flagged(document: dict[str, Any]) -> None:
    assert list(_validator("fleet.yaml").iter_errors(document)) != []


def test_free_form_maps_stay_open() -> None:
    document = {"helm": {"values": {"anything": {"nested": [1, 2]}}}, "labels": {"a": "b"}}
    assert list(_validator("fleet.yaml").iter_errors(document)) == []
    assert json.loads(schema_text("gitrepo"))["$id"] == "urn:flotilla:schema:gitrepo"
