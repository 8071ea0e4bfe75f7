"""Rollout on a real cluster: partitions and maxUnavailable read back from workflow history,
dependsOn chains landing in order, and pause/resume.

Six "clusters" are six registry entries pointing at the one local cluster, each deploying
into its own namespace (targetCustomizations), because six control planes do not fit on two
cores; every deploy still goes through its own per-cluster task queue and Helm release.
"""

from __future__ import annotations

import itertools

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.ids import bundle_workflow_id
from tests.e2e.harness import (
    Flotilla,
    activity_calls,
    gitrepo_yaml,
    helm_history,
    per_cluster_namespaces,
)

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{version: '{version}'}}\n"


async def register(
    flotilla: Flotilla, local_cluster: LocalCluster, labels: dict[str, dict[str, str]]
) -> None:
    kubeconfig = local_cluster.kubeconfig.read_text()
    for name, cluster_labels in labels.items():
        await flotilla.control.add_cluster(
            flotilla.namespace, name, kubeconfig, labels=cluster_labels
        )
    await flotilla.worker.refresh_clusters()


async def test_partitions_roll_out_in_order_with_at_most_one_unavailable(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    prefix: str,
) -> None:
    clusters = [f"c{i}" for i in range(1, 7)]
    part = {c: f"p{(i // 2) + 1}" for i, c in enumerate(clusters)}
    await register(flotilla, local_cluster, {c: {"part": part[c]} for c in clusters})
    fleet = per_cluster_namespaces(prefix, clusters) + (
        "rolloutStrategy:\n  maxUnavailable: 1\n  partitions:\n"
        + "".join(
            f"    - name: {p}\n      clusterSelector: {{matchLabels: {{part: {p}}}}}\n"
            for p in ("p1", "p2", "p3")
        )
    )
    url = git_daemon.create_repo(
        repo_name, {"app/fleet.yaml": fleet, "app/cm.yaml": CM.format(name="cfg", version=1)}
    )
    ns = flotilla.namespace
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "roll", url, targets=[{"clusterSelector": {}}]), file="gitrepo.yaml"
    )
    await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "roll"),
        lambda s: s.state == "Ready" and s.ready_bundle_deployments == "6/6",
        timeout=240,
    )
    commit = git_daemon.commit(
        git_daemon.working_copy(repo_name),
        {"app/cm.yaml": CM.format(name="cfg", version=2)},
        message="version 2",
    )
    await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "roll"),
        lambda s: s.commit == commit and s.state == "Ready" and s.ready_bundle_deployments == "6/6",
        timeout=240,
    )

    calls, events = await activity_calls(flotilla.client, bundle_workflow_id(ns, "roll-app"))
    deploys = [c for c in calls if c.name == "deploy_bundle"]
    first_version = {c.input["bundle_digest"] for c in deploys[:6]}
    assert len(deploys) == 12 and len(first_version) == 1  # one deploy per cluster and version
    upgrade = [c for c in deploys if c.input["bundle_digest"] not in first_version]
    order = [c.input["cluster_name"] for c in upgrade]
    assert [part[c] for c in order] == ["p1", "p1", "p2", "p2", "p3", "p3"], order
    # Each upgrade starts only after the previous cluster is Ready again (maxUnavailable: 1).
    # Readiness comes back with the deploy itself, or from a wait_ready that follows it.
    upgraded = {u.input["deployment_id"] for u in upgrade}
    ready_at = {
        c.input["cluster_name"]: c.completed
        for c in calls
        if c.found_ready and c.input["deployment_id"] in upgraded
    }
    for before, after in itertools.pairwise(upgrade):
        finished = ready_at[before.input["cluster_name"]]
        assert finished is not None and finished <= after.scheduled, (before.input, after.input)
    # A bundle deployment costs a handful of events, not a workflow of its own; everything in
    # the bundle's history counts (start, planning, reports, continue-as-new).
    per_deployment = sum(events.values()) / len(deploys)
    print(f"{per_deployment:.1f} events per deployment: {dict(events)}")
    assert per_deployment <= 15, f"{per_deployment:.1f} events per deployment: {events}"
    for cluster in clusters:
        cm = local_cluster.request("GET", f"/api/v1/namespaces/{prefix}-{cluster}/configmaps/cfg")
        assert cm["data"] == {"version": "2"}


