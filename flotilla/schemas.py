"""JSON Schemas of the files people write (fleet.yaml, GitRepo, Cluster, ...), from the models.

Generated, never written by hand: the models are what flotilla reads, so the schemas say
exactly that. They are stricter than the reader in one way: a key flotilla does not know is
an error in the schema (``additionalProperties: false``) where the reader only warns and
ignores it, so an editor underlines a typo or a field flotilla would not apply. Free-form maps
(Helm values, labels) stay open.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from flotilla.models import (
    Cluster,
    ClusterGroup,
    FleetYaml,
    GitRepo,
    GitRepoRestriction,
    HelmOp,
    Policy,
    Schedule,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# The published file name of each schema (``schemas/<name>.json``) and its model.
SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "fleet.yaml": FleetYaml,
    "gitrepo": GitRepo,
    "helmop": HelmOp,
    "cluster": Cluster,
    "clustergroup": ClusterGroup,
    "policy": Policy,
    "gitreporestriction": GitRepoRestriction,
    "schedule": Schedule,
}


def json_schema(name: str) -> dict[str, Any]:
    """The schema published as ``schemas/<name>.json``."""
    model = SCHEMA_MODELS[name]
    schema = model.model_json_schema(by_alias=True, mode="validation")
    _close(schema)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"urn:flotilla:schema:{name}",
        **schema,
        "title": f"{name} (flotilla)",
    }


def _close(node: Any) -> None:
    """``additionalProperties: false`` on every object that lists its properties."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for item in node:
            _close(item)
