"""GitRepoWorkflow against a real git daemon: polling, reading, bad bundles, sync, spec updates."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.schedules import POLICY_WORKFLOW, image_policy_id
from devenv.gitserver import GitDaemon, git
from flotilla.errors import FlotillaError
from flotilla.ids import bundle_workflow_id, gitrepo_workflow_id
from flotilla.models import GitRepo, load_fleet_objects
from tests.e2e.harness import Flotilla, gitrepo_yaml
from workflows import visibility

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n"


async def activity_counts(flotilla: Flotilla, workflow_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    handle = flotilla.client.get_workflow_handle(workflow_id)
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            counts[name] = counts.get(name, 0) + 1
    return counts


async def test_bad_fleet_yaml_marks_only_its_bundle_and_polling_clones_once_per_commit(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    url = git_daemon.create_repo(
        repo_name,
        {
            # Each directory has a fleet.yaml, so each is its own bundle (Fleet's rule).
            "a/cm.yaml": CM.format(name="a"),
            "a/fleet.yaml": "labels: {app: a}\n",
            "b/cm.yaml": CM.format(name="b"),
            "b/fleet.yaml": "helm: {releaseName: Not_Valid}\n",
            "c/cm.yaml": CM.format(name="c"),
            "c/fleet.yaml": "labels: {app: c}\n",
        },
    )
    ns = flotilla.namespace
    await flotilla.control.apply_text(gitrepo_yaml(ns, "repo", url), file="gitrepo.yaml")
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"),
        lambda s: len(s.bundles) == 3 and all(b.state != "Pending" for b in s.bundles),
    )
    by_name = {b.name: b for b in status.bundles}
    assert set(by_name) == {"repo-a", "repo-b", "repo-c"}
    assert by_name["repo-b"].state == "ErrApplied"
    assert "releaseName" in by_name["repo-b"].error and "\n" not in by_name["repo-b"].error
    assert by_name["repo-a"].state == by_name["repo-c"].state == "Ready"  # no cluster targeted
    assert status.state == "ErrApplied" and status.message.startswith("repo-b: ")
    # Bundles of a good fleet.yaml run their own workflows; the bad one has none.
    assert [b.bundle for b in await flotilla.control.list_bundles(ns)] == ["repo-a", "repo-c"]

    fixed = git_daemon.commit(
        git_daemon.working_copy(repo_name),
        {"b/fleet.yaml": "helm: {releaseName: valid-name}\n"},
        message="fix the release name",
    )
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"),
        lambda s: s.commit == fixed and s.state == "Ready" and len(s.bundles) == 3,
    )
    assert all(not b.error for b in status.bundles)
    await flotilla.eventually(lambda: flotilla.control.list_bundles(ns), lambda bs: len(bs) == 3)
    # Several polls happened (1s interval), but a clone only for each of the two commits.
    counts = await activity_counts(flotilla, gitrepo_workflow_id(ns, "repo"))
    assert counts["fetch_bundles"] == 2
    assert counts["ls_remote"] >= 2
    # No imageScans in any bundle: no schedule sync, not even one per commit.
    assert "sync_image_schedules" not in counts


async def test_sync_now_spec_updates_and_removed_bundles(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    url = git_daemon.create_repo(
        repo_name,
        {
            "a/cm.yaml": CM.format(name="a"),
            "a/fleet.yaml": "{}\n",
            "b/cm.yaml": CM.format(name="b"),
            "b/fleet.yaml": "{}\n",
        },
    )
    ns = flotilla.namespace
    slow = gitrepo_yaml(ns, "repo", url).replace("pollingInterval: 1s", "pollingInterval: 1h")
    await flotilla.control.apply_text(slow, file="gitrepo.yaml")
    await flotilla.eventually(lambda: flotilla.control.list_bundles(ns), lambda bs: len(bs) == 2)
    work = git_daemon.working_copy(repo_name)
    (work / "b" / "cm.yaml").unlink()
    (work / "b" / "fleet.yaml").unlink()
    commit = git_daemon.commit(work, {}, message="remove bundle b")
    # An hour until the next poll: sync_now reads the new commit at once.
    message = await flotilla.control.sync_gitrepo(ns, "repo")
    assert message.endswith(commit[:12])
    await flotilla.eventually(
        lambda: flotilla.control.list_bundles(ns), lambda bs: [b.bundle for b in bs] == ["repo-a"]
    )
    status = await flotilla.control.gitrepo_status(ns, "repo")
    assert [b.name for b in status.bundles] == ["repo-a"]

    # A spec that fails validation never reaches the workflow.
    with pytest.raises(FlotillaError, match="pollingInterval") as err:
        await flotilla.control.apply_text(
            slow.replace("pollingInterval: 1h", "pollingInterval: soon"), file="bad.yaml"
        )
    assert str(err.value).startswith("bad.yaml: ") and "\n" not in str(err.value)
    # A new branch that does not exist is reported in the status, in one line.
    await flotilla.control.apply_text(slow.replace("branch: main", "branch: nope"), file="g.yaml")
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"), lambda s: bool(s.error)
    )
    assert "branch 'nope' not found" in status.error and "\n" not in status.error

    assert "deleted" in await flotilla.control.delete_gitrepo(ns, "repo")
    assert await flotilla.control.list_bundles(ns) == []


async def test_git_is_polled_every_interval_however_often_the_gitrepo_is_woken(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    """A GitRepo woken more often than its pollingInterval (a rollout's bundle reports; here
    the same spec applied again every quarter second) still polls git on time. Before the
    ticker each wake started the wait over, and no poll came while the wakes went on."""
    url = git_daemon.create_repo(
        repo_name, {"a/cm.yaml": CM.format(name="a"), "a/fleet.yaml": "{}\n"}
    )
    ns = flotilla.namespace
    text = gitrepo_yaml(ns, "repo", url).replace("pollingInterval: 1s", "pollingInterval: 2s")
    await flotilla.control.apply_text(text, file="gitrepo.yaml")
    await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"), lambda s: bool(s.commit)
    )
    new = git_daemon.commit(
        git_daemon.working_copy(repo_name), {"a/cm.yaml": CM.format(name="b")}, message="b"
    )
    loop = asyncio.get_running_loop()
    deadline, seen = loop.time() + 15, ""
    while loop.time() < deadline and seen != new:
        await flotilla.control.apply_text(text, file="gitrepo.yaml")
        seen = (await flotilla.control.gitrepo_status(ns, "repo")).commit
        await asyncio.sleep(0.25)
    assert seen == new

    # A shorter interval takes effect at once, not after the hour it replaces.
    hourly = text.replace("pollingInterval: 2s", "pollingInterval: 1h")
    await flotilla.control.apply_text(hourly, file="gitrepo.yaml")
    await asyncio.sleep(3)  # past the 2s ticks: only the hour's wait is left
    newer = git_daemon.commit(
        git_daemon.working_copy(repo_name), {"a/cm.yaml": CM.format(name="c")}, message="c"
    )
    await asyncio.sleep(3)
    assert (await flotilla.control.gitrepo_status(ns, "repo")).commit == new
    await flotilla.control.apply_text(text, file="gitrepo.yaml")
    await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"),
        lambda s: s.commit == newer,
        timeout=10,
    )


class SlowRelay:
    """Fault injection in front of the real git daemon: a TCP relay that holds each
    connection ``delay`` seconds before passing its bytes on, as a slow git server would."""

    def __init__(self, port: int, delay: float) -> None:
        self.target, self.delay, self.port = port, delay, 0

    async def __aenter__(self) -> SlowRelay:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(self.delay)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()

        await asyncio.gather(
            pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            w.close()


async def test_a_run_due_to_continue_as_new_does_not_wait_for_a_quiet_ticker(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    """Each poll of a slow git server (2 s, through a relay) outlasts the 1 s
    pollingInterval, so the ticker has always asked for the next poll by the time a pass
    ends. A run due to continue as new (the test switch: 40 events) must still do so:
    before, it polled first whenever a poll was asked, and so never continued (the 50 x
    500 benchmark's GitRepo, its tasks 6 s apart, grew for minutes past its size)."""
    git_daemon.create_repo(repo_name, {"a/cm.yaml": CM.format(name="a"), "a/fleet.yaml": "{}\n"})
    ns = flotilla.namespace
    async with SlowRelay(git_daemon.port, delay=2.0) as relay:
        url = f"git://127.0.0.1:{relay.port}/{repo_name}.git"
        (gitrepo,), _ = load_fleet_objects(gitrepo_yaml(ns, "slow", url), file="gitrepo.yaml")
        assert isinstance(gitrepo, GitRepo)
        assert gitrepo.spec.polling_interval in ("1s", 1, 1.0)
        await flotilla.control.apply_gitrepo(gitrepo, max_history_events=40)
        workflow_id = gitrepo_workflow_id(ns, "slow")

        async def runs() -> int:
            query = f"WorkflowId = '{workflow_id}'"
            return len([w async for w in flotilla.client.list_workflows(query)])

        await flotilla.eventually(runs, lambda n: n >= 3, timeout=60)
        status = await flotilla.control.gitrepo_status(ns, "slow")
        assert status.commit and not status.error, status


async def test_gitrepo_and_bundles_continue_as_new_with_their_state(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    url = git_daemon.create_repo(
        repo_name, {"a/cm.yaml": CM.format(name="a"), "a/fleet.yaml": "{}\n"}
    )
    ns = flotilla.namespace
    (gitrepo,), _ = load_fleet_objects(gitrepo_yaml(ns, "can", url), file="gitrepo.yaml")
    assert isinstance(gitrepo, GitRepo)
    # Tiny history limits: both workflows must continue-as-new several times.
    await flotilla.control.apply_gitrepo(
        gitrepo, max_history_events=40, bundle_max_history_events=15
    )
    workflow_id = gitrepo_workflow_id(ns, "can")

    async def runs(wid: str) -> int:
        return len([w async for w in flotilla.client.list_workflows(f"WorkflowId = '{wid}'")])

    await flotilla.eventually(lambda: runs(workflow_id), lambda n: n >= 3, timeout=60)
    # sync_now waits for a poll; it must never hold up (or be held up by) continue-as-new.
    for _ in range(5):
        assert "synced at commit" in await flotilla.control.sync_gitrepo(ns, "can")
    commit = git_daemon.commit(
        git_daemon.working_copy(repo_name), {"a/cm.yaml": CM.format(name="a2")}, message="two"
    )
    await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "can"),
        lambda s: s.commit == commit and s.state == "Ready" and len(s.bundles) == 1,
    )
    bundle = await flotilla.control.bundle_status(ns, "can-a")
    assert bundle.commit == commit
    assert await runs(bundle_workflow_id(ns, "can-a")) >= 2


