"""sync_bundles starts bundle workflows several at once, bounded, and fails with the first
error: the activity with a fake client in an ActivityEnvironment."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.gitops import SYNC_STARTS_AT_ONCE, GitOpsActivities
from activities.gitops_models import BundleStart, SyncBundlesRequest


class SlowClient:
    """Answers each start after a short wait, counting how many run at once."""

    def __init__(self, fail: str = "") -> None:
        self.running = 0
        self.most = 0
        self.started: list[str] = []
        self.signals: dict[str, Any] = {}
        self.fail = fail

    async def start_workflow(
        self, workflow: str, arg: Any, *, id: str, start_signal_args: list[Any], **_: Any
    ) -> None:
        self.signals[id] = start_signal_args[0]
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.05)
            if id == self.fail:
                raise RuntimeError(f"start of {id} refused")
            self.started.append(id)
        finally:
            self.running -= 1


def request(count: int) -> SyncBundlesRequest:
    return SyncBundlesRequest(
        workflow="BundleWorkflow",
        task_queue="q",
        starts=[
            BundleStart(
                workflow_id=f"bundle/ns/b{i}", signal="refresh", signal_arg={}, start_input={}
            )
            for i in range(count)
        ],
    )


def activities(client: SlowClient, tmp_path: Path) -> GitOpsActivities:
    return GitOpsActivities(client, None, None, tmp_path)  # type: ignore[arg-type]


async def test_starts_run_several_at_once_and_all_are_made(tmp_path: Path) -> None:
    client = SlowClient()
    result = await ActivityEnvironment().run(activities(client, tmp_path).sync_bundles, request(50))
    assert result.signalled == 50
    assert sorted(client.started) == sorted(f"bundle/ns/b{i}" for i in range(50))
    assert client.most == SYNC_STARTS_AT_ONCE


async def test_a_refused_start_fails_the_call_with_its_own_message(tmp_path: Path) -> None:
    client = SlowClient(fail="bundle/ns/b7")
    with pytest.raises(RuntimeError, match="start of bundle/ns/b7 refused"):
        await ActivityEnvironment().run(activities(client, tmp_path).sync_bundles, request(20))
    # The others were still made: a retry re-signals them, as a sequential retry did.
    assert len(client.started) == 19


async def test_shared_fields_reach_every_signal_and_own_fields_stay_apart(tmp_path: Path) -> None:
    client = SlowClient()
    snapshot = {"version": 3, "clusters": [{"name": "c1"}]}
    sync = request(3).model_copy(update={"shared": {"clusters": snapshot}})
    for i, start in enumerate(sync.starts):
        start.signal_arg = {"spec": {"commit": f"c{i}"}}
    result = await ActivityEnvironment().run(activities(client, tmp_path).sync_bundles_shared, sync)
    assert result.signalled == 3
    assert client.signals == {
        f"bundle/ns/b{i}": {"spec": {"commit": f"c{i}"}, "clusters": snapshot} for i in range(3)
    }
    # Each signal is a dict of its own: one bundle's argument is not another's.
    assert client.signals["bundle/ns/b0"] is not client.signals["bundle/ns/b1"]
