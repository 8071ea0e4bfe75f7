"""Fleet's create-1-gitrepo-50-bundle, widened to 3 clusters: flotilla vs bare ``helm --wait``.

Everything is real: a Temporal server (the dev server; ``--temporal postgres`` the
production-shaped one on PostgreSQL, ``--temporal dev,postgres`` both in one run), a git
daemon, 3 local clusters (1 kwok node each, kwok makes pods Ready) and the flotilla worker as a
subprocess (``python worker.py``) with the real deploy activities. The repo holds 50 raw-YAML
bundles of 10 objects (a Deployment, a Service, eight ConfigMaps). Timed from ``flotilla
apply`` of a GitRepo targeting all clusters (the commit is already pushed, so this is commit →
deployed) to 150/150 bundle deployments Ready (status polled every 0.5 s); flotilla's Ready
means the release is installed and its objects are ready (Deployment available), so the
baseline is ``helm upgrade --install --wait`` of the same generated charts, 150 releases on a
thread pool as wide as the worker's cluster concurrency × 3. Both sides run the pinned helm
(Helm 4, ``devenv/tools.py``; its bare ``--wait`` is the status watcher), and the run prints
the version it used. Each run uses fresh namespaces
(and a fresh flotilla namespace and worker), left on the clusters afterwards unless
``--empty-between-runs`` deletes them (not timed; it did not stop the flotilla side's
run-by-run growth, bench/RESULTS.md); the side that goes first alternates. Run:

    .venv/bin/python bench/bench_fleet.py --runs 3
    .venv/bin/python bench/bench_fleet.py --runs 3 --sides flotilla,remote   # issue 10
    .venv/bin/python bench/bench_fleet.py --runs 3 --sides flotilla --temporal dev,postgres

Each flotilla run also prints the Temporal server's own throughput over the rollout (workflow
tasks and activities completed per second, from its Prometheus metrics).

``remote`` runs the same flotilla side on the multi-host backends: Secrets in a management
cluster (etcd and an API server) and content in an htpasswd registry, and reports the extra
requests per deployment to each.

Each side also prints its API requests to the clusters per deployment (helm's and
flotilla's, from the clusters' audit logs), and the bare side the CPU of its helm processes
(the flotilla side prints its worker's, also over the rollout alone, and the Temporal
server's over the rollout). ``--breakdown`` adds the lead-in from the apply to the first
deploy (the GitRepo's activities and the first plan, seconds after the apply), the deploys'
timeline per cluster and the bundle history's events by type.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import yaml
from apiaudit import by_client, requests_in
from bench_deploy import bundle_for, objects

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporal_kinds import ServerThroughput, add_temporal_argument, temporal_kinds, temporal_server

from activities.kubesecrets import KubernetesSecretStore
from activities.render import customize_options, render_bundle
from activities.secrets import FileSecretStore, SecretStore
from devenv import tools
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from devenv.registry import BASIC_PASSWORD, BASIC_USER, LocalRegistry, htpasswd_auth
from devenv.temporal import TemporalDevServer, TemporalServer
from flotilla.chart import wrap_manifests
from flotilla.ids import bundle_workflow_id, gitrepo_workflow_id
from flotilla.settings import TemporalSettings
from flotilla.targeting import ClusterInfo
from runtime.temporal import connect
from starters.control import Control
from tests.e2e.harness import ActivityCall, activity_calls, gitrepo_yaml

BUNDLES = 50
CLUSTERS = 3
CLUSTER_CONCURRENCY = 4
ROOT = Path(__file__).resolve().parents[1]


def load() -> str:
    return os.getloadavg().__repr__()


def tool_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([*(str(d) for d in tools.bin_dirs()), os.environ["PATH"]])
    return {**os.environ, "PATH": path, **extra}


@dataclass
class Remote:
    """The stores a multi-host installation uses: Secrets in a management cluster (etcd and an
    API server only) and content in an htpasswd registry that logs each request."""

    management: LocalCluster
    registry: LocalRegistry

    def env(self, tag: str) -> dict[str, str]:
        return {
            "FLOTILLA_SECRET_BACKEND": "kubernetes",
            "FLOTILLA_MANAGEMENT_KUBECONFIG": str(self.management.kubeconfig),
            "FLOTILLA_SYSTEM_NAMESPACE": f"fl-{tag}",
            "FLOTILLA_CONTENT_BACKEND": "oci",
            "FLOTILLA_CONTENT_REGISTRY": f"{self.registry.host}/flotilla/content-{tag}",
            "FLOTILLA_CONTENT_REGISTRY_SECRET": "content-registry",
            "FLOTILLA_CONTENT_REGISTRY_INSECURE": "true",
        }

    def prepare(self, tag: str) -> KubernetesSecretStore:
        """The run's namespace in the management cluster and the registry's credentials."""
        namespace = f"fl-{tag}"
        self.management.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        store = KubernetesSecretStore(self.management.kubeconfig)
        store.put(
            namespace,
            "content-registry",
            {"username": BASIC_USER, "password": BASIC_PASSWORD},
        )
        return store

    def counts(self) -> tuple[int, int]:
        """Requests so far: to the registry (access log lines) and to the management API
        for Secrets (its own apiserver_request_total)."""
        registry = sum(
            1
            for line in (self.registry.dir / "registry.log").read_text().splitlines()
            if '"GET /v2/' in line
            or '"HEAD /v2/' in line
            or '"PUT /v2/' in line
            or '"POST /v2/' in line
            or '"PATCH /v2/' in line
            or '"DELETE /v2/' in line
        )
        metrics = self.management.raw_request("GET", "/metrics").decode()
        secrets = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("apiserver_request_total{") and 'resource="secrets"' in line
        )
        return registry, int(secrets)


def start_worker(
    address: str, root: Path, namespaces: list[str], *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """The real worker, ``python worker.py``, logging to ``root/worker.log``."""
    root.mkdir(parents=True, exist_ok=True)
    env = tool_env(
        TEMPORAL_ADDRESS=address,
        FLOTILLA_SECRETS_DIR=str(root.parent / "secrets"),
        FLOTILLA_CONTENT_DIR=str(root / "content"),
        **(env or {}),
    )
    argv = [sys.executable, str(ROOT / "worker.py"), "--workdir", str(root / "work"), *extra]
    for namespace in namespaces:
        argv += ["--namespace", namespace]
    log = (root / "worker.log").open("wb")
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def _after(moment: datetime | None, applied: float) -> str:
    """Seconds from the apply to a history event's time (naive UTC, as histories give it)."""
    if moment is None:
        return "-"
    return f"{moment.replace(tzinfo=UTC).timestamp() - applied:.2f}"


