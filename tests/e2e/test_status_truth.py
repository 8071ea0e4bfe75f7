"""Status that never lies: each failure shows in `get` and `describe` with its state and reason
within its bound, and clears by itself when the cause goes away.

Real components throughout: the Temporal dev server, the git daemon, the local cluster's API
server and Helm. "The API server stops" is a real TCP forwarder in front of the real API
server being closed (connections refused, as for a stopped process): the shared cluster
cannot be stopped for one test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid

import pytest

from devenv.cluster import LocalCluster
from devenv.forward import TcpForwarder
from devenv.gitserver import GitDaemon
from devenv.process import free_port
from devenv.temporal import TemporalDevServer
from starters.get import table_from_visibility
from starters.tables import (
    bundle_table,
    cluster_table,
    describe_bundle,
    describe_cluster,
    describe_gitrepo,
    gitrepo_table,
)
from tests.e2e.harness import Flotilla, gitrepo_yaml, per_cluster_namespaces, table_row
from workflows.common import REPORT_INTERVAL
from workflows.visibility import message_value

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n"


async def test_git_errors_and_empty_paths_show_in_get_and_describe_and_clear(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    url = git_daemon.create_repo(
        repo_name, {"app/cm.yaml": CM.format(name="a"), "app/fleet.yaml": "{}\n"}
    )
    ns = flotilla.namespace
    good = gitrepo_yaml(ns, "repo", url)
    await flotilla.control.apply_text(good, file="gitrepo.yaml")
    ready = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"),
        lambda s: s.state == "Ready" and bool(s.commit),
    )
    commit = ready.commit
    serving = f"still serving {commit[:12]}"

    causes = {
        "missing branch": (good.replace("branch: main", "branch: nope"), "branch 'nope' not found"),
        "unreachable host": (
            good.replace(url, f"git://127.0.0.1:{free_port()}/gone.git"),
            "127.0.0.1",
        ),
        "missing tag": (good.replace("branch: main", "revision: v9.9.9"), "v9.9.9"),
        "missing commit": (
            good.replace("branch: main", f"revision: {'deadbeef' * 5}"),
            "deadbeefdead",
        ),
        "malformed URL": (good.replace(url, "htp//not a url"), "htp//not a url"),
        "paths match nothing": (
            gitrepo_yaml(ns, "repo", url, paths=["nope"]),
            "spec.paths: 'nope' matches no directory",
        ),
    }
    for cause, (spec, reason) in causes.items():
        started = time.monotonic()
        await flotilla.control.apply_text(spec, file="gitrepo.yaml")
        status = await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "repo"),
            lambda s: s.state == "GitError",
            timeout=30,
        )
        row = table_row(gitrepo_table([status]), "repo")
        assert "GitError: " in row and reason in row and serving in row, (cause, row)
        assert "since 20" in row and "\n" not in status.message, cause
        text = describe_gitrepo(status)
        assert f"Git error:   {status.error}" in text, cause
        assert f"Serving:   {commit}" in text, cause
        polling = next(c for c in status.conditions if c.type == "GitPolling")
        assert (polling.status, polling.reason) == (False, "GitError"), cause
        assert polling.last_transition is not None
        shown_after = time.monotonic() - started
        assert shown_after < 30, cause
        print(f"{cause}: GitError shown after {shown_after:.1f}s")
        await flotilla.listed_as(f"gitrepo/{ns}/repo", "GitError")
        # The last good commit keeps running: its bundle is still there, still deployed.
        assert [b.bundle for b in await flotilla.control.list_bundles(ns)] == ["repo-app"]
        assert status.commit == commit

        await flotilla.control.apply_text(good, file="gitrepo.yaml")
        cleared = await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "repo"),
            lambda s: s.state == "Ready" and not s.error,
            timeout=30,
        )
        assert table_row(gitrepo_table([cleared]), "repo").split()[-1] == "Ready", cause
        assert all(c.status for c in cleared.conditions), cause
        assert "GitPolling   True" in describe_gitrepo(cleared)


async def test_a_cluster_whose_api_server_stops_is_offline_within_two_probes_and_clears(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    kubeconfig = json.loads(local_cluster.kubeconfig.read_text())
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    forwarder = TcpForwarder(int(server.rsplit(":", 1)[1]))
    await forwarder.start()
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{forwarder.port}"
    prefix = f"t{uuid.uuid4().hex[:6]}"
    url = git_daemon.create_repo(
        repo_name,
        {
            "app/cm.yaml": CM.format(name="a"),
            "app/fleet.yaml": per_cluster_namespaces(prefix, ["edge"]),
        },
    )
    ns = flotilla.namespace
    bound = 2 * flotilla.config.seen_seconds
    try:
        await flotilla.serve_gitrepo(url, {"edge": json.dumps(kubeconfig)}, ready="1/1")

        stopped = time.monotonic()
        await forwarder.stop()
        status = await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "repo"),
            lambda s: s.state == "Offline",
            timeout=bound + 15,
            interval=0.25,
        )
        offline_after = time.monotonic() - stopped
        print(f"API server stopped: Offline shown after {offline_after:.1f}s (bound {bound}s)")
        assert offline_after <= bound, offline_after
        assert "cluster unreachable since" in status.message
        bundle = (await flotilla.control.list_bundles(ns))[0]
        assert bundle.state == "Offline" and bundle.clusters[0].state == "Offline"
        ready = bundle.conditions[0]
        assert (ready.type, ready.status, ready.reason) == ("Ready", False, "Offline")
        assert ready.last_transition is not None
        assert "Ready   False    Offline" in describe_bundle(bundle)
        registry = await flotilla.control.registry(ns)
        row = table_row(cluster_table(registry, [bundle]), "edge")
        assert "Offline: cluster unreachable since" in row
        assert str(forwarder.port) in row
        text = describe_cluster(registry.clusters[0], [bundle])
        assert "Reachable   False" in text and "Offline" in text
        await flotilla.listed_as(f"gitrepo/{ns}/repo", "Offline")
        await flotilla.listed_as(f"bundle/{ns}/repo-app", "Offline")

        restarted = time.monotonic()
        await forwarder.start()
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "repo"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "1/1",
            timeout=bound + 15,
            interval=0.25,
        )
        cleared_after = time.monotonic() - restarted
        print(f"API server back: Ready after {cleared_after:.1f}s")
        assert cleared_after <= bound, cleared_after
        registry = await flotilla.control.registry(ns)
        assert not registry.clusters[0].unreachable
        await flotilla.listed_as(f"gitrepo/{ns}/repo", "Ready")
        await flotilla.listed_as(f"bundle/{ns}/repo-app", "Ready")
    finally:
        await forwarder.stop()


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.local/web:1}]
"""
# On "slow" the pod can be scheduled nowhere, so its deploy stays in flight (readiness grace).
NOWHERE = "spec:\n  template:\n    spec:\n      nodeSelector: {flotilla-test/none: 'true'}\n"


