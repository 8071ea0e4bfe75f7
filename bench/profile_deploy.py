"""What one bundle deployment costs: flotilla's deploy activity vs bare ``helm --wait``.

Load-independent counts per deployment, on one local cluster whose API server keeps an audit
log: child processes started (a ``subprocess.Popen`` audit hook), their CPU time
(``RUSAGE_CHILDREN`` deltas), this process's own CPU (flotilla's Python; the API server and
the cluster are other processes), API requests by client (the audit log's user agent, within
the deployment's time window) and verb, and wall time per phase of flotilla's deploy.

Both sides deploy the same raw-YAML bundles (a Deployment, a Service, eight ConfigMaps), one
at a time so that every delta belongs to one deployment: first an install, then an upgrade
that changes one ConfigMap. flotilla runs ``deploy_bundle`` with ``wait_ready_seconds=30``
(what the bundle workflow asks: apply, then wait for Ready in the same activity) as a push-mode
worker runs it (the push queues' wrapper: the apply on an engine thread, the wait on a
watcher thread; phases "apply" and "readiness wait"); the bare
side runs ``helm upgrade --install --wait`` (Helm 4's status watcher) of the same generated
chart, as ``bench_fleet.py`` does. Run:

    .venv/bin/python bench/profile_deploy.py --bundles 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from apiaudit import requests_in
from bench_deploy import CLUSTER, objects
from temporalio.testing import ActivityEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import activities.deploy as deploy_module
from activities.content import FileContentStore
from activities.deploy import DeployActivities
from activities.deploy_models import DeployRequest, ReleaseRef
from activities.helm import Helm
from activities.pushqueue import PushDeployActivities
from activities.render import customize_options, render_bundle
from activities.secrets import FileSecretStore, kubeconfig_secret_name
from devenv import tools
from devenv.cluster import LocalCluster
from flotilla.bundles import Bundle, FileListing, read_bundles
from flotilla.chart import wrap_manifests
from flotilla.deployment import DeploymentOptions

# Child processes started by this process, by program name (the audit hook counts them).
_spawned: Counter[str] = Counter()
_spawn_lock = threading.Lock()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "subprocess.Popen":
        with _spawn_lock:
            _spawned[Path(str(args[0])).name] += 1


@dataclass
class Sample:
    """One deployment's costs."""

    wall: float = 0.0
    children: Counter[str] = field(default_factory=Counter)
    child_cpu: float = 0.0
    own_cpu: float = 0.0
    phases: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    requests: Counter[str] = field(default_factory=Counter)
    window: tuple[float, float] = (0.0, 0.0)


_phases: dict[str, float] = defaultdict(float)


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _phases[name] += time.perf_counter() - started

    return wrapper


def instrument() -> None:
    """Time the phases of flotilla's deploy (wrapping the functions it calls)."""
    for name in ("read_history", "_read_values_from", "_applied_server_side"):
        setattr(deploy_module, name, _timed(name, getattr(deploy_module, name)))
    cls = DeployActivities
    cls._preflight = _timed("preflight", cls._preflight)  # type: ignore[method-assign]
    cls._kubeconfig = _timed("kubeconfig", cls._kubeconfig)  # type: ignore[method-assign]
    cls._prepare_chart = _timed("render + chart", cls._prepare_chart)  # type: ignore[method-assign]
    cls.apply_bundle = _timed("apply", cls.apply_bundle)  # type: ignore[method-assign]
    cls._bundle = _timed("content", cls._bundle)  # type: ignore[method-assign]
    cls._options = _timed("content", cls._options)  # type: ignore[method-assign]
    Helm.upgrade_install = _timed("helm upgrade", Helm.upgrade_install)  # type: ignore[method-assign]


@contextmanager
def measured(sample: Sample) -> Iterator[None]:
    _phases.clear()
    with _spawn_lock:
        spawned_before = Counter(_spawned)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    own_before = time.process_time()
    wall_before, started = time.time(), time.perf_counter()
    yield
    sample.wall = time.perf_counter() - started
    sample.own_cpu = time.process_time() - own_before
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sample.child_cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    with _spawn_lock:
        sample.children = _spawned - spawned_before
    sample.phases = dict(_phases)
    if "apply" in sample.phases:  # flotilla's: the rest of its wall is the wait for Ready
        sample.phases["readiness wait"] = sample.wall - sample.phases["apply"]
    sample.window = (wall_before, time.time())


