"""dependsOn holds on upgrades, on every cluster (issue 14): ``db <- api <- web`` on four
clusters rolled out canary first, then main. On each cluster and for each version, a
dependent's deploy is scheduled only after its dependency's *same* version was Ready there,
read back from the bundle workflows' histories, for the first install and for an upgrade.

Before the rule, the canary got the new ``api`` while ``db`` still showed Ready with its old
version (the GitRepo forwards states by bundle, and the old version's Ready looked the same).
The four "clusters" are registry entries pointing at the one local cluster, each deploying
into its own namespace, as in ``test_rollout.py``.
"""

from __future__ import annotations

from datetime import datetime

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.ids import bundle_workflow_id
from tests.e2e.harness import Flotilla, activity_calls, per_cluster_namespaces
from tests.e2e.test_rollout import CM, register
from workflows.gitrepo_models import GitRepoStatus

CLUSTERS = {"c1": "canary", "c2": "main", "c3": "main", "c4": "main"}
CHAIN = {"db": None, "api": "db", "web": "api"}  # bundle -> the bundle it depends on


def _files(prefix: str, version: int) -> dict[str, str | bytes]:
    strategy = "rolloutStrategy:\n  partitions:\n" + "".join(
        f"    - name: {ring}\n      clusterSelector: {{matchLabels: {{ring: {ring}}}}}\n"
        for ring in ("canary", "main")
    )
    files: dict[str, str | bytes] = {}
    base = per_cluster_namespaces(prefix, list(CLUSTERS))
    for bundle, dependency in CHAIN.items():
        fleet = base.replace(f"{prefix}-", f"{prefix}-{bundle}-") + strategy
        if dependency:
            fleet += f"dependsOn: [{{name: up-{dependency}}}]\n"
        files[f"{bundle}/fleet.yaml"] = fleet
        files[f"{bundle}/cm.yaml"] = CM.format(name=bundle, version=version)
    return files


async def _timeline(
    flotilla: Flotilla, bundle: str
) -> tuple[dict[tuple[str, str], datetime], dict[tuple[str, str], datetime], list[str]]:
    """(cluster, version) -> first deploy scheduled, -> first seen Ready; versions in order.
    A version is the bundle digest the deploy carried."""
    calls, _ = await activity_calls(
        flotilla.client, bundle_workflow_id(flotilla.namespace, f"up-{bundle}")
    )
    scheduled: dict[tuple[str, str], datetime] = {}
    ready: dict[tuple[str, str], datetime] = {}
    versions: list[str] = []
    digest_of: dict[str, str] = {}
    for call in calls:
        if call.name == "deploy_bundle":
            digest = call.input["bundle_digest"]
            digest_of[call.input["deployment_id"]] = digest
            if digest not in versions:
                versions.append(digest)
            scheduled.setdefault((call.input["cluster_name"], digest), call.scheduled)
        if call.found_ready and call.completed is not None:
            digest = digest_of[call.input["deployment_id"]]
            ready.setdefault((call.input["cluster_name"], digest), call.completed)
    return scheduled, ready, versions


async def test_depends_on_waits_for_the_new_version_on_every_cluster(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    prefix: str,
) -> None:
    await register(flotilla, local_cluster, {c: {"ring": r} for c, r in CLUSTERS.items()})
    url = git_daemon.create_repo(repo_name, _files(prefix, 1))
    ns = flotilla.namespace
    await flotilla.serve_gitrepo(url, {}, name="up", ready="12/12", timeout=300)
    commit = git_daemon.commit(
        git_daemon.working_copy(repo_name), _files(prefix, 2), message="version 2"
    )
    # While the upgrade runs, a dependency wait is shown as such and never as an error.
    seen: set[str] = set()

    async def probe() -> GitRepoStatus:
        for bundle in ("api", "web"):
            status = await flotilla.control.bundle_status(ns, f"up-{bundle}")
            seen.update(
                f"{c.state}: {c.message}"
                for c in status.clusters
                if c.state == "WaitingForDependency"
            )
            assert status.state != "ErrApplied", status
        return await flotilla.control.gitrepo_status(ns, "up")

    await flotilla.eventually(
        probe,
        lambda s: (
            s.commit == commit and s.state == "Ready" and s.ready_bundle_deployments == "12/12"
        ),
        timeout=300,
        interval=0.3,
    )

    timelines = {bundle: await _timeline(flotilla, bundle) for bundle in CHAIN}
    for bundle, dependency in CHAIN.items():
        scheduled, _, versions = timelines[bundle]
        assert len(versions) == 2, (bundle, versions)  # first install, then the upgrade
        assert len(scheduled) == 8, (bundle, sorted(scheduled))  # each version on each cluster
        if dependency is None:
            continue
        _, dep_ready, dep_versions = timelines[dependency]
        for index, (version, dep_version) in enumerate(zip(versions, dep_versions, strict=True)):
            for cluster in CLUSTERS:
                started = scheduled[(cluster, version)]
                dep_at = dep_ready.get((cluster, dep_version))
                assert dep_at is not None and dep_at <= started, (
                    f"version {index + 1} of up-{bundle} was scheduled on {cluster} at "
                    f"{started}, before up-{dependency}'s version {index + 1} was Ready there "
                    f"({dep_at})"
                )
    assert any("waiting for up-" in line for line in seen), seen
    for bundle in CHAIN:
        for cluster in CLUSTERS:
            cm = local_cluster.request(
                "GET", f"/api/v1/namespaces/{prefix}-{bundle}-{cluster}/configmaps/{bundle}"
            )
            assert cm["data"] == {"version": "2"}