async def test_depends_on_cycles_and_typos_are_errors_on_those_bundles_only(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    url = git_daemon.create_repo(
        repo_name,
        {
            "x/cm.yaml": CM.format(name="x"),
            "x/fleet.yaml": "dependsOn: [{name: deps-y}]\n",
            "y/cm.yaml": CM.format(name="y"),
            "y/fleet.yaml": "dependsOn: [{name: deps-x}]\n",
            "z/cm.yaml": CM.format(name="z"),
            "z/fleet.yaml": "dependsOn: [{name: deps-w}]\n",
            "w/cm.yaml": CM.format(name="w"),
            "w/fleet.yaml": "labels: {tier: base}\n",
        },
    )
    ns = flotilla.namespace
    await flotilla.control.apply_text(gitrepo_yaml(ns, "deps", url), file="gitrepo.yaml")
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "deps"),
        lambda s: len(s.bundles) == 4 and all(b.state != "Pending" for b in s.bundles),
    )
    errors = {b.name: b.error for b in status.bundles}
    assert (
        errors["deps-x"]
        == errors["deps-y"]
        == ("dependsOn: bundles wait for each other: deps-x, deps-y")
    )
    assert errors["deps-w"] == errors["deps-z"] == ""
    # A bundle that was running keeps its last good version when its fleet.yaml breaks.
    await flotilla.eventually(
        lambda: flotilla.control.list_bundles(ns),
        lambda bs: {b.bundle for b in bs} == {"deps-w", "deps-z"},
    )
    before = await flotilla.control.bundle_status(ns, "deps-w")
    broken = git_daemon.commit(
        git_daemon.working_copy(repo_name),
        {"w/fleet.yaml": "dependsOn: [{name: deps-nope}]\n"},
        message="typo",
    )
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "deps"),
        lambda s: s.commit == broken and any(b.name == "deps-w" and b.error for b in s.bundles),
    )
    (w,) = [b for b in status.bundles if b.name == "deps-w"]
    assert w.state == "ErrApplied" and "deps-nope" in w.error and "\n" not in w.error
    assert {b.bundle for b in await flotilla.control.list_bundles(ns)} == {"deps-w", "deps-z"}
    # Its own status says why the newest commit is not deployed (the GitRepo told it), where
    # Fleet's Bundle would stay Ready at the older commit and only the GitRepo would say so.
    after = await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "deps-w"), lambda b: bool(b.source_error)
    )
    assert after.source_error == f"commit {broken[:12]} not deployed: {w.error}"
    assert (after.state, after.message) == ("ErrApplied", after.source_error)
    ready = next(c for c in after.conditions if c.type == "Ready")
    assert (ready.status, ready.message) == (False, after.source_error)
    # `get bundles` and the Temporal UI list it so (the search attributes it publishes).
    published = await flotilla.eventually(
        lambda: flotilla.control.bundle(ns, "deps-w").describe(),
        lambda d: d.typed_search_attributes.get(visibility.STATE) == "ErrApplied",
    )
    assert "deps-nope" in (published.typed_search_attributes.get(visibility.MESSAGE) or "")
    # Nothing was deployed again: same rollout, same releases at the same revisions.
    assert after.summary == before.summary
    assert [c.release for c in after.clusters] == [c.release for c in before.clusters]
    # ... and says the commit it runs, not the broken one (Fleet's bundle keeps its commit).
    assert after.commit == before.commit != broken
    fixed = git_daemon.commit(
        git_daemon.working_copy(repo_name),
        {"w/fleet.yaml": "labels: {tier: base}\ndefaultNamespace: fixed\n"},
        message="fix the typo",
    )
    healed = await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "deps-w"),
        lambda b: b.commit == fixed and b.state == "Ready",
    )
    assert healed.source_error == "" and healed.message == ""
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "deps"),
        lambda s: (
            s.commit == fixed
            and all(b.name in ("deps-x", "deps-y") or not b.error for b in s.bundles)
        ),
    )


