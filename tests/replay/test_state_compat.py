"""Workflow state written by earlier code still validates: continue-as-new hands a run's whole
state to the next run, so a running workflow's state must survive a change of the models.

``states/*.json`` were dumped from the models at commit 4e306a1 (the state of a bundle in
mid-rollout with a settled, a failing and a planned-but-broken cluster; a GitRepo with a good
and a bad bundle and a report). Each must validate with today's models and dump back to the
same JSON, so nothing is lost or renamed on the way through continue-as-new; fields added
since then take their defaults and are left out of the comparison. Fields dropped on purpose
are listed in DROPPED: validation ignores them, so a running workflow's input still validates.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from workflows.bundle_models import BundleWorkflowState
from workflows.gitrepo_models import GitRepoState

STATES = Path(__file__).parent / "states"
MODELS: dict[str, type[BaseModel]] = {
    "bundle-state.json": BundleWorkflowState,
    "gitrepo-state.json": GitRepoState,
}
# The bundle's protocol number: versioning is by workflow.patched() only now
# (docs/orchestration.md, "Versioning").
DROPPED = {"bundle-state.json": {"protocol"}}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_earlier_state_validates_and_round_trips(name: str) -> None:
    written = json.loads((STATES / name).read_text())

    state = MODELS[name].model_validate(written)

    kept = {k: v for k, v in written.items() if k not in DROPPED.get(name, set())}
    assert state.model_dump(mode="json", exclude_unset=True) == kept