async def test_depends_on_chain_lands_in_order_and_waits_durably(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    prefix: str,
) -> None:
    clusters = ["one", "two"]
    await register(flotilla, local_cluster, {c: {} for c in clusters})
    base = per_cluster_namespaces(prefix, clusters)

    def files(a_paused: bool) -> dict[str, str | bytes]:
        return {
            # A starts paused, so B and C visibly wait for it.
            "a/fleet.yaml": base.replace(f"{prefix}-", f"{prefix}-a-")
            + f"paused: {str(a_paused).lower()}\n",
            "a/cm.yaml": CM.format(name="a", version=1),
            "b/fleet.yaml": base.replace(f"{prefix}-", f"{prefix}-b-")
            + "dependsOn: [{name: chain-a}]\n",
            "b/cm.yaml": CM.format(name="b", version=1),
            "c/fleet.yaml": base.replace(f"{prefix}-", f"{prefix}-c-")
            + "dependsOn: [{name: chain-b}]\n",
            "c/cm.yaml": CM.format(name="c", version=1),
        }

    url = git_daemon.create_repo(repo_name, files(a_paused=True))
    ns = flotilla.namespace
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "chain", url, targets=[{"clusterSelector": {}}]), file="gitrepo.yaml"
    )
    b = await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "chain-b"),
        lambda s: s.desired == 2 and s.state == "WaitingForDependency",
    )
    assert {c.state for c in b.clusters} == {"WaitingForDependency"}
    assert all(c.message == "waiting for chain-a" for c in b.clusters)
    c = await flotilla.control.bundle_status(ns, "chain-c")
    assert c.state == "WaitingForDependency"
    status = await flotilla.control.gitrepo_status(ns, "chain")
    assert status.state != "ErrApplied", status  # a dependency wait is never an error

    git_daemon.commit(git_daemon.working_copy(repo_name), files(a_paused=False), message="go")
    await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "chain"),
        lambda s: s.state == "Ready" and s.ready_bundle_deployments == "6/6",
        timeout=240,
    )
    ready: dict[tuple[str, str], object] = {}
    started: dict[tuple[str, str], object] = {}
    for bundle in ("chain-a", "chain-b", "chain-c"):
        calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, bundle))
        for call in calls:
            if call.name not in ("deploy_bundle", "wait_ready"):
                continue
            key = (bundle, call.input["cluster_name"])
            if call.name == "deploy_bundle":
                started.setdefault(key, call.scheduled)
            if call.found_ready:
                ready.setdefault(key, call.completed)
    for cluster in clusters:
        assert ready[("chain-a", cluster)] <= started[("chain-b", cluster)]  # type: ignore[operator]
        assert ready[("chain-b", cluster)] <= started[("chain-c", cluster)]  # type: ignore[operator]


async def test_pause_keeps_the_old_version_running_until_resume(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    prefix: str,
) -> None:
    await register(flotilla, local_cluster, {"one": {}})
    url = git_daemon.create_repo(
        repo_name,
        {
            "app/fleet.yaml": per_cluster_namespaces(prefix, ["one"]),
            "app/cm.yaml": CM.format(name="cfg", version=1),
        },
    )
    ns = flotilla.namespace
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "p", url, targets=[{"clusterName": "one"}]), file="gitrepo.yaml"
    )
    await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "p-app"),
        lambda s: s.state == "Ready" and s.desired == 1,
    )
    assert "paused" in await flotilla.control.pause_bundle(ns, "p-app", paused=True)
    commit = git_daemon.commit(
        git_daemon.working_copy(repo_name),
        {"app/cm.yaml": CM.format(name="cfg", version=2)},
        message="version 2",
    )
    paused = await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "p-app"),
        lambda s: s.commit == commit and s.state == "OutOfSync",
    )
    assert paused.paused and paused.message.startswith("one: paused: version ")
    cm = local_cluster.request("GET", f"/api/v1/namespaces/{prefix}-one/configmaps/cfg")
    assert cm["data"] == {"version": "1"}

    await flotilla.control.pause_bundle(ns, "p-app", paused=False)
    await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "p-app"),
        lambda s: s.state == "Ready" and not s.paused,
    )
    cm = local_cluster.request("GET", f"/api/v1/namespaces/{prefix}-one/configmaps/cfg")
    assert cm["data"] == {"version": "2"}
    history = helm_history(local_cluster.kubeconfig, "p-app", f"{prefix}-one")
    assert [h["revision"] for h in history] == [1, 2]

    # Pausing the cluster (Fleet's Cluster spec.paused) holds new versions the same way.
    cluster_yaml = (
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: Cluster\n"
        f"metadata: {{name: one, namespace: {ns}}}\nspec: {{paused: true}}\n"
    )
    await flotilla.control.apply_text(cluster_yaml, file="cluster.yaml")
    commit = git_daemon.commit(
        git_daemon.working_copy(repo_name),
        {"app/cm.yaml": CM.format(name="cfg", version=3)},
        message="version 3",
    )
    held = await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "p-app"),
        lambda s: s.commit == commit and s.state == "OutOfSync",
    )
    assert held.message.startswith("one: paused: ")
    await flotilla.control.apply_text(cluster_yaml.replace("true", "false"), file="cluster.yaml")
    await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "p-app"), lambda s: s.state == "Ready"
    )
    cm = local_cluster.request("GET", f"/api/v1/namespaces/{prefix}-one/configmaps/cfg")
    assert cm["data"] == {"version": "3"}