def print_lead_in(
    gitrepo: list[ActivityCall], first_bundle: list[ActivityCall], applied: float
) -> None:
    """What runs between the apply and the first deploy: the GitRepo's activities up to the
    first sync_bundles, then the first bundle's plan (scheduled/started/completed, seconds
    after the apply)."""
    steps = []
    for call in gitrepo:
        steps.append(call)
        if call.name.startswith("sync_bundles"):  # sync_bundles or sync_bundles_shared
            break
    steps += [c for c in first_bundle if c.name == "plan_bundle"][:1]
    print(
        "    lead-in: "
        + "; ".join(
            f"{c.name} {_after(c.scheduled, applied)}/{_after(c.started, applied)}/"
            f"{_after(c.completed, applied)}"
            for c in steps
        ),
        flush=True,
    )


def print_timeline(deploys: list[ActivityCall], applied: float) -> None:
    """When the deploy activities ran: how long after the apply (``applied``, epoch seconds)
    the first was scheduled and started, queueing before a thread took them, and run time."""
    first = min(c.scheduled for c in deploys)
    print(
        f"    apply -> first deploy_bundle scheduled {_after(first, applied)} s, started "
        f"{_after(min(c.started for c in deploys if c.started), applied)} s; all "
        f"{len(deploys)} scheduled by {_after(max(c.scheduled for c in deploys), applied)} s",
        flush=True,
    )
    waits = [(c.started - c.scheduled).total_seconds() for c in deploys if c.started]
    runs = [(c.completed - c.started).total_seconds() for c in deploys if c.started and c.completed]
    last = max(c.completed for c in deploys if c.completed)
    print(
        f"    deploy_bundle: {len(deploys)} calls from the first schedule to the last completion "
        f"{(last - first).total_seconds():.1f} s; waiting for a thread median "
        f"{statistics.median(waits):.1f} s; running median {statistics.median(runs):.1f} s, "
        f"sum {sum(runs):.0f} s",
        flush=True,
    )
    # Per cluster: from its first deploy's start to its last's end, and how many ran at once
    # on average (the time the calls held a worker thread, slot waits included, over that).
    by_cluster: dict[str, list[ActivityCall]] = {}
    for call in deploys:
        by_cluster.setdefault(str(call.input.get("cluster_name", "")), []).append(call)
    for cluster, calls in sorted(by_cluster.items()):
        done = [c for c in calls if c.started and c.completed]
        begin = min(c.started for c in done if c.started)
        end = max(c.completed for c in done if c.completed)
        span = (end - begin).total_seconds()
        held = sum(
            (c.completed - c.started).total_seconds() for c in done if c.started and c.completed
        )
        print(
            f"    cluster {cluster} ({calls[0].task_queue}): {len(calls)} deploys over "
            f"{span:.1f} s, {held / span if span else 0:.1f} at once on average",
            flush=True,
        )