def bundle(index: int, namespace: str, version: int) -> Bundle:
    found = objects(index)
    if version > 1:  # the upgrade changes one ConfigMap
        found[2]["data"] = {"key": f"value-{index}-v{version}"}
    files = {
        f"b{index}/app.yaml": yaml.safe_dump_all(found).encode(),
        f"b{index}/fleet.yaml": yaml.safe_dump({"defaultNamespace": namespace}).encode(),
    }
    (result,) = read_bundles(
        FileListing(files=files), gitrepo_name="bench", paths=[f"b{index}"]
    ).bundles
    return result


class FlotillaSide:
    def __init__(self, cluster: LocalCluster, root: Path) -> None:
        secrets = FileSecretStore(root / "secrets")
        secrets.put(
            CLUSTER.namespace,
            kubeconfig_secret_name(CLUSTER.name),
            {"value": cluster.kubeconfig.read_text()},
        )
        self.content = FileContentStore(root / "content")
        self.activities = DeployActivities(secrets, self.content, root / "work")
        self.push = PushDeployActivities(self.activities, per_cluster=1, threads=1, watchers=1)
        self.revisions: dict[str, ReleaseRef] = {}

    def deploy(self, index: int, namespace: str, version: int) -> None:
        found = bundle(index, namespace, version)
        options = customize_options(found, CLUSTER)
        assert options is not None
        payload = DeploymentOptions(options=options, cluster=CLUSTER)
        request = DeployRequest(
            gitrepo="bench",
            bundle_name=found.name,
            cluster_namespace=CLUSTER.namespace,
            cluster_name=CLUSTER.name,
            deployment_id=f"v{version}",
            bundle_digest=self.content.put_bundle(found),
            options_digest=self.content.put(payload.model_dump_json().encode()),
            previous_release=self.revisions.get(namespace),
            wait_ready_seconds=30.0,
        )
        # As the worker runs a push-mode deploy: the apply on a thread of the push queues'
        # wrapper, the wait for Ready on the event loop.
        result = asyncio.run(ActivityEnvironment().run(self.push.deploy_bundle, request))
        assert result.status is not None and result.status.ready, result
        self.revisions[namespace] = result.release


class HelmSide:
    def __init__(self, cluster: LocalCluster, root: Path) -> None:
        self.cluster = cluster
        self.root = root

    def chart(self, index: int, namespace: str, version: int) -> tuple[str, Path]:
        found = bundle(index, namespace, version)
        options = customize_options(found, CLUSTER)
        rendered = render_bundle(found, CLUSTER, workdir=self.root / "render", options=options)
        chart = self.root / "charts" / namespace / str(version)
        for relative, data in wrap_manifests(
            found.name, rendered.manifests, version=f"v{version}"
        ).items():
            (chart / relative).parent.mkdir(parents=True, exist_ok=True)
            (chart / relative).write_bytes(data)
        return found.name, chart

    def deploy(self, release: str, chart: Path, namespace: str) -> None:
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
                str(self.cluster.kubeconfig),
            ],
            check=True,
            capture_output=True,
        )


def count_requests(audit_log: Path, samples: list[Sample]) -> None:
    """Attribute each audited request of helm or flotilla to the deployment it fell in."""
    for sample in samples:
        start, end = sample.window
        sample.requests = requests_in(audit_log, start, end)