async def test_a_bundle_change_reaches_the_gitrepo_within_five_seconds(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    fleet_yaml = (
        f"defaultNamespace: {prefix}-default\ntargetCustomizations:\n"
        f"  - {{clusterName: fast, namespace: {prefix}-fast}}\n"
        f"  - {{clusterName: slow, namespace: {prefix}-slow, yaml: {{overlays: [slow]}}}}\n"
    )
    url = git_daemon.create_repo(
        repo_name,
        {
            "app/fleet.yaml": fleet_yaml,
            "app/deployment.yaml": DEPLOYMENT,
            "app/overlays/slow/deployment_patch.yaml": NOWHERE,
        },
    )
    ns = flotilla.namespace
    kubeconfig = local_cluster.kubeconfig.read_text()
    try:
        for name in ("fast", "slow"):
            await flotilla.control.add_cluster(ns, name, kubeconfig)
        await flotilla.worker.refresh_clusters()
        await flotilla.control.apply_text(
            gitrepo_yaml(ns, "repo", url, targets=[{"clusterSelector": {}}]), file="gitrepo.yaml"
        )
        # Sample both sides; the bundle's own query is the truth the GitRepo must follow.
        bundle_at = gitrepo_at = None
        deadline = time.monotonic() + 60
        while gitrepo_at is None and time.monotonic() < deadline:
            now = time.monotonic()
            with contextlib.suppress(Exception):
                bundle = await flotilla.control.bundle_status(ns, "repo-app")
                if bundle_at is None and bundle.ready >= 1:
                    bundle_at = now
            gitrepo = await flotilla.control.gitrepo_status(ns, "repo")
            assert not gitrepo.message.endswith(": "), gitrepo.message
            if bundle_at is not None and gitrepo.ready_bundle_deployments.startswith("1/"):
                gitrepo_at = now
            await asyncio.sleep(0.2)
        assert bundle_at is not None and gitrepo_at is not None, (bundle_at, gitrepo_at)
        lag = gitrepo_at - bundle_at
        print(f"bundle change reached the GitRepo after {lag:.1f}s")
        assert lag <= 5.0
        bundle = await flotilla.control.bundle_status(ns, "repo-app")
        states = {c.cluster: c.state for c in bundle.clusters}
        assert states["fast"] == "Ready" and states["slow"] != "Ready", bundle
    finally:
        for name in ("fast", "slow", "default"):
            with contextlib.suppress(Exception):
                local_cluster.request("DELETE", f"/api/v1/namespaces/{prefix}-{name}")


def _key(row: str) -> tuple[str, str]:
    """A get row's commit and state (both tables: NAME, REPO|GITREPO, COMMIT, READY, STATUS)."""
    words = row.split()
    return words[2], words[4].rstrip(":")


def _flat(table: str) -> dict[str, str]:
    """A table's rows by name, with the column padding taken out."""
    return {row.split()[0]: " ".join(row.split()) for row in table.splitlines()[1:]}


async def test_get_and_the_ui_agree_with_describe_at_every_sample_of_a_rollout_with_a_failure(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    temporal_server: TemporalDevServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`flotilla get` prints the search attributes the Temporal UI lists (over the HTTP API:
    the same visibility records); `describe` asks the workflows. Sampled through a rollout
    where one bundle fails on both clusters: every `get` row's commit and state is one
    `describe` showed at the sample before it, after it, or within its kind's bound (a
    GitRepo publishes with its status, visibility lagging; a bundle reports a new state within
    REPORT_GAP); once settled (after REPORT_INTERVAL, a message's bound) the rows are the
    same, word for word."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_server.address)
    monkeypatch.setenv("TEMPORAL_HTTP_ADDRESS", temporal_server.http_address)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", flotilla.client.namespace)
    prefix = f"t{uuid.uuid4().hex[:6]}"
    fleet_yaml = per_cluster_namespaces(prefix, ["a", "b"])
    url = git_daemon.create_repo(
        repo_name,
        {
            "ok/cm.yaml": CM.format(name="ok"),
            "ok/fleet.yaml": fleet_yaml,
            # The API server rejects it at install: ErrApplied on both clusters.
            "broken/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"
            "data: {k: [1]}\n",
            "broken/fleet.yaml": fleet_yaml,
        },
    )
    ns = flotilla.namespace
    kubeconfig = local_cluster.kubeconfig.read_text()
    lags = {"gitrepo": 3.0, "state": 3.0 + 2.0, "message": REPORT_INTERVAL.total_seconds() + 2.0}
    assert _key("repo git://h/r.git 0123abc 0/4 WaitApplied: x: y") == ("0123abc", "WaitApplied")

    def get(kind: str) -> dict[str, str]:
        text = table_from_visibility(argparse.Namespace(kind=kind, namespace=ns))
        return {} if text is None else _flat(text)

    try:
        for name in ("a", "b"):
            await flotilla.control.add_cluster(ns, name, kubeconfig)
        await flotilla.worker.refresh_clusters()
        await flotilla.control.apply_text(
            gitrepo_yaml(ns, "repo", url, targets=[{"clusterSelector": {}}]), file="gitrepo.yaml"
        )
        # (time, rows by name) of what the workflows' status queries answered.
        said: list[tuple[float, dict[str, str], dict[str, str]]] = []
        samples = mismatches = 0
        first_seen: dict[str, float] = {}
        settled_at: float | None = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            # get first, then describe: a get row may be older than the describe answer that
            # follows it (by its kind's lag), never newer.
            listed_at = time.monotonic()
            listed_repos, listed_bundles = get("gitrepos"), get("bundles")
            repo = await flotilla.control.gitrepo_status(ns, "repo")
            repo = repo.model_copy(update={"message": message_value(repo.message)})
            bundles = await flotilla.control.list_bundles(ns)
            bundles = [b.model_copy(update={"message": message_value(b.message)}) for b in bundles]
            now = time.monotonic()
            said.append(
                (now, _flat(gitrepo_table([repo])), _flat(bundle_table(bundles)) if bundles else {})
            )
            samples += 1
            for name in (*said[-1][1], *said[-1][2]):
                first_seen.setdefault(name, now)

            # The describe answers a get row may show: those within its kind's lag, and always
            # the one just before it (samples are seconds apart under load; a state that came
            # and went between two samples is seen by get alone, so states are compared, and
            # whole rows once settled).
            before = max((r[0] for r in said if r[0] < listed_at), default=now)

            def shown_by_describe(name: str, row: str, column: int, lag: float) -> bool:
                if first_seen.get(name, now) > listed_at - lag:  # noqa: B023
                    return True  # describe has not answered for it long enough to judge
                window = [
                    (r[1] if column == 1 else r[2]).get(name, "")
                    for r in said
                    if r[0] >= min(listed_at - lag, before)  # noqa: B023
                ]
                return _key(row) in {_key(r) for r in window if r}

            for name, row in listed_repos.items():
                assert shown_by_describe(name, row, 1, lags["gitrepo"]), (row, said[-3:])
            for name, row in listed_bundles.items():
                assert shown_by_describe(name, row, 2, lags["state"]), (row, said[-3:])
                mismatches += row != said[-1][2].get(name)
            done = repo.state == "ErrApplied" and {b.bundle: b.state for b in bundles} == {
                "repo-broken": "ErrApplied",
                "repo-ok": "Ready",
            }
            if done and settled_at is None:
                settled_at = now
            if settled_at is not None and now - settled_at > lags["message"]:
                break
            await asyncio.sleep(0.3)
        assert settled_at is not None, said[-1]
        # Settled: what get prints is what describe says, row for row.
        assert get("gitrepos") == said[-1][1] and get("bundles") == said[-1][2], said[-1]
        print(f"{samples} samples; a get bundle row differed from describe's at {mismatches}")
        await flotilla.listed_as(f"bundle/{ns}/repo-broken", "ErrApplied")
    finally:
        for name in ("a", "b", "default"):
            with contextlib.suppress(Exception):
                local_cluster.request("DELETE", f"/api/v1/namespaces/{prefix}-{name}")