def print_api_requests(clusters: list[LocalCluster], start: float, end: float) -> None:
    """API requests of helm and flotilla to the clusters in the window, per deployment (the
    clusters' audit logs; their own controllers and kwok are left out)."""
    found: Counter[str] = Counter()
    for cluster in clusters:
        found.update(requests_in(cluster.audit_log, start, end))
    total = BUNDLES * len(clusters)
    clients = ", ".join(f"{who} {count / total:.1f}" for who, count in by_client(found).items())
    print(f"    API requests per deployment: {clients or 'none'}", flush=True)


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of a process (with ``children``: of its reaped children instead)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime, stime, cutime, cstime are fields 14 to 17.
    first = 13 if children else 11
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(server: TemporalDevServer | TemporalServer) -> float:
    """CPU the Temporal server process has used so far (0 when it is not a child of ours)."""
    process = server.process
    if process is None or process.popen is None:
        return 0.0
    return cpu_seconds(process.popen.pid)


def wait_for_log(path: Path, text: str, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while path.read_text().count(text) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path}: no {count}x {text!r} within {timeout}s")
        time.sleep(0.2)


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


async def flotilla_run(
    tag: str,
    server: TemporalDevServer | TemporalServer,
    git: GitDaemon,
    clusters: list[LocalCluster],
    root: Path,
    *,
    breakdown: bool = False,
    logs: Path | None = None,
    remote: Remote | None = None,
) -> tuple[float, float, dict[str, float]]:
    """One run: returns (seconds to all Ready, bundle history events per deployment, the
    server's completions per second); with ``remote``, on the kubernetes secret and oci content
    backends."""
    namespace = f"fl-{tag}"
    files: dict[str, str | bytes] = {}
    for index in range(BUNDLES):
        files[f"b{index}/app.yaml"] = yaml.safe_dump_all(objects(index))
        files[f"b{index}/fleet.yaml"] = yaml.safe_dump({"defaultNamespace": f"{tag}-b{index}"})
    url = git.create_repo(f"bench-{tag}", files)
    client = await connect(TemporalSettings(address=server.address))
    secrets: SecretStore = FileSecretStore(root / "secrets")
    if remote is not None:
        secrets = remote.prepare(tag)
    control = Control(client, secrets=secrets)
    worker = start_worker(
        server.address,
        root / tag,
        [namespace],
        "--refresh-seconds",
        "1",
        "--cluster-concurrency",
        str(CLUSTER_CONCURRENCY),
        env=remote.env(tag) if remote is not None else None,
    )
    try:
        # The registry's updates need a running worker, so the clusters are added after it.
        for cluster in clusters:
            await control.add_cluster(namespace, cluster.name, cluster.kubeconfig.read_text())
        wait_for_log(root / tag / "worker.log", "serving push-mode cluster", len(clusters))
        total = BUNDLES * len(clusters)
        before = remote.counts() if remote is not None else (0, 0)
        throughput = ServerThroughput(server.metrics_url)
        throughput.start()
        server_cpu, worker_cpu = server_cpu_seconds(server), cpu_seconds(worker.pid)
        started, window_start = time.monotonic(), time.time()
        await control.apply_text(
            gitrepo_yaml(namespace, "bench", url, targets=[{"clusterSelector": {}}]),
            file="g.yaml",
        )
        deadline = started + 1800
        while True:
            try:
                status = await control.gitrepo_status(namespace, "bench")
                if status.ready_bundle_deployments == f"{total}/{total}" and (
                    status.state == "Ready"
                ):
                    break
            except Exception:  # not started yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not Ready after 1800 s: {status!r}")
            await asyncio.sleep(0.5)
        seconds = time.monotonic() - started
        print_api_requests(clusters, window_start, time.time())
        rates = throughput.stop()
        print(f"    {throughput.line()}", flush=True)
        if remote is not None:
            after = remote.counts()
            print(
                f"    per deployment: {(after[0] - before[0]) / total:.1f} registry requests, "
                f"{(after[1] - before[1]) / total:.1f} management API requests for Secrets",
                flush=True,
            )
        own, children = cpu_seconds(worker.pid), cpu_seconds(worker.pid, children=True)
        print(
            f"    worker CPU: {own:.1f} s python ({own - worker_cpu:.1f} s of it over the "
            f"rollout), {children:.1f} s helm and other children; Temporal server CPU over the "
            "rollout "
            f"{server_cpu_seconds(server) - server_cpu:.1f} s",
            flush=True,
        )
        by_type: Counter[str] = Counter()
        deploys: list[ActivityCall] = []
        bundles: list[list[ActivityCall]] = []
        for index in range(BUNDLES):
            calls, counts = await activity_calls(
                client, bundle_workflow_id(namespace, f"bench-b{index}")
            )
            bundles.append(calls)
            by_type.update(counts)
            deploys += [c for c in calls if c.name == "deploy_bundle"]
        events = sum(by_type.values())
        if breakdown:
            lead, _ = await activity_calls(client, gitrepo_workflow_id(namespace, "bench"))
            first_bundle = min(
                (b for b in bundles if any(c.name == "plan_bundle" for c in b)),
                key=lambda b: min(c.scheduled for c in b if c.name == "plan_bundle"),
            )
            print_lead_in(lead, first_bundle, window_start)
            print_timeline(deploys, window_start)
            for name, count in by_type.most_common():
                print(f"    {count / total:5.2f} per deployment  {name}", flush=True)
        for prefix in ("gitrepo", "bundle", "registry"):
            query = f"WorkflowId STARTS_WITH '{prefix}/{namespace}' AND ExecutionStatus = 'Running'"
            async for wf in client.list_workflows(query):
                await client.get_workflow_handle(wf.id).terminate("benchmark finished")
        return seconds, events / total, rates
    finally:
        stop_worker(worker)
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / tag / "worker.log", logs / f"worker-{tag}.log")


