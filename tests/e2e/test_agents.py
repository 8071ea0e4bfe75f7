"""Agent (pull) mode with real components: two downstream clusters (two API servers), each
served by its own `flotilla agent` process that has only its own kubeconfig, a central worker
that holds neither, and a push-mode cluster in the same GitRepo (a mixed fleet).

SIGKILL of one agent mid-rollout: its cluster turns Offline, the others finish, the restarted
agent converges with exactly one new Helm revision. No kubeconfig token appears in any
history, agent log or CLI output.

An agent also runs its cluster's object watcher (a hand edit shows Modified in seconds, not at
the 5-minute check) and deploys a bundle with ``serviceAccount`` as that account, through
impersonation, under real RBAC.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from activities.kube import Kube
from activities.secrets import FileSecretStore
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.agents import NEVER_CONNECTED
from flotilla.credentials import SOPS_AGE_SECRET
from flotilla.ids import bundle_workflow_id, cluster_task_queue
from flotilla.models import GitRepo, load_fleet_objects
from starters.agent import STARTED_LINE
from tests.charts import AgeKey, sops_encrypt
from tests.conftest import locate
from tests.e2e.harness import (
    ActivityCall,
    Flotilla,
    WorkerProcess,
    activity_calls,
    gitrepo_yaml,
    helm_history,
    history_text,
)
from tests.e2e.test_service_accounts import CLUSTER_ROLE, grant_namespaced_role
from tests.notifications.test_delivery import free_port
from tests.workflows.test_agent_cli import scrape

ROOT = Path(__file__).resolve().parents[2]
# Two API servers, a dev server, three deploy rounds and an agent restart on a shared machine.
pytestmark = pytest.mark.timeout(1200)
HEARTBEAT_SECONDS = 2
# Drift through the agent's watcher, on a loaded machine; the periodic check would take 300 s.
MODIFIED_WITHIN = 30.0
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\ndata: {{version: '{v}'}}\n"


def agent_process(
    flotilla: Flotilla,
    root: Path,
    name: str,
    kubeconfig: Path,
    *extra: str,
    metrics_port: int = 0,
) -> WorkerProcess:
    """`flotilla agent` as its own host: own HOME, work and temp directories, an empty secret
    store, the shared content store, and a copy of its own cluster's kubeconfig only (and
    its /metrics on ``metrics_port`` when given)."""
    for directory in ("home", "work", "tmp", "secrets"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    own = root / "home" / "kubeconfig"
    own.write_text(kubeconfig.read_text())
    env = {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "HOME": str(root / "home"),
        "TMPDIR": str(root / "tmp"),
        "PYTHONPATH": str(ROOT),
        "FLOTILLA_WORKDIR": str(root / "work"),
        "FLOTILLA_SECRETS_DIR": str(root / "secrets"),
        "FLOTILLA_CONTENT_DIR": str(flotilla.settings.content_dir),
        "TEMPORAL_ADDRESS": flotilla.client.service_client.config.target_host,
    }
    argv = [
        sys.executable,
        "-m",
        "starters.cli",
        "agent",
        "--cluster",
        f"{flotilla.namespace}/{name}",
        "--kubeconfig",
        str(own),
        "--heartbeat-seconds",
        str(HEARTBEAT_SECONDS),
        "--shutdown-seconds",
        "5",
        *(["--metrics-listen", f"127.0.0.1:{metrics_port}"] if metrics_port else []),
        "--task-queue",
        flotilla.config.task_queue,
        *extra,
    ]
    return WorkerProcess(
        root / "agent.log", argv, env, ROOT, started_line=STARTED_LINE, start_seconds=180
    )


@contextlib.contextmanager
def stopped_at_exit(*agents: WorkerProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for agent in agents:
            agent.stop()


def cli(flotilla: Flotilla, *args: str) -> str:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": flotilla.client.service_client.config.target_host,
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "starters.cli", *args, "--task-queue", flotilla.config.task_queue],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


async def test_agents_deploy_go_offline_and_converge_in_a_mixed_fleet(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    management_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    tmp_path: Path,
) -> None:
    ns = flotilla.namespace
    prefix = f"t{uuid.uuid4().hex[:6]}"
    # east and pushed share the local cluster (each its own namespace); west is the other
    # API server. Only pushed is push mode: the central worker has its kubeconfig alone.
    downstream = {"east": local_cluster, "west": management_cluster, "pushed": local_cluster}
    fleet = "\n".join(
        [f"defaultNamespace: {prefix}-default", "targetCustomizations:"]
        + [f"  - {{clusterName: {c}, namespace: {prefix}-{c}}}" for c in downstream]
    )
    url = git_daemon.create_repo(
        repo_name, {"app/fleet.yaml": fleet + "\n", "app/cm.yaml": CM.format(v=1)}
    )
    east_metrics = free_port()
    east = agent_process(
        flotilla, tmp_path / "east", "east", local_cluster.kubeconfig, metrics_port=east_metrics
    )
    west = agent_process(flotilla, tmp_path / "west", "west", management_cluster.kubeconfig)
    cli_outputs: list[str] = []
    try:
        with stopped_at_exit(east, west):
            await flotilla.control.add_cluster(ns, "east", None, labels={"mode": "agent"})
            await flotilla.control.add_cluster(ns, "west", None, labels={"mode": "agent"})
            await flotilla.control.add_cluster(ns, "pushed", local_cluster.kubeconfig.read_text())
            # The central worker runs in this event loop: wait for the agents off it.
            await asyncio.gather(asyncio.to_thread(east.start), asyncio.to_thread(west.start))
            await flotilla.worker.refresh_clusters()
            # The central worker serves only the push-mode cluster.
            assert flotilla.worker.cluster_queues == [cluster_task_queue(ns, "pushed")]
            await flotilla.control.apply_text(
                gitrepo_yaml(ns, "mixed", url, targets=[{"clusterSelector": {}}]), file="g.yaml"
            )
            await flotilla.eventually(
                lambda: flotilla.control.gitrepo_status(ns, "mixed"),
                lambda s: s.state == "Ready" and s.ready_bundle_deployments == "3/3",
                timeout=240,
            )
            # east's own endpoint: its deploy was timed where it ran, its cluster answers.
            metrics = await asyncio.to_thread(scrape, east_metrics)
            mine = {"namespace": ns, "name": "east"}
            deploys = metrics["flotilla_deploy_duration_seconds_count"]
            assert sum(v for labels, v in deploys if labels["result"] == "success") >= 1, deploys
            assert metrics["flotilla_cluster_unreachable"] == [(mine, 0.0)], metrics
            [(_, seen_age)] = metrics["flotilla_cluster_last_seen_age_seconds"]
            assert 0 <= seen_age < 120, seen_age
            listing = await asyncio.to_thread(cli, flotilla, "get", "clusters", "-n", ns)
            cli_outputs.append(listing)
            rows = {line.split()[0]: line for line in listing.splitlines()[1:]}
            assert " agent " in rows["east"] and " agent " in rows["west"]
            assert " push " in rows["pushed"] and "<never>" not in rows["west"]
            described = await asyncio.to_thread(
                cli, flotilla, "describe", "cluster", "west", "-n", ns
            )
            cli_outputs.append(described)
            assert "Kubernetes v1." in described and "heartbeat every 2s" in described

            # Version 2; west's agent is killed as soon as its deploy is handed out.
            commit = git_daemon.commit(
                git_daemon.working_copy(repo_name), {"app/cm.yaml": CM.format(v=2)}, message="v2"
            )
            west_queue = cluster_task_queue(ns, "west")

            async def west_deploys() -> int:
                calls, _ = await activity_calls(
                    flotilla.client, bundle_workflow_id(ns, "mixed-app")
                )
                return sum(c.name == "deploy_bundle" and c.task_queue == west_queue for c in calls)

            await flotilla.eventually(west_deploys, lambda n: n >= 2, interval=0.1, timeout=120)
            west.kill()
            killed = time.monotonic()
            record = await flotilla.eventually(
                lambda: flotilla.control.registry(ns),
                lambda s: any(c.name == "west" and c.unreachable for c in s.clusters),
                interval=0.2,
                timeout=60,
            )
            offline_after = time.monotonic() - killed
            # Two intervals after the last beat, plus the registry's timer and this poll under
            # load (7.2 s measured at load 45 with 2 s beats).
            assert offline_after < 2 * HEARTBEAT_SECONDS + 20, offline_after
            (west_record,) = [c for c in record.clusters if c.name == "west"]
            assert "agent stopped heartbeating" in west_record.offline
            # The others finish while west waits, shown Offline (not a failure).
            bundle = await flotilla.eventually(
                lambda: flotilla.control.bundle_status(ns, "mixed-app"),
                lambda s: (
                    {c.cluster: c.state for c in s.clusters}
                    == {"east": "Ready", "pushed": "Ready", "west": "Offline"}
                ),
                timeout=240,
            )
            (west_state,) = [c for c in bundle.clusters if c.cluster == "west"]
            assert "agent stopped heartbeating" in west_state.message
            for name in ("east", "pushed"):
                history = helm_history(local_cluster.kubeconfig, "mixed-app", f"{prefix}-{name}")
                assert [h["revision"] for h in history] == [1, 2], (name, history)

            await asyncio.to_thread(west.start)
            restarted = time.monotonic()
            status = await flotilla.eventually(
                lambda: flotilla.control.gitrepo_status(ns, "mixed"),
                lambda s: (
                    s.commit == commit
                    and s.state == "Ready"
                    and s.ready_bundle_deployments == "3/3"
                ),
                timeout=300,
            )
            ready_after = time.monotonic() - restarted
            assert status.ready_clusters == 3
            history = helm_history(management_cluster.kubeconfig, "mixed-app", f"{prefix}-west")
            assert [h["revision"] for h in history] == [1, 2], history
            # No retry storm while it was away: a handful of deploys on west's queue at most.
            assert await west_deploys() <= 4
            print(
                f"west offline after {offline_after:.1f}s, ready {ready_after:.1f}s after restart"
            )

            # Graceful stop: exits 0, says so, and the registry hears it at once.
            await asyncio.to_thread(east.stop)
            assert east.proc is not None and east.proc.returncode == 0
            assert "agent stopped" in east.log.read_text()
            await flotilla.eventually(
                lambda: flotilla.control.registry(ns),
                lambda s: any(
                    c.name == "east" and c.unreachable == "agent stopped" for c in s.clusters
                ),
                timeout=30,
            )

        # Secrets: the agents' cluster credentials are nowhere but with their own agent.
        stored = {s.name for s in flotilla.worker.secrets.list(ns)}
        assert "pushed-kubeconfig" in stored
        assert not {"east-kubeconfig", "west-kubeconfig"} & stored
        texts = [*cli_outputs, east.log.read_text(), west.log.read_text()]
        texts += [" ".join(agent.argv) for agent in (east, west)]
        for prefix_ in ("registry", "gitrepo", "bundle"):
            query = f"WorkflowId STARTS_WITH '{prefix_}/{ns}'"
            async for wf in flotilla.client.list_workflows(query):
                handle = flotilla.client.get_workflow_handle(wf.id, run_id=wf.run_id)
                texts.append(history_text(await handle.fetch_history()))
        for token in (local_cluster.token, management_cluster.token):
            leaks = [i for i, text in enumerate(texts) if token in text]
            assert not leaks, f"a cluster token appears in {len(leaks)} outputs"
        assert management_cluster.token not in "".join(
            p.read_text(errors="replace")
            for p in Path(flotilla.settings.secrets_dir).rglob("*")
            if p.is_file()
        )
    finally:
        for name, cluster in downstream.items():
            with contextlib.suppress(Exception):
                cluster.request("DELETE", f"/api/v1/namespaces/{prefix}-{name}")


async def test_agent_watches_its_cluster_and_deploys_as_the_bundle_service_account(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    ns = flotilla.namespace
    grant_namespaced_role(local_cluster, namespace, "deployer")
    role = f"t{uuid.uuid4().hex[:6]}-admin"
    as_deployer = f"defaultNamespace: {namespace}\nserviceAccount: deployer\n"
    url = git_daemon.create_repo(
        repo_name,
        {
            "ok/fleet.yaml": as_deployer,
            "ok/cm.yaml": CM.format(v=1),
            "cr/fleet.yaml": as_deployer,
            "cr/role.yaml": CLUSTER_ROLE.format(name=role),
        },
    )
    edge = agent_process(flotilla, tmp_path / "edge", "edge", local_cluster.kubeconfig)
    with stopped_at_exit(edge):
        await flotilla.control.add_cluster(ns, "edge", None)
        await asyncio.to_thread(edge.start)
        await flotilla.control.apply_text(
            gitrepo_yaml(ns, "sa", url, targets=[{"clusterName": "edge"}]), file="g.yaml"
        )
        status = await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "sa"),
            lambda s: (
                len(s.bundles) == 2 and all(b.state in ("Ready", "ErrApplied") for b in s.bundles)
            ),
            timeout=300,
        )
        states = {b.name: b.state for b in status.bundles}
        assert states == {"sa-ok": "Ready", "sa-cr": "ErrApplied"}, status
        # The agent deployed as the ServiceAccount: within its Role, and nothing beyond it.
        (refused,) = (await flotilla.control.bundle_status(ns, "sa-cr")).clusters
        user = f"system:serviceaccount:{namespace}:deployer"
        assert f"forbidden: {user} cannot get clusterroles.rbac.authorization.k8s.io" in (
            refused.message
        ), refused.message
        assert "\n" not in refused.message
        with pytest.raises(urllib.error.HTTPError) as missing:
            local_cluster.request("GET", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}")
        assert missing.value.code == 404
        helm_secrets = local_cluster.request(
            "GET", f"/api/v1/namespaces/{namespace}/secrets?labelSelector=owner%3Dhelm,name%3Dsa-ok"
        )
        assert len(helm_secrets["items"]) == 1

        # A hand edit is seen by the agent's watcher: Modified within seconds.
        await asyncio.sleep(3)  # the watcher has read the release
        kube = Kube.from_kubeconfig(local_cluster.kubeconfig.read_text())
        try:
            kube.merge_patch("v1", "ConfigMap", namespace, "cfg", {"data": {"version": "edited"}})
        finally:
            kube.close()
        edited = time.monotonic()
        bundle = await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "sa-ok"),
            lambda s: s.state == "Modified",
            interval=0.5,
            timeout=MODIFIED_WITHIN,
        )
        seen_after = time.monotonic() - edited
        assert "/data/version" in bundle.clusters[0].message, bundle.clusters[0].message
        print(f"drift on the agent's cluster shown Modified after {seen_after:.1f}s")
        # The central worker watches nothing: the watch ran on the agent's own queue.
        assert not flotilla.worker.cluster_queues

        # A graceful stop hands the watch back at once (no wait for the shutdown grace).
        stopping = time.monotonic()
        await asyncio.to_thread(edge.stop)
        assert edge.proc is not None and edge.proc.returncode == 0
        assert time.monotonic() - stopping < 30

        # A commit while the agent is away waits for it: Offline, no deploy started for it
        # (nothing fails or retries), then exactly one new Helm revision when it is back.
        await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "sa-ok"),
            lambda s: s.clusters[0].state == "Offline",
            timeout=60,
        )

        async def calls(name: str) -> int:
            found, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "sa-ok"))
            return sum(c.name == name for c in found)

        # `sync` asks every cluster for a drift check: none is queued for the absent agent.
        checks = await calls("check_deployment")
        await flotilla.control.sync_gitrepo(ns, "sa")
        commit = git_daemon.commit(
            git_daemon.working_copy(repo_name), {"ok/cm.yaml": CM.format(v=2)}, message="v2"
        )
        waiting = await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "sa-ok"),
            lambda s: s.commit == commit and s.clusters[0].state == "Offline",
            timeout=120,
        )
        assert "agent stopped" in waiting.clusters[0].message, waiting.clusters[0]
        assert await calls("deploy_bundle") == 1
        assert await calls("check_deployment") == checks
        await asyncio.to_thread(edge.start)
        await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "sa-ok"),
            lambda s: s.commit == commit and s.state == "Ready",
            timeout=240,
        )
        history = helm_history(local_cluster.kubeconfig, "sa-ok", namespace)
        assert [h["revision"] for h in history] == [1, 2], history
        assert await calls("deploy_bundle") == 2


# A chart whose value comes from a SOPS-encrypted values file (decrypted by the agent).
SEALED_TOKEN = "agent-sealed-Q7v2"
# The busy agent's test: what the removed schedule-to-start timeout on an agent's queue was
# (the cluster_schedule_to_start_seconds switch), in seconds.
OLD_TIMEOUT = 0.3
SEALED_CHART = {
    "sealed/chart/Chart.yaml": "apiVersion: v2\nname: sealed\nversion: 0.1.0\n",
    "sealed/chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sealed}\n"
    "data: {token: {{ .Values.token | quote }}}\n",
}
# The agent takes one deploy at a time: six bundles make a backlog on its queue.
RAW_BUNDLES = 5


async def test_an_unconnected_agent_holds_work_and_a_busy_agent_is_never_offline(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    namespace: str,
    age_key: AgeKey,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cluster registered for an agent that never beat is Offline from the start ("last seen
    never"): its deploys wait, none is scheduled, nothing fails or retries, and its first beat
    releases them. With the agent at --threads 1 the six deploys queue longer than the old
    schedule-to-start switch, OLD_TIMEOUT (which before made such a wait "cluster offline"
    and a retry): each bundle is deployed once, with no failure. The SOPS age key lives only in the
    agent's secret store and appears in no history, log, CLI output or argv."""
    ns = flotilla.namespace
    files = {
        f"c{i}/cm.yaml": f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg{i}}}\n"
        for i in range(RAW_BUNDLES)
    }
    files |= {f"c{i}/fleet.yaml": f"defaultNamespace: {namespace}\n" for i in range(RAW_BUNDLES)}
    files["sealed/fleet.yaml"] = (
        f"defaultNamespace: {namespace}\nhelm:\n  chart: chart\n  valuesFiles: [secrets.yaml]\n"
    )
    files["sealed/secrets.yaml"] = sops_encrypt(
        locate("sops"), yaml.safe_dump({"token": SEALED_TOKEN}), age_key.recipient
    )
    url = git_daemon.create_repo(repo_name, {**files, **SEALED_CHART})
    bundles = [f"busy-c{i}" for i in range(RAW_BUNDLES)] + ["busy-sealed"]
    edge = agent_process(
        flotilla, tmp_path / "edge", "edge", local_cluster.kubeconfig, "--threads", "1"
    )
    FileSecretStore(tmp_path / "edge" / "secrets").put(
        ns, SOPS_AGE_SECRET, {"age.agekey": age_key.identity}
    )
    (secret_line,) = [k for k in age_key.identity.splitlines() if k.startswith("AGE-SECRET-KEY")]
    caplog.set_level("WARNING")
    cli_outputs: list[str] = []

    async def deploys() -> dict[str, list[ActivityCall]]:
        found = {}
        for bundle in bundles:
            calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, bundle))
            found[bundle] = [c for c in calls if c.name == "deploy_bundle"]
        return found

    with stopped_at_exit(edge):
        await flotilla.control.add_cluster(ns, "edge", None)
        (gitrepo,), _ = load_fleet_objects(
            gitrepo_yaml(ns, "busy", url, targets=[{"clusterName": "edge"}]),
            file="g.yaml",
        )
        assert isinstance(gitrepo, GitRepo)
        # The switch the old schedule-to-start timeout read, on the agent's queue: shorter
        # than the backlog of six deploys on one thread (each ~0.2 s since helm skips its
        # client-side OpenAPI pass; at 1 s the longest wait fell short of it once in CI).
        await flotilla.control.apply_gitrepo(
            gitrepo, cluster_schedule_to_start_seconds=OLD_TIMEOUT, retry_seconds=2
        )
        for bundle in bundles:
            status = await flotilla.eventually(
                lambda b=bundle: flotilla.control.bundle_status(ns, b),  # type: ignore[misc]
                lambda s: [c.state for c in s.clusters] == ["Offline"],
                timeout=240,
            )
            assert NEVER_CONNECTED in status.clusters[0].message, status.clusters[0]
        await asyncio.sleep(5)  # many times the old timeout: still held, nothing scheduled
        for bundle in bundles:
            held = await flotilla.control.bundle_status(ns, bundle)
            assert [c.state for c in held.clusters] == ["Offline"], held
        assert not any((await deploys()).values())
        listing = await asyncio.to_thread(cli, flotilla, "get", "clusters", "-n", ns)
        cli_outputs.append(listing)
        (row,) = [line for line in listing.splitlines() if line.startswith("edge ")]
        assert "<never>" in row and "Offline" in row, row

        await asyncio.to_thread(edge.start)
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "busy"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "6/6",
            timeout=420,
        )
        found = await deploys()
        for bundle, calls in found.items():
            assert len(calls) == 1, (bundle, calls)  # no retry
            assert calls[0].attempt == 1 and not calls[0].last_failure, calls[0]
        waits = [
            (c.started - c.scheduled).total_seconds()
            for calls in found.values()
            for c in calls
            if c.started is not None
        ]
        # The backlog was real: some deploy waited on the queue past the old timeout.
        assert max(waits) > OLD_TIMEOUT, waits
        print(f"longest queue wait on the busy agent {max(waits):.1f}s")
        sealed = local_cluster.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/sealed")
        assert sealed["data"]["token"] == SEALED_TOKEN
        cli_outputs.append(
            await asyncio.to_thread(cli, flotilla, "describe", "gitrepo", "busy", "-n", ns)
        )

    histories = []
    for prefix_ in ("registry", "gitrepo", "bundle"):
        query = f"WorkflowId STARTS_WITH '{prefix_}/{ns}'"
        async for wf in flotilla.client.list_workflows(query):
            handle = flotilla.client.get_workflow_handle(wf.id, run_id=wf.run_id)
            histories.append(history_text(await handle.fetch_history()))
    assert histories
    warnings = [r.getMessage() for r in caplog.records]
    offline = [w for w in [*histories, *warnings] if "cluster offline" in w]
    assert not offline, offline[:1]
    # The age key is only in the agent's own store: nowhere else.
    texts = [*histories, *cli_outputs, *warnings, edge.log.read_text(), " ".join(edge.argv)]
    for secret in (secret_line, SEALED_TOKEN):
        leaks = [i for i, text in enumerate(texts) if secret in text]
        assert not leaks, f"a secret appears in {len(leaks)} outputs"
    assert SOPS_AGE_SECRET not in {s.name for s in flotilla.worker.secrets.list(ns)}