async def test_revision_pins_a_tag_while_the_branch_moves_on(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    url = git_daemon.create_repo(repo_name, {"cm.yaml": CM.format(name="v1")})
    work = git_daemon.working_copy(repo_name)
    tagged = git("rev-parse", "HEAD", cwd=work).strip()
    git("tag", "-a", "v1", "-m", "release 1", cwd=work)
    git("push", "origin", "v1", cwd=work)
    head = git_daemon.commit(work, {"cm.yaml": CM.format(name="v2")}, message="two")
    ns = flotilla.namespace
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "pin", url, revision="v1"), file="gitrepo.yaml"
    )
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "pin"), lambda s: bool(s.commit)
    )
    assert status.commit == tagged != head
    assert status.branch == "v1"


async def test_a_bundle_name_taken_by_another_gitrepo_is_an_error_there(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    files: dict[str, str | bytes] = {"cm.yaml": CM.format(name="x"), "fleet.yaml": "name: shared\n"}
    first = git_daemon.create_repo(repo_name, files)
    second = git_daemon.create_repo(f"{repo_name}-2", files)
    ns = flotilla.namespace
    await flotilla.control.apply_text(gitrepo_yaml(ns, "one", first), file="one.yaml")
    await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "shared"), lambda b: b.gitrepo == "one"
    )
    await flotilla.control.apply_text(gitrepo_yaml(ns, "two", second), file="two.yaml")
    two = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "two"), lambda s: s.state == "ErrApplied"
    )
    assert two.message == "shared: bundle name 'shared' is already used by gitrepo 'one'"
    one = await flotilla.control.gitrepo_status(ns, "one")
    assert one.state == "Ready"
    assert (await flotilla.control.bundle_status(ns, "shared")).gitrepo == "one"