def helm_install(kubeconfig: Path, release: str, namespace: str, chart: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        [
            "helm",
            "upgrade",
            release,
            str(chart),
            "--install",
            "--wait",
            "--timeout",
            "10m",
            "--namespace",
            namespace,
            "--create-namespace",
            "--kubeconfig",
            str(kubeconfig),
        ],
        check=True,
        capture_output=True,
        env=tool_env(),
    )
    return time.monotonic() - started


def empty_clusters(clusters: list[LocalCluster], tag: str, timeout: float = 300.0) -> float:
    """Delete the run's namespaces (its releases, their records and objects) on every cluster
    and wait until they are gone, so that the next run starts from the same clusters
    (``--empty-between-runs``). Not timed. Returns the seconds it took."""
    started = time.monotonic()
    names = [f"{tag}-b{index}" for index in range(BUNDLES)]
    for cluster in clusters:
        for name in names:
            with contextlib.suppress(urllib.error.HTTPError):
                cluster.request("DELETE", f"/api/v1/namespaces/{name}")
    for cluster in clusters:
        for name in names:
            while True:
                try:
                    cluster.request("GET", f"/api/v1/namespaces/{name}")
                except urllib.error.HTTPError as err:
                    if err.code == 404:
                        break
                    raise
                if time.monotonic() - started > timeout:
                    raise RuntimeError(f"namespace {name} on {cluster.name} not gone")
                time.sleep(0.5)
    return time.monotonic() - started


