"""Replay committed histories against today's workflow code: a change that alters history
without ``workflow.patched()`` fails here. Record new ones with FLOTILLA_RECORD_HISTORIES=DIR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_every_orchestration_workflow_has_a_committed_history() -> None:
    types = {
        json.loads(p.read_text())["events"][0]["workflowExecutionStartedEventAttributes"][
            "workflowType"
        ]["name"]
        for p in HISTORIES
    }
    assert {
        "ClusterRegistryWorkflow",
        "GitRepoWorkflow",
        "BundleWorkflow",
        "HelmOpWorkflow",
        "HelmOpPollWorkflow",
    } <= types


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
