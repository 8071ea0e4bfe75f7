"""Rollback on a real cluster (issue 14): a bad version halted on the canary is rolled back
by ``autoRollback`` (a rejected manifest, then a Deployment that is never Ready), and
`flotilla rollback gitrepo --previous / --to / --clear` moves 4 clusters through the same
partitions with ``maxUnavailable: 1``, read back from the bundle workflow's history.

Four "clusters" are registry entries pointing at the one local cluster, each deploying into
its own namespace, as in ``test_gates.py``; the CLI runs in-process against the test's
Temporal.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.ids import bundle_workflow_id
from starters.cli import main
from tests.e2e.harness import (
    ActivityCall,
    Flotilla,
    activity_calls,
    gitrepo_yaml,
    helm_history,
    per_cluster_namespaces,
)
from tests.e2e.test_gates import DEPLOYMENT
from tests.e2e.test_rollout import CM, register
from workflows.gitrepo_models import GitRepoStatus

CLUSTERS = {"c1": "canary", "c2": "main", "c3": "main", "c4": "main"}

Cli = Callable[..., Awaitable[tuple[int, str]]]


@pytest.fixture
def cli(
    flotilla: Flotilla, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    monkeypatch.setenv("TEMPORAL_ADDRESS", flotilla.client.service_client.config.target_host)
    monkeypatch.setenv("FLOTILLA_SECRETS_DIR", str(flotilla.settings.secrets_dir))
    monkeypatch.setenv("USER", "ann")
    common = ["-n", flotilla.namespace, "--task-queue", flotilla.config.task_queue]

    async def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, [*argv, *common])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


def _fleet(prefix: str, canary: str = "", main_: str = "") -> str:
    return per_cluster_namespaces(prefix, list(CLUSTERS)) + (
        "rolloutStrategy:\n  maxUnavailable: 1\n  partitions:\n"
        "    - name: canary\n      clusterSelector: {matchLabels: {ring: canary}}\n"
        + canary
        + "    - name: main\n      clusterSelector: {matchLabels: {ring: main}}\n"
        + main_
    )


def _versions(local_cluster: LocalCluster, prefix: str) -> dict[str, str]:
    return {
        c: local_cluster.request("GET", f"/api/v1/namespaces/{prefix}-{c}/configmaps/cfg")["data"][
            "version"
        ]
        for c in CLUSTERS
    }


async def test_auto_rollback_restores_the_last_good_version_on_the_canary(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    prefix: str,
    cli: Cli,
) -> None:
    ns = flotilla.namespace
    fleet = _fleet(
        prefix, "      failureBudget: 0\n      failureDeadline: 30s\n      autoRollback: true\n"
    )
    await register(flotilla, local_cluster, {c: {"ring": r} for c, r in CLUSTERS.items()})
    url = git_daemon.create_repo(
        repo_name, {"app/fleet.yaml": fleet, "app/cm.yaml": CM.format(name="cfg", version=1)}
    )
    await flotilla.serve_gitrepo(url, {}, name="auto", ready="4/4", timeout=60)
    good = (await flotilla.control.gitrepo_status(ns, "auto")).commit
    work = git_daemon.working_copy(repo_name)
    release = ("auto-app", f"{prefix}-c1")
    bad_versions: dict[str, dict[str, str | bytes]] = {
        # The API server refuses the object: the canary's deploy is ErrApplied.
        "rejected": {"app/cm.yaml": CM.format(name="Bad_Name", version=2)},
        # Applied, but never Ready (its pod can never be scheduled).
        "never ready": {"app/cm.yaml": CM.format(name="cfg", version=3), "app/d.yaml": DEPLOYMENT},
    }
    for what, files in bad_versions.items():
        revision_before = max(
            int(str(h["revision"])) for h in helm_history(local_cluster.kubeconfig, *release)
        )
        bad = git_daemon.commit(work, files, message=what)

        # Halted on the canary, then pinned back to the last good version by autoRollback; the
        # new commit lifted the previous automatic pin by itself.
        def rolled_back(s: GitRepoStatus, bad: str = bad) -> bool:
            return (
                s.head == bad and any("by autoRollback" in p for p in s.pins) and s.state == "Ready"
            )

        # ~35 s normally (the 30 s failureDeadline); well inside pytest's 300 s per test, so
        # that a rollback that never comes fails with the GitRepo's status in the message.
        status = await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "auto"), rolled_back, timeout=110
        )
        assert status.commit == bad  # the GitRepo follows the branch; its bundle is pinned
        assert status.pins == [
            f"bundle auto-app: pinned to {good[:12]} by autoRollback: rollout halted: partition "
            f"canary: 1 of 1 cluster(s) not Ready 30s after release, failure budget 0 (c1"
            + status.pins[0].split("(c1", 1)[1]
        ], (what, status.pins)
        assert status.pins[0].endswith("; lifted by the next commit or --clear")
        bundle = await flotilla.control.bundle_status(ns, "auto-app")
        assert bundle.commit == good and bundle.state == "Ready", (what, bundle)
        assert _versions(local_cluster, prefix) == dict.fromkeys(CLUSTERS, "1"), what
        # Rolling back is one more Helm revision with the old content, never `helm rollback`
        # and never a deleted release: revisions only go up (maxHistory trims the old ones),
        # the newest one deployed.
        history = helm_history(local_cluster.kubeconfig, *release)
        newest = history[-1]
        assert int(str(newest["revision"])) > revision_before, history
        assert newest["status"] == "deployed", history
        assert not any("Rollback" in str(h.get("description", "")) for h in history), history
        # main never got a bad version: every content but the good one went to c1 alone.
        calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "auto-app"))
        current = {c.deployment_id for c in bundle.clusters}
        where: dict[str, set[str]] = {}
        for c in calls:
            if c.name == "deploy_bundle" and c.input["deployment_id"] not in current:
                where.setdefault(c.input["bundle_digest"], set()).add(c.input["cluster_name"])
        assert where and all(clusters == {"c1"} for clusters in where.values()), (what, where)
    code, out = await cli("get", "gitrepos")
    assert code == 0 and "pinned to" in out, out
    code, out = await cli("rollout", "status", "gitrepo", "auto", "--timeout", "60s")
    assert code == 0, out  # pinned and Ready: nothing left to wait for


def _rollout_order(calls: list[ActivityCall], digest: str) -> list[ActivityCall]:
    return [c for c in calls if c.name == "deploy_bundle" and c.input["bundle_digest"] == digest]


def _one_at_a_time(calls: list[ActivityCall], deploys: list[ActivityCall]) -> None:
    """maxUnavailable 1: each deploy starts only once the one before is Ready again."""
    ids = {d.input["deployment_id"] for d in deploys}
    ready_at = {
        c.input["cluster_name"]: c.completed
        for c in calls
        if c.found_ready and c.input["deployment_id"] in ids
    }
    for before, after in itertools.pairwise(deploys):
        finished = ready_at[before.input["cluster_name"]]
        assert finished is not None and finished <= after.scheduled, (before.input, after.input)


async def test_rollback_previous_and_to_move_four_clusters_one_at_a_time_until_cleared(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    prefix: str,
    cli: Cli,
) -> None:
    ns = flotilla.namespace
    fleet = _fleet(prefix)
    await register(flotilla, local_cluster, {c: {"ring": r} for c, r in CLUSTERS.items()})
    url = git_daemon.create_repo(
        repo_name, {"app/fleet.yaml": fleet, "app/cm.yaml": CM.format(name="cfg", version=1)}
    )
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "back", url, targets=[{"clusterSelector": {}}]), file="gitrepo.yaml"
    )

    async def ready_at(commit: str) -> None:
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "back"),
            lambda s: (
                s.commit == commit and s.state == "Ready" and s.ready_bundle_deployments == "4/4"
            ),
            timeout=240,
        )

    v1 = (
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "back"), lambda s: bool(s.commit)
        )
    ).commit
    await ready_at(v1)
    work = git_daemon.working_copy(repo_name)
    v2 = git_daemon.commit(work, {"app/cm.yaml": CM.format(name="cfg", version=2)}, message="v2")
    await ready_at(v2)
    v3 = git_daemon.commit(work, {"app/cm.yaml": CM.format(name="cfg", version=3)}, message="v3")
    await ready_at(v3)

    code, out = await cli("rollback", "gitrepo", "back", "--previous", "--reason", "v3 slow")
    assert code == 0 and f"pinned to {v2[:12]} by ann: v3 slow; lifted by --clear" in out, out
    await ready_at(v2)
    assert _versions(local_cluster, prefix) == dict.fromkeys(CLUSTERS, "2")
    calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "back-app"))
    digest_of = {
        c.input["deployment_id"]: c.input["bundle_digest"]
        for c in calls
        if c.name == "deploy_bundle"
    }
    status = await flotilla.control.bundle_status(ns, "back-app")
    back = _rollout_order(calls, digest_of[status.clusters[0].deployment_id])
    v2_again = [c for c in back if c.scheduled > back[3].scheduled] if len(back) > 4 else back
    order = [c.input["cluster_name"] for c in v2_again]
    assert order[0] == "c1" and sorted(order[1:]) == ["c2", "c3", "c4"], order
    _one_at_a_time(calls, v2_again)

    # The pin survives the next polls (1 s apart).
    await asyncio.sleep(4)
    assert (await flotilla.control.gitrepo_status(ns, "back")).commit == v2
    code, out = await cli("describe", "gitrepo", "back")
    assert code == 0 and f"Branch head: {v3}" in out and "Pinned:      pinned to" in out, out

    code, out = await cli("rollback", "gitrepo", "back", "--to", v1[:8])
    assert code == 0 and f"pinned to {v1[:12]} by ann; lifted by --clear" in out, out
    await ready_at(v1)
    assert _versions(local_cluster, prefix) == dict.fromkeys(CLUSTERS, "1")
    calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "back-app"))
    status = await flotilla.control.bundle_status(ns, "back-app")
    to_v1 = [
        c
        for c in calls
        if c.name == "deploy_bundle"
        and c.input["deployment_id"] in {x.deployment_id for x in status.clusters}
    ][-4:]
    assert to_v1[0].input["cluster_name"] == "c1", [c.input["cluster_name"] for c in to_v1]
    _one_at_a_time(calls, to_v1)

    code, out = await cli("rollback", "gitrepo", "back", "--to", "0000000")
    assert code == 1 and "commit '0000000' not found in main" in out and out.count("\n") == 1, out

    code, out = await cli("rollback", "gitrepo", "back", "--clear")
    assert code == 0 and "lifted; the branch head rolls out again" in out, out
    await ready_at(v3)
    assert _versions(local_cluster, prefix) == dict.fromkeys(CLUSTERS, "3")
