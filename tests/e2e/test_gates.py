"""Gates between partitions on a real cluster (issue 14): the canary soaks, then ``main``
waits for `flotilla approve rollout`; a rejection halts with the old version still running;
the next commit asks again. Order read back from the bundle workflow's history.

Four "clusters" are registry entries pointing at the one local cluster, each deploying into
its own namespace, as in ``test_rollout.py``. The CLI runs in-process (``starters.cli.main``)
against the test's Temporal.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from temporalio.api.enums.v1 import EventType

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.ids import bundle_workflow_id
from starters.cli import main
from tests.e2e.harness import Flotilla, activity_calls, gitrepo_yaml, per_cluster_namespaces
from tests.e2e.test_rollout import CM, register
from workflows.bundle_models import BundleStatus

CLUSTERS = {"c1": "canary", "c2": "main", "c3": "main", "c4": "main"}


def _files(prefix: str, version: int) -> dict[str, str | bytes]:
    fleet = per_cluster_namespaces(prefix, list(CLUSTERS)) + (
        "rolloutStrategy:\n  partitions:\n"
        "    - name: canary\n      clusterSelector: {matchLabels: {ring: canary}}\n"
        "      soakTime: 3s\n"
        "    - name: main\n      clusterSelector: {matchLabels: {ring: main}}\n"
        "      requireApproval: true\n      approvalDeadline: 1h\n"
    )
    return {"app/fleet.yaml": fleet, "app/cm.yaml": CM.format(name="cfg", version=version)}


async def _accepted_updates(flotilla: Flotilla, workflow_id: str) -> list[datetime]:
    history = await flotilla.client.get_workflow_handle(workflow_id).fetch_history()
    kind = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    return [e.event_time.ToDatetime() for e in history.events if e.event_type == kind]


async def test_main_starts_only_after_the_canary_soaked_and_a_person_approved(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = flotilla.namespace
    monkeypatch.setenv("TEMPORAL_ADDRESS", flotilla.client.service_client.config.target_host)
    monkeypatch.setenv("FLOTILLA_SECRETS_DIR", str(flotilla.settings.secrets_dir))
    monkeypatch.setenv("USER", "ann")
    common = ["-n", ns, "--task-queue", flotilla.config.task_queue]

    async def cli(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(argv))
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    def configmaps() -> dict[str, str]:
        return {
            c: local_cluster.request("GET", f"/api/v1/namespaces/{prefix}-{c}/configmaps/cfg")[
                "data"
            ]["version"]
            for c in CLUSTERS
        }

    async def waiting_for_approval(commit: str) -> None:
        await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "gates-app"),
            lambda s: (
                s.commit == commit
                and any(g.partition == "main" and g.state == "Waiting" for g in s.gates)
                and "soak" not in s.summary  # the canary Ready and soaked, not only asked
            ),
            timeout=240,
        )

    await register(flotilla, local_cluster, {c: {"ring": r} for c, r in CLUSTERS.items()})
    url = git_daemon.create_repo(repo_name, _files(prefix, 1))
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "gates", url, targets=[{"clusterSelector": {}}]), file="gitrepo.yaml"
    )
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "gates"), lambda s: bool(s.commit)
    )
    await waiting_for_approval(status.commit)
    # The listing is the search attributes, which follow the bundle's reports within seconds.
    await flotilla.eventually(
        lambda: cli("get", "bundles", *common),
        lambda result: result[0] == 0 and "waiting for approval of partition main" in result[1],
        timeout=60,
        interval=1.0,
    )
    code, out = await cli("approve", "rollout", "gates-app", "--partition", "main", *common)
    assert code == 0 and "partition main approved by ann" in out, out
    await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "gates"),
        lambda s: s.state == "Ready" and s.ready_bundle_deployments == "4/4",
        timeout=240,
    )

    # Version 2: rejected after the canary; main keeps running version 1.
    v2 = git_daemon.commit(git_daemon.working_copy(repo_name), _files(prefix, 2), message="v2")
    await waiting_for_approval(v2)
    assert configmaps() == {"c1": "2", "c2": "1", "c3": "1", "c4": "1"}
    code, out = await cli(
        "approve", "rollout", "gates-app", "--partition", "main", "--reject",
        "--reason", "error rate up", "--user", "bob", *common,
    )  # fmt: skip
    assert code == 0 and "partition main rejected by bob" in out, out
    code, out = await cli("describe", "bundle", "gates-app", *common)
    assert code == 0, out
    assert "rollout halted: partition main rejected by bob: error rate up" in out, out
    code, out = await cli("rollout", "status", "bundle", "gates-app", "--timeout", "30s", *common)
    assert code == 1, out  # halted: failed, with why, not waiting until the timeout
    assert "rollout halted: partition main rejected by bob: error rate up" in out, out
    code, out = await cli("approve", "rollout", "gates-app", "--partition", "main", *common)
    assert code == 1 and "was already rejected by bob" in out and "Traceback" not in out, out
    await asyncio.sleep(3)
    assert configmaps() == {"c1": "2", "c2": "1", "c3": "1", "c4": "1"}

    # Version 3: asked again, approved, everywhere.
    v3 = git_daemon.commit(git_daemon.working_copy(repo_name), _files(prefix, 3), message="v3")
    await waiting_for_approval(v3)
    code, out = await cli(
        "approve", "rollout", "gates-app", "--partition", "main", "--reason", "fixed", *common
    )
    assert code == 0, out
    await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "gates"),
        lambda s: s.commit == v3 and s.state == "Ready" and s.ready_bundle_deployments == "4/4",
        timeout=240,
    )
    assert configmaps() == {c: "3" for c in CLUSTERS}

    # From history: for each version, main's deploys come after the decision on it, and the
    # canary's came first, its soak (3 s) before main was asked.
    workflow_id = bundle_workflow_id(ns, "gates-app")
    decisions = await _accepted_updates(flotilla, workflow_id)
    assert len(decisions) == 3  # approve v1, reject v2, approve v3 (the refused one is not)
    calls, _ = await activity_calls(flotilla.client, workflow_id)
    deploys = [c for c in calls if c.name == "deploy_bundle"]
    versions = list(dict.fromkeys(c.input["bundle_digest"] for c in deploys))
    assert len(versions) == 3
    for version, decided in zip(versions, (decisions[0], None, decisions[2]), strict=True):
        of = [c for c in deploys if c.input["bundle_digest"] == version]
        canary = [c for c in of if CLUSTERS[c.input["cluster_name"]] == "canary"]
        mains = [c for c in of if CLUSTERS[c.input["cluster_name"]] == "main"]
        assert len(canary) == 1
        if decided is None:
            assert mains == []  # rejected: main never got version 2
            continue
        assert {c.input["cluster_name"] for c in mains} == {"c2", "c3", "c4"}
        assert all(c.scheduled >= decided for c in mains)
        ready = canary[0].completed
        assert ready is not None and (decided - ready).total_seconds() >= 3.0


DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: never-ready}
spec:
  replicas: 1
  selector: {matchLabels: {app: never-ready}}
  template:
    metadata: {labels: {app: never-ready}}
    spec:
      nodeSelector: {flotilla.dev/no-such-node: "true"}
      containers: [{name: app, image: example.invalid/app:1}]
"""