def helm_run(tag: str, clusters: list[LocalCluster], root: Path, parallel: int) -> float:
    jobs = []
    for cluster in clusters:
        info = ClusterInfo(name=cluster.name, namespace="fleet-default")
        for index in range(BUNDLES):
            namespace = f"{tag}-b{index}"
            bundle = bundle_for(index, namespace)
            options = customize_options(bundle, info)
            rendered = render_bundle(bundle, info, workdir=root / "render", options=options)
            chart = root / "charts" / tag / cluster.name / str(index)
            for relative, data in wrap_manifests(
                bundle.name, rendered.manifests, version="v1"
            ).items():
                (chart / relative).parent.mkdir(parents=True, exist_ok=True)
                (chart / relative).write_bytes(data)
            jobs.append(partial(helm_install, cluster.kubeconfig, bundle.name, namespace, chart))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, window_start = time.monotonic(), time.time()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        durations = [future.result() for future in [pool.submit(job) for job in jobs]]
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    print(
        f"    helm --wait: running median {statistics.median(durations):.1f} s, "
        f"sum {sum(durations):.0f} s; helm CPU {cpu:.1f} s ({len(jobs)} processes)",
        flush=True,
    )
    print_api_requests(clusters, window_start, time.time())
    return elapsed


async def main_async(
    runs: int,
    sides_wanted: list[str],
    kinds: list[str],
    *,
    breakdown: bool,
    logs: Path | None,
    empty_between_runs: bool = False,
) -> None:
    os.environ["PATH"] = tool_env()["PATH"]
    version = subprocess.run(["helm", "version", "--short"], capture_output=True, text=True)
    print(f"helm {version.stdout.strip()} on both sides", flush=True)
    parallel = CLUSTER_CONCURRENCY * CLUSTERS
    # Per Temporal server: flotilla's seconds, the remote side's, events per deployment and
    # the server's own rates; bare helm uses no Temporal and runs once per run.
    ours: dict[str, list[float]] = {kind: [] for kind in kinds}
    theirs: dict[str, list[float]] = {kind: [] for kind in kinds}
    per_deployment: dict[str, list[float]] = {kind: [] for kind in kinds}
    rates: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    bare: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        clusters = [
            LocalCluster(f"c{n}", root / f"cluster{n}", nodes=1, audit=True)
            for n in range(CLUSTERS)
        ]
        remote: Remote | None = None
        if "remote" in sides_wanted:
            remote = Remote(
                LocalCluster("mgmt", root / "mgmt", workloads=False),
                LocalRegistry(
                    root / "registry", auth=htpasswd_auth(root / "registry"), access_log=True
                ),
            )
        with GitDaemon(root / "git") as git:
            try:
                for cluster in clusters:
                    cluster.start()
                if remote is not None:
                    remote.management.start()
                    remote.registry.start()
                for kind in kinds:
                    with temporal_server(kind, root / f"temporal-{kind}") as server:
                        for run in range(runs):
                            sides = (
                                ["helm", "remote", "flotilla"]
                                if run % 2
                                else ["flotilla", "remote", "helm"]
                            )
                            for side in [s for s in sides if s in sides_wanted]:
                                if side == "helm" and kind != kinds[0]:
                                    continue
                                tag = f"{kind[0]}{side[0]}r{run}"
                                before = load()
                                if side in ("flotilla", "remote"):
                                    seconds, events, rate = await flotilla_run(
                                        tag,
                                        server,
                                        git,
                                        clusters,
                                        root,
                                        breakdown=breakdown,
                                        logs=logs,
                                        remote=remote if side == "remote" else None,
                                    )
                                    (ours if side == "flotilla" else theirs)[kind].append(seconds)
                                    per_deployment[kind].append(events)
                                    rates[kind].append(rate)
                                    extra = f", {events:.1f} bundle events per deployment"
                                else:
                                    seconds = helm_run(tag, clusters, root, parallel)
                                    bare.append(seconds)
                                    extra = ""
                                print(
                                    f"run {run + 1} {side:8s} on {kind}: {seconds:6.1f}s{extra} "
                                    f"(load before {before}, after {load()})",
                                    flush=True,
                                )
                                if not empty_between_runs:
                                    continue
                                emptied = empty_clusters(clusters, tag)
                                print(f"    clusters emptied in {emptied:.1f} s", flush=True)
            finally:
                for cluster in clusters:
                    cluster.stop()
                if remote is not None:
                    remote.management.stop()
                    remote.registry.stop()
    print()
    print(
        f"{BUNDLES} bundles x {CLUSTERS} clusters = {BUNDLES * CLUSTERS} deployments, "
        f"parallel {parallel}, median of {runs} runs"
    )
    for kind in kinds:
        if ours[kind]:
            print(
                f"flotilla on {kind} Temporal (apply -> 150/150 Ready): "
                f"{statistics.median(ours[kind]):6.1f}s  {ours[kind]}"
            )
        if per_deployment[kind]:
            print(
                f"  bundle history events per deployment: "
                f"{statistics.median(per_deployment[kind]):.1f}"
            )
            for what in rates[kind][0]:
                values = [r[what] for r in rates[kind]]
                print(
                    f"  server {what}/s: {statistics.median(values):.1f} "
                    f"({' '.join(f'{v:.1f}' for v in values)})"
                )
        if theirs[kind]:
            print(
                f"flotilla on {kind} Temporal, kubernetes secrets + oci content: "
                f"{statistics.median(theirs[kind]):6.1f}s  {theirs[kind]}"
            )
        if ours[kind] and bare:
            print(f"  ratio to helm {statistics.median(ours[kind]) / statistics.median(bare):.2f}")
        if ours[kind] and theirs[kind]:
            ratio = statistics.median(theirs[kind]) / statistics.median(ours[kind])
            print(f"  ratio remote/file backends {ratio:.2f}")
    if bare:
        print(f"helm upgrade --install --wait:     {statistics.median(bare):6.1f}s  {bare}")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--sides",
        default="flotilla,helm",
        help="comma-separated: flotilla (file backends), remote (kubernetes secrets in a "
        "management cluster + oci content in a registry), helm (bare helm --wait)",
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="print bundle history events by type"
    )
    parser.add_argument("--logs", type=Path, help="keep each run's worker log in this folder")
    parser.add_argument(
        "--empty-between-runs",
        action="store_true",
        help="delete each run's namespaces (releases, records, objects) from the clusters "
        "before the next run, so every run starts from the same clusters (not timed)",
    )
    add_temporal_argument(parser)
    args = parser.parse_args()
    kinds = temporal_kinds(parser, args.temporal)
    # SIGTERM unwinds like Ctrl-C, so the worker subprocess and clusters are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sides = [side.strip() for side in args.sides.split(",")]
    unknown = set(sides) - {"flotilla", "remote", "helm"}
    if unknown:
        parser.error(f"--sides: unknown {sorted(unknown)}")
    asyncio.run(
        main_async(
            args.runs,
            sides,
            kinds,
            breakdown=args.breakdown,
            logs=args.logs,
            empty_between_runs=args.empty_between_runs,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
