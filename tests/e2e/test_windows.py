"""Deployment windows (Fleet's Schedule) on a real cluster: a closed window stages and waits,
a window that opens during the rollout deploys, one that opens while the worker is down is
honoured when it is back, and one that opened and closed meanwhile deploys nothing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.ids import bundle_workflow_id
from starters.tables import schedule_table
from tests.e2e.harness import (
    Flotilla,
    activity_calls,
    gitrepo_yaml,
    helm_history,
    per_cluster_namespaces,
    releases,
)
from worker import FlotillaWorker

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\ndata: {{version: '{version}'}}\n"
CLUSTERS = ["win", "win2", "win3", "free"]
WINDOWED = CLUSTERS[:-1]


@pytest.fixture
def prefix(local_cluster: LocalCluster) -> Iterator[str]:
    value = f"t{uuid.uuid4().hex[:6]}"
    yield value
    for cluster in (*CLUSTERS, "default"):
        with contextlib.suppress(Exception):
            local_cluster.request("DELETE", f"/api/v1/namespaces/{value}-{cluster}")


def schedule_yaml(namespace: str, opens: datetime, duration: str) -> str:
    """A daily Schedule whose window opens at ``opens`` (UTC, to the second), for the
    clusters labelled ``window: "yes"``."""
    cron = f"{opens.second} {opens.minute} {opens.hour} * * ?"
    return (
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: Schedule\n"
        f"metadata: {{name: nightly, namespace: {namespace}}}\n"
        f"spec:\n  schedule: '{cron}'\n  duration: {duration}\n"
        "  targets:\n    clusters:\n"
        "      - {name: windowed, clusterSelector: {matchLabels: {window: 'yes'}}}\n"
    )


def _at_second(seconds: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)


async def _setup(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo: str, prefix: str
) -> None:
    kubeconfig = local_cluster.kubeconfig.read_text()
    for cluster in CLUSTERS:
        labels = {"window": "yes"} if cluster in WINDOWED else {}
        await flotilla.control.add_cluster(flotilla.namespace, cluster, kubeconfig, labels=labels)
    await flotilla.worker.refresh_clusters()
    url = git_daemon.create_repo(
        repo,
        {
            "app/fleet.yaml": per_cluster_namespaces(prefix, CLUSTERS),
            "app/cm.yaml": CM.format(version=1),
        },
    )
    await flotilla.control.apply_text(
        gitrepo_yaml(flotilla.namespace, "w", url, targets=[{"clusterSelector": {}}]),
        file="gitrepo.yaml",
    )


async def _cluster(flotilla: Flotilla, name: str) -> tuple[str, str, str]:
    status = await flotilla.control.bundle_status(flotilla.namespace, "w-app")
    found = next((c for c in status.clusters if c.cluster == name), None)
    if found is None:
        return "", "not planned yet", ""
    return found.state, found.message, found.release


async def _deploys_to(flotilla: Flotilla, cluster: str) -> list[datetime]:
    calls, _ = await activity_calls(
        flotilla.client, bundle_workflow_id(flotilla.namespace, "w-app")
    )
    return [
        c.scheduled.replace(tzinfo=UTC)
        for c in calls
        if c.name == "deploy_bundle" and c.input["cluster_name"] == cluster
    ]


async def _staged_until(flotilla: Flotilla, opens: datetime) -> str:
    """Wait until the windowed cluster shows it waits for the window opening at ``opens``."""
    state = await flotilla.eventually(
        lambda: _cluster(flotilla, "win"),
        lambda s: f"next window opens {opens:%Y-%m-%d %H:%M:%S} UTC" in s[1],
        timeout=180,
    )
    assert state[0] == "OutOfSync", state
    return state[1]


async def test_a_closed_window_stages_and_the_opening_deploys(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    prefix: str,
) -> None:
    ns = flotilla.namespace
    later = _at_second(3600)
    lines = await flotilla.control.apply_text(schedule_yaml(ns, later, "10m"), file="s.yaml")
    assert lines == [f"schedule {ns}/nightly applied"]
    table = schedule_table((await flotilla.control.registry(ns)).schedules)
    assert f"{later:%Y-%m-%dT%H:%M:%SZ}" in table and "false" in table
    await _setup(flotilla, local_cluster, git_daemon, repo_name, prefix)

    # The untargeted cluster rolls out; the windowed ones stage and say when they may deploy.
    message = await _staged_until(flotilla, later)
    assert message.startswith(
        f"outside its deployment window: next window opens {later:%Y-%m-%d %H:%M:%S} UTC "
        "(schedule nightly); version s-"
    ), message
    await flotilla.eventually(lambda: _cluster(flotilla, "free"), lambda s: s[0] == "Ready")
    for cluster in WINDOWED:
        assert releases(local_cluster.kubeconfig, f"{prefix}-{cluster}") == []
        assert await _deploys_to(flotilla, cluster) == []

    # The window opens during the rollout: the staged version goes out, not before.
    opens = _at_second(25)
    await flotilla.control.apply_text(schedule_yaml(ns, opens, "10m"), file="s.yaml")
    for cluster in WINDOWED:
        await flotilla.eventually(
            lambda c=cluster: _cluster(flotilla, c), lambda s: s[0] == "Ready", timeout=180
        )
        deploys = await _deploys_to(flotilla, cluster)
        assert len(deploys) == 1 and deploys[0] >= opens, (cluster, deploys, opens)
        history = helm_history(local_cluster.kubeconfig, "w-app", f"{prefix}-{cluster}")
        assert [h["revision"] for h in history] == [1]
    # What this bundle's history cost (printed for bench/RESULTS.md; four deployments of one
    # commit, two plans because the Schedule changed: not the steady-state figure of issue 14).
    _, events = await activity_calls(
        flotilla.client, bundle_workflow_id(flotilla.namespace, "w-app")
    )
    print(f"bundle history: {sum(events.values())} events for {len(CLUSTERS)} deployments")

    # delete schedule: the registry forgets it.
    change = await flotilla.control.remove_schedule(ns, "nightly")
    assert change.message == "schedule nightly removed"
    assert (await flotilla.control.registry(ns)).schedules == []


async def _restart(flotilla: Flotilla) -> None:
    worker = FlotillaWorker(flotilla.client, flotilla.config, flotilla.settings)
    await worker.start()
    flotilla.worker = worker


async def _sleep_until(when: datetime) -> None:
    await asyncio.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))


async def test_windows_while_the_worker_is_down(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    prefix: str,
) -> None:
    ns = flotilla.namespace
    later = _at_second(3600)
    await flotilla.control.apply_text(schedule_yaml(ns, later, "10m"), file="s.yaml")
    await _setup(flotilla, local_cluster, git_daemon, repo_name, prefix)
    await _staged_until(flotilla, later)
    await flotilla.eventually(lambda: _cluster(flotilla, "free"), lambda s: s[0] == "Ready")

    # A 15 s window that opens and closes while the worker is down: nothing may deploy.
    opens = _at_second(40)
    await flotilla.control.apply_text(schedule_yaml(ns, opens, "15s"), file="s.yaml")
    await _staged_until(flotilla, opens)
    await flotilla.worker.stop()
    assert datetime.now(UTC) < opens, "the machine was too slow to stop before the window"
    await _sleep_until(opens + timedelta(seconds=20))
    await _restart(flotilla)
    await _staged_until(flotilla, opens + timedelta(days=1))
    assert await _deploys_to(flotilla, "win") == []
    assert releases(local_cluster.kubeconfig, f"{prefix}-win") == []

    # A window that opens while the worker is down is honoured when it is back.
    opens = _at_second(40)
    await flotilla.control.apply_text(schedule_yaml(ns, opens, "10m"), file="s.yaml")
    await _staged_until(flotilla, opens)
    await flotilla.worker.stop()
    await _sleep_until(opens + timedelta(seconds=10))
    back = datetime.now(UTC)
    await _restart(flotilla)
    await flotilla.eventually(
        lambda: _cluster(flotilla, "win"), lambda s: s[0] == "Ready", timeout=180
    )
    deploys = await _deploys_to(flotilla, "win")
    assert len(deploys) == 1 and deploys[0] >= back, (deploys, back)
    history = helm_history(local_cluster.kubeconfig, "w-app", f"{prefix}-win")
    assert [h["revision"] for h in history] == [1]