async def test_cluster_groups_target_and_unreachable_clusters_are_errapplied(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    url = git_daemon.create_repo(repo_name, {"cm.yaml": CM.format(name="x")})
    ns = flotilla.namespace
    # Nothing listens on port 1: deploys fail, which is all this test needs from them.
    unreachable = (
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
    )
    for name, env in (("p1", "prod"), ("p2", "prod"), ("d1", "dev")):
        await flotilla.control.add_cluster(ns, name, unreachable, labels={"env": env})
    await flotilla.control.apply_text(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: ClusterGroup\n"
        f"metadata: {{name: prod, namespace: {ns}}}\n"
        "spec: {selector: {matchLabels: {env: prod}}}\n",
        file="group.yaml",
    )
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "grp", url, targets=[{"clusterGroup": "prod"}]), file="gitrepo.yaml"
    )
    bundle = await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "grp"),
        lambda b: b.desired == 2 and all(c.state == "ErrApplied" for c in b.clusters),
        timeout=90,
    )
    assert [c.cluster for c in bundle.clusters] == ["p1", "p2"]
    assert all("\n" not in c.message and c.message for c in bundle.clusters)
    # Push mode: the shared queue's worker names the cluster; it is never "offline".
    for c in bundle.clusters:
        assert c.message.startswith(f"cluster {ns}/{c.cluster} unreachable: "), c.message