def report(name: str, samples: list[Sample]) -> None:
    n = len(samples)
    print(f"  {name} ({n} deployments, per deployment; medians of wall and CPU):")
    print(f"    wall {statistics.median(s.wall for s in samples):.2f} s")
    children: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    for s in samples:
        children.update(s.children)
        requests.update(s.requests)
    spawned = ", ".join(f"{k} {v / n:.1f}" for k, v in children.most_common()) or "none"
    print(f"    child processes: {sum(children.values()) / n:.1f} ({spawned})")
    print(f"    child CPU {statistics.median(s.child_cpu for s in samples):.3f} s")
    print(f"    own (Python) CPU {statistics.median(s.own_cpu for s in samples):.3f} s")
    print(f"    API requests: {sum(requests.values()) / n:.1f}")
    for what, count in sorted(requests.items()):
        print(f"      {count / n:5.1f}  {what}")
    phases: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        for phase, seconds in s.phases.items():
            phases[phase].append(seconds)
    for phase, values in sorted(phases.items(), key=lambda item: -statistics.median(item[1])):
        print(f"    phase {phase:22s} {statistics.median(values) * 1000:7.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=int, default=10)
    parser.add_argument(
        "--latencies",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write flotilla's deploy times (seconds, install and upgrade) to FILE as "
        "JSON: the distribution bench_gitops.py --latencies gives its stand-in deploys",
    )
    args = parser.parse_args()
    # Only helm and the cluster's binaries are needed (not sops or Temporal).
    found = {tools.locate(binary).parent for binary in ("helm", "kube-apiserver", "kwok", "etcd")}
    os.environ["PATH"] = os.pathsep.join([*(str(d) for d in sorted(found)), os.environ["PATH"]])
    helm = subprocess.run(["helm", "version", "--short"], capture_output=True, text=True)
    print(f"helm {helm.stdout.strip()}")
    instrument()
    sys.addaudithook(_audit)
    results: dict[str, list[Sample]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="profile-deploy-") as tmp:
        root = Path(tmp)
        with LocalCluster("profile", root / "cluster", nodes=1, audit=True) as cluster:
            ours, bare = FlotillaSide(cluster, root), HelmSide(cluster, root)
            # One of each first, not counted: discovery caches, imports, TLS connections.
            ours.deploy(999, "warm-f", 1)
            bare.deploy(*bare.chart(999, "warm-h", 1), "warm-h")
            for version, step in ((1, "install"), (2, "upgrade")):
                for index in range(args.bundles):
                    sides = ["helm", "flotilla"] if index % 2 else ["flotilla", "helm"]
                    for side in sides:
                        namespace = f"{side[0]}-{index}"
                        sample = Sample()
                        if side == "flotilla":
                            with measured(sample):
                                ours.deploy(index, namespace, version)
                        else:
                            release, chart = bare.chart(index, namespace, version)
                            with measured(sample):
                                bare.deploy(release, chart, namespace)
                        results[f"{side} {step}"].append(sample)
                        # A gap between deployments, so the audit log's times attribute each
                        # request to the right one.
                        time.sleep(0.3)
            time.sleep(1.0)  # the last requests reach the audit log
            count_requests(cluster.audit_log, [s for v in results.values() for s in v])
    load = os.getloadavg()[0]
    print(f"load {load:.1f}")
    for name in ("flotilla install", "helm install", "flotilla upgrade", "helm upgrade"):
        report(name, results[name])
    if args.latencies is not None:
        measured_with = " ".join(["bench/profile_deploy.py", *sys.argv[1:]])
        args.latencies.write_text(
            json.dumps(
                {
                    "about": "wall seconds of flotilla's deploy_bundle (wait_ready_seconds 30, as "
                    "the bundle workflow asks) through the push queues' wrapper, one deployment "
                    "at a time on one local cluster: a raw bundle of 10 objects (a Deployment, "
                    "a Service, eight ConfigMaps); *_wait: the part of each spent waiting for "
                    "Ready (on the event loop, no thread)",
                    "command": measured_with,
                    "helm": helm.stdout.strip(),
                    "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "load_after": round(load, 1),
                    "install": [round(s.wall, 3) for s in results["flotilla install"]],
                    "upgrade": [round(s.wall, 3) for s in results["flotilla upgrade"]],
                    "install_wait": [
                        round(s.phases["readiness wait"], 3) for s in results["flotilla install"]
                    ],
                    "upgrade_wait": [
                        round(s.phases["readiness wait"], 3) for s in results["flotilla upgrade"]
                    ],
                },
                indent=1,
            )
            + "\n"
        )
        print(f"deploy times written to {args.latencies}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