async def test_a_bad_version_on_the_canary_halts_the_rollout_before_main(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    prefix: str,
) -> None:
    """Two bad versions, each halted on the canary by its failure budget (0; 60 s, as a first
    install takes tens of seconds on a loaded machine): a manifest the API server rejects
    (ErrApplied), then a Deployment that never becomes Ready (its pod can never be scheduled).
    main keeps running version 1 throughout."""
    ns = flotilla.namespace
    fleet = per_cluster_namespaces(prefix, list(CLUSTERS)) + (
        "rolloutStrategy:\n  partitions:\n"
        "    - name: canary\n      clusterSelector: {matchLabels: {ring: canary}}\n"
        "      failureBudget: 0\n      failureDeadline: 60s\n"
        "    - name: main\n      clusterSelector: {matchLabels: {ring: main}}\n"
    )
    await register(flotilla, local_cluster, {c: {"ring": r} for c, r in CLUSTERS.items()})
    url = git_daemon.create_repo(
        repo_name, {"app/fleet.yaml": fleet, "app/cm.yaml": CM.format(name="cfg", version=1)}
    )
    await flotilla.serve_gitrepo(url, {}, name="halt", ready="4/4", timeout=240)
    work = git_daemon.working_copy(repo_name)
    bad_versions: dict[str, dict[str, str | bytes]] = {
        # The API server refuses the object: the deploy is ErrApplied.
        "rejected": {"app/cm.yaml": CM.format(name="Bad_Name", version=2)},
        # Applied, but never Ready.
        "never ready": {"app/cm.yaml": CM.format(name="cfg", version=3), "app/d.yaml": DEPLOYMENT},
    }
    for what, files in bad_versions.items():
        commit = git_daemon.commit(work, files, message=what)

        def halted(s: BundleStatus, commit: str = commit) -> bool:
            return s.commit == commit and bool(s.halted)

        status = await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "halt-app"), halted, timeout=240
        )
        assert status.halted.startswith(
            "rollout halted: partition canary: 1 of 1 cluster(s) not Ready 1m after release, "
            "failure budget 0 (c1"
        ), (what, status.halted)
        held = {c.cluster: c.message for c in status.clusters if CLUSTERS[c.cluster] == "main"}
        assert all(m.startswith("rollout halted: partition canary") for m in held.values()), held
        await asyncio.sleep(5)
        for cluster in ("c2", "c3", "c4"):
            cm = local_cluster.request(
                "GET", f"/api/v1/namespaces/{prefix}-{cluster}/configmaps/cfg"
            )
            assert cm["data"] == {"version": "1"}, (what, cluster)
        calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "halt-app"))
        versions = list(
            dict.fromkeys(c.input["bundle_digest"] for c in calls if c.input.get("bundle_digest"))
        )
        newest = [
            c
            for c in calls
            if c.name == "deploy_bundle" and c.input["bundle_digest"] == versions[-1]
        ]
        assert {c.input["cluster_name"] for c in newest} == {"c1"}, (what, newest)