async def test_a_failed_schedule_sync_is_a_warning_and_the_next_poll_retries(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str, task_queue: str
) -> None:
    image = "127.0.0.1:5000/app"
    scan = {"image": image, "tagName": "app", "policy": "minor", "pollSchedule": "@every 1h"}
    url = git_daemon.create_repo(
        repo_name,
        {
            "fleet.yaml": f"imageScans:\n  - {json.dumps(scan)}\n",
            "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
            f'data:\n  image: {image}:1.0.0 # {{"$imagescan": "app"}}\n',
        },
    )
    ns = flotilla.namespace
    policy_id = image_policy_id(ns, "repo", "repo", "app")
    client = flotilla.client
    # A schedule made by hand under the GitRepo's id, holding something that is no policy:
    # the sync cannot read it and fails after its retries.
    stray = await client.create_schedule(
        policy_id,
        Schedule(
            action=ScheduleActionStartWorkflow(
                POLICY_WORKFLOW, "made by hand", id=policy_id, task_queue=task_queue
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
            state=ScheduleState(paused=True),
        ),
    )
    try:
        await flotilla.control.apply_text(gitrepo_yaml(ns, "repo", url), file="gitrepo.yaml")
        status = await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "repo"),
            lambda s: any(w.startswith("image schedules not synced: ") for w in s.warnings),
        )
        [warning] = status.warnings
        assert "\n" not in warning and not status.error, status
        # The GitRepo carries on: its bundle is synced and Ready, the workflow still runs.
        assert status.state == "Ready" and [b.name for b in status.bundles] == ["repo"]
        assert [b.bundle for b in await flotilla.control.list_bundles(ns)] == ["repo"]
        # Without the stray schedule the next poll's sync succeeds and the warning goes.
        await stray.delete()
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "repo"), lambda s: not s.warnings
        )
        description = await client.get_schedule_handle(policy_id).describe()
        assert isinstance(description.schedule.action, ScheduleActionStartWorkflow)
        assert description.schedule.action.workflow == POLICY_WORKFLOW
        counts = await activity_counts(flotilla, gitrepo_workflow_id(ns, "repo"))
        assert counts["sync_image_schedules"] >= 2
        # One commit, yet every poll after the failure retried: not one call per wake.
        assert counts["sync_image_schedules"] <= counts["ls_remote"] + 1
    finally:
        await flotilla.control.delete_gitrepo(ns, "repo")
    with pytest.raises(RPCError) as gone:
        await client.get_schedule_handle(policy_id).describe()
    assert gone.value.status == RPCStatusCode.NOT_FOUND
