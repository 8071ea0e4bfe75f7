"""Garbage collection with real workflows holding the marks, for both content backends: what a
running GitRepo or bundle references stays, unreferenced content older than the grace period
goes, recent content stays, and a dry run deletes nothing."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.content import ContentStore, FileContentStore
from activities.contentgc import ContentActivities
from activities.contentgc_models import CollectGarbageRequest, ContentRefs, ContentRefsRequest
from devenv.gitserver import GitDaemon
from devenv.registry import LocalRegistry
from flotilla.ids import CONTENT_GC_WORKFLOW_ID, bundle_workflow_id, gitrepo_workflow_id
from starters.cli import main
from tests.content.conftest import MakeStore
from tests.e2e.harness import Flotilla, gitrepo_yaml, start_flotilla
from workflows.gitrepo import GitRepoWorkflow

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n"
# Longer than a gc run takes on a loaded machine (it asks every running workflow), so the
# object written just before it is still within the grace when the run looks at it.
GRACE_SECONDS = 6


@pytest.fixture(params=["file", "oci"])
async def flotilla(
    request: pytest.FixtureRequest,
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    registry: LocalRegistry,
    repository: str,
) -> AsyncIterator[Flotilla]:
    env = (
        {
            "FLOTILLA_CONTENT_BACKEND": "oci",
            "FLOTILLA_CONTENT_REGISTRY": f"{registry.host}/{repository}",
            "FLOTILLA_CONTENT_REGISTRY_INSECURE": "true",
        }
        if request.param == "oci"
        else {}
    )
    fl = await start_flotilla(temporal_client, task_queue, tmp_path, **env)
    try:
        yield fl
    finally:
        await fl.cleanup()
        await fl.worker.stop()


@pytest.mark.parametrize("kind", ["file", "oci"])
def test_delete_spares_content_written_again_since_the_listing(
    kind: str, make_store: MakeStore, tmp_path: Path
) -> None:
    store: ContentStore = (
        FileContentStore(tmp_path / "files")
        if kind == "file"
        else make_store(touch_after=timedelta(0))
    )
    digest = store.put(b"listed, then used again")
    (listed,) = store.entries()
    time.sleep(0.01 if kind == "file" else 1.1)  # the OCI written time has whole seconds
    store.put(b"listed, then used again")  # a new commit needs it: its written time moves
    assert not store.delete(listed) and store.has(digest)
    (again,) = store.entries()
    assert again.written > listed.written
    assert store.delete(again) and not store.has(digest)
    assert not store.delete(again)  # already gone
    assert list(store.entries()) == []


async def test_gc_keeps_what_workflows_use_and_what_is_recent(
    flotilla: Flotilla,
    git_daemon: GitDaemon,
    repo_name: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = flotilla.worker.content.content
    # Test switch: refresh on every put, so a grace of seconds is allowed.
    store.touch_after = timedelta(0)
    monkeypatch.setenv("TEMPORAL_ADDRESS", flotilla.client.service_client.config.target_host)

    async def cli(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(
            main, ["content", *argv, "--task-queue", flotilla.config.task_queue]
        )
        out, err = capsys.readouterr()
        return code, out, err

    old = store.put(b"unreferenced and old")
    url = git_daemon.create_repo(repo_name, {"a/cm.yaml": CM, "a/fleet.yaml": "{}\n"})
    ns = flotilla.namespace
    await flotilla.control.apply_text(gitrepo_yaml(ns, "repo", url), file="gitrepo.yaml")
    await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"),
        lambda s: len(s.bundles) == 1 and s.state == "Ready",
    )
    refs = await flotilla.client.get_workflow_handle(gitrepo_workflow_id(ns, "repo")).query(
        GitRepoWorkflow.content_refs, ContentRefsRequest()
    )
    (bundle,) = refs.digests
    bundle_refs = await flotilla.client.get_workflow_handle(bundle_workflow_id(ns, "repo-a")).query(
        "content_refs", ContentRefsRequest(), result_type=ContentRefs
    )
    assert bundle_refs.digests == [bundle]  # no cluster targeted: no options stored
    await asyncio.sleep(GRACE_SECONDS + 1.5)  # both old and the bundle are past the grace now
    recent = store.put(b"unreferenced but recent")

    for dry_run in (True, False):
        flags = ["--dry-run"] if dry_run else []
        assert store.put(b"unreferenced but recent") == recent  # written again: just now
        code, out, err = await cli("gc", *flags, "--grace", f"{GRACE_SECONDS}s")
        assert (code, err) == (0, "")
        head, *listed = out.splitlines()
        title, verb = (
            ("content gc (dry run)", "to delete") if dry_run else ("content gc", "deleted")
        )
        # Other tests' workflows may be running too: they are asked, and hold none of this.
        assert re.fullmatch(
            rf"{re.escape(title)}: 3 stored, 1 referenced by \d+ workflows, "
            rf"1 written in the last {GRACE_SECONDS}s, 1 {verb}",
            head,
        ), head
        assert listed == [f"  {old}"]
        assert store.has(old) is dry_run
    assert not store.has(old) and store.has(bundle) and store.has(recent)
    assert store.get(bundle)  # the bundle's content is intact

    # The grace must cover the store's refresh interval twice: refused in one line.
    store.touch_after = timedelta(hours=1)
    code, out, err = await cli("gc", "--grace", "1h")
    assert code == 1 and out == ""
    assert err == (
        "error: content gc failed: grace: 1h0m0s is shorter than twice the content store's "
        "refresh interval (1h0m0s): content in use could be deleted; use at least 2h0m0s\n"
    )
    assert store.has(bundle) and store.has(recent)


async def test_schedule_gc_creates_updates_runs_and_removes_the_schedule(
    flotilla: Flotilla, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", flotilla.client.service_client.config.target_host)
    queue = ["--task-queue", flotilla.config.task_queue]

    def cli(*argv: str) -> str:
        capsys.readouterr()
        assert main(["content", "schedule-gc", *argv, *queue]) == 0
        return capsys.readouterr().out.strip()

    handle = flotilla.client.get_schedule_handle(CONTENT_GC_WORKFLOW_ID)
    try:
        assert await asyncio.to_thread(cli, "--dry-run") == (
            "schedule content-gc: created: every 24h0m0s, grace 24h0m0s"
        )
        assert await asyncio.to_thread(cli, "--every", "6h", "--grace", "48h") == (
            "schedule content-gc: updated: every 6h0m0s, grace 48h0m0s"
        )
        description = await handle.describe()
        assert description.schedule.spec.intervals[0].every == timedelta(hours=6)
        await handle.trigger()
        run = await flotilla.eventually(
            handle.describe, lambda d: bool(d.info.recent_actions), timeout=30
        )
        action = run.info.recent_actions[0].action
        assert isinstance(action, ScheduleActionExecutionStartWorkflow)
        result = await flotilla.client.get_workflow_handle(
            action.workflow_id, run_id=action.first_execution_run_id
        ).result()
        assert result["dry_run"] is False and result["deleted"] == 0
    finally:
        assert await asyncio.to_thread(cli, "--off") == "schedule content-gc: deleted"
    assert await asyncio.to_thread(cli, "--off") == "schedule content-gc: there was none"


async def test_a_workflow_that_cannot_answer_stops_the_sweep_before_any_delete(
    temporal_client: Client, tmp_path: Path
) -> None:
    store = FileContentStore(tmp_path / "content")
    old = store.put(b"unreferenced and old")
    os.utime(store.root / old[:2] / old, (0, 0))
    # A GitRepo workflow nobody serves: Temporal refuses its queries (no first task yet).
    ghost = await temporal_client.start_workflow(
        "GitRepoWorkflow",
        {},
        id=f"gitrepo/ghost-{uuid.uuid4().hex[:8]}/repo",
        task_queue=f"nobody-{uuid.uuid4().hex[:8]}",
    )
    try:
        query = f"WorkflowId = '{ghost.id}' AND ExecutionStatus = 'Running'"
        for _ in range(50):
            if [wf async for wf in temporal_client.list_workflows(query)]:
                break
            await asyncio.sleep(0.2)
        gc = ContentActivities(temporal_client, store, query_timeout=timedelta(seconds=2))
        assert await gc.still_running(ghost.id)
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(
                gc.collect_garbage, CollectGarbageRequest(grace_seconds=0)
            )
        assert caught.value.message.startswith(f"content gc: cannot tell what {ghost.id} uses (")
        assert caught.value.message.endswith("); deleted nothing")
        assert store.has(old)
    finally:
        await ghost.terminate("test finished")
    # The list of running workflows may still name it for a moment (visibility lags): a
    # workflow that cannot answer because it closed holds nothing, and the sweep goes on.
    assert not await gc.still_running(ghost.id)
    assert not await gc.still_running(f"gitrepo/never-{uuid.uuid4().hex[:8]}/repo")
    result = await ActivityEnvironment().run(
        gc.collect_garbage, CollectGarbageRequest(grace_seconds=0)
    )
    assert result.digests == [old] and not store.has(old)
