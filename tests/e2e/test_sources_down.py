"""Servers flotilla needs, down: each shows in `get` and `describe` with its state and a
one-line reason naming its address, and clears by itself when it comes back.

- A chart source (a Helm repository, an OCI registry): the deploy is ErrApplied; the deploy's
  retry (``RETRY_DELAY``) pulls the chart again.
- The management API (the ``kubernetes`` secret backend's API server): no cluster's
  kubeconfig can be read, so every cluster is Offline within two probe intervals; the next
  probe after it answers again clears it.

Real components: the Temporal dev server, the git daemon, the local cluster, Helm, the
management cluster's API server, a real registry process (``devenv.registry``, stopped and
started on the same port), and a chart repository served over HTTP. The Helm repository and
the management API sit behind a TCP forwarder (``devenv.forward``) that is closed and opened
again, as for a stopped server (they are shared by other tests and cannot be stopped).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client

from devenv.cluster import LocalCluster
from devenv.forward import TcpForwarder, ThreadedForwarder
from devenv.gitserver import GitDaemon
from devenv.registry import LocalRegistry
from flotilla.bundledeployment import RETRY_DELAY
from starters.tables import (
    bundle_table,
    cluster_table,
    describe_bundle,
    describe_cluster,
    describe_gitrepo,
    gitrepo_table,
)
from tests.charts import package_chart, serve_charts, write_chart
from tests.conftest import locate
from tests.e2e.harness import Flotilla, start_flotilla, table_row
from tests.secrets.conftest import create_namespace

# The first deploy fails at once; it is tried again RETRY_DELAY after, and then deploys.
CLEARS_WITHIN = RETRY_DELAY.total_seconds() + 60


async def _down_then_back(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    helm: str,
    address: str,
    bring_back: Callable[[], Awaitable[None]],
) -> None:
    """A GitRepo whose one bundle pulls ``helm`` (fleet.yaml's helm section) from a source at
    ``address`` that is down: ErrApplied naming the address everywhere people look, then Ready
    once ``bring_back`` has run, with nothing else done."""
    ns = flotilla.namespace
    target = f"t{uuid.uuid4().hex[:6]}"
    url = git_daemon.create_repo(
        repo_name, {"chart/fleet.yaml": f"namespace: {target}\nhelm:\n{helm}"}
    )
    await flotilla.serve_gitrepo(url, {"one": kube(local_cluster)})
    status = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"),
        lambda s: s.state == "ErrApplied",
        timeout=60,
    )
    line = table_row(gitrepo_table([status]), "repo")
    print(line)
    assert "ErrApplied: repo-chart: " in line and address in line, line
    assert "\n" not in status.message and "Traceback" not in status.message
    assert address in describe_gitrepo(status)
    assert [b.bundle for b in await flotilla.control.list_bundles(ns)] == ["repo-chart"]
    bundle = await flotilla.control.bundle_status(ns, "repo-chart")
    assert address in table_row(bundle_table([bundle]), "repo-chart")
    (cluster,) = bundle.clusters
    assert cluster.state == "ErrApplied" and address in cluster.message, cluster
    # The line ends with what to do about it, not only with what went wrong.
    assert "reachable from the worker" in cluster.message, cluster.message
    text = describe_bundle(bundle)
    assert "Ready   False    ErrApplied" in text, text
    await flotilla.listed_as(f"gitrepo/{ns}/repo", "ErrApplied")

    back = time.monotonic()
    await bring_back()
    await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "repo"),
        lambda s: s.state == "Ready" and s.ready_bundle_deployments == "1/1",
        timeout=CLEARS_WITHIN,
    )
    print(f"{address}: back, Ready after {time.monotonic() - back:.1f}s")
    await flotilla.listed_as(f"gitrepo/{ns}/repo", "Ready")


async def test_a_helm_repository_that_is_down_shows_its_address_and_clears(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    tmp_path: Path,
) -> None:
    chart = write_chart(tmp_path / "src", "web", "1.0.0")
    with serve_charts(tmp_path / "repo", [chart], locate("helm")) as server:
        forwarder = TcpForwarder(int(server.url.rsplit(":", 1)[1]))
        address = f"127.0.0.1:{forwarder.port}"
        helm = f"  repo: http://{address}\n  chart: web\n  version: 1.0.0\n"
        try:
            await _down_then_back(
                flotilla, local_cluster, git_daemon, repo_name, helm, address, forwarder.start
            )
        finally:
            await forwarder.stop()


async def test_an_oci_registry_that_is_down_shows_its_address_and_clears(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    tmp_path: Path,
) -> None:
    helm_bin = locate("helm")
    package = package_chart(
        write_chart(tmp_path / "src", "web", "1.0.0"), tmp_path / "pkg", helm_bin
    )
    registry = LocalRegistry(tmp_path / "registry").start()
    try:
        subprocess.run(
            [helm_bin, "push", str(package), f"oci://{registry.host}/charts", "--plain-http"],
            check=True,
            capture_output=True,
            env={**os.environ, "HELM_CONFIG_HOME": str(tmp_path / "helm-config")},
        )
        registry.stop()
        helm = f"  chart: oci://{registry.host}/charts/web\n  version: 1.0.0\n"

        async def start() -> None:
            registry.start()

        await _down_then_back(
            flotilla, local_cluster, git_daemon, repo_name, helm, registry.host, start
        )
    finally:
        with contextlib.suppress(Exception):
            registry.stop()


async def test_a_management_api_that_is_down_shows_its_address_and_clears(
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    tools_on_path: list[Path],
    local_cluster: LocalCluster,
    management_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
) -> None:
    ns = f"fl-{uuid.uuid4().hex[:8]}"
    create_namespace(management_cluster, ns)
    kubeconfig = json.loads(management_cluster.kubeconfig.read_text())
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    # The CLI's secret store calls it from this loop with a blocking client: its own thread.
    forwarder = ThreadedForwarder(int(server.rsplit(":", 1)[1]))
    await forwarder.start()
    address = f"127.0.0.1:{forwarder.port}"
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://{address}"
    (path := tmp_path / "management.kubeconfig").write_text(json.dumps(kubeconfig))
    probe = 3.0
    fl = await start_flotilla(
        temporal_client,
        task_queue,
        tmp_path / "worker",
        namespace=ns,
        seen_seconds=probe,
        FLOTILLA_SECRET_BACKEND="kubernetes",
        FLOTILLA_MANAGEMENT_KUBECONFIG=str(path),
    )
    target = f"t{uuid.uuid4().hex[:6]}"
    url = git_daemon.create_repo(
        repo_name,
        {
            "app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n",
            "app/fleet.yaml": f"namespace: {target}\n",
        },
    )
    try:
        await fl.serve_gitrepo(url, {"one": kube(local_cluster)}, ready="1/1")

        stopped = time.monotonic()
        await forwarder.stop()
        status = await fl.eventually(
            lambda: fl.control.gitrepo_status(ns, "repo"),
            lambda s: s.state == "Offline",
            timeout=2 * probe + 30,
            interval=0.25,
        )
        offline_after = time.monotonic() - stopped
        print(f"management API stopped: Offline after {offline_after:.1f}s (probe {probe}s)")
        line = table_row(gitrepo_table([status]), "repo")
        print(line)
        assert "Offline: repo-app: " in line and address in line, line
        bundle = (await fl.control.list_bundles(ns))[0]
        assert bundle.state == "Offline" and address in bundle.clusters[0].message, bundle
        assert "(check that its API server is up" in bundle.clusters[0].message, bundle
        assert "Ready   False    Offline" in describe_bundle(bundle)
        registry = await fl.control.registry(ns)
        assert address in table_row(cluster_table(registry, [bundle]), "one")
        text = describe_cluster(registry.clusters[0], [bundle])
        assert "Reachable   False" in text and address in text, text
        await fl.listed_as(f"gitrepo/{ns}/repo", "Offline")

        restarted = time.monotonic()
        back_at = datetime.now(UTC)
        await forwarder.start()
        await fl.eventually(
            lambda: fl.control.gitrepo_status(ns, "repo"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "1/1",
            timeout=2 * probe + 30,
            interval=0.25,
        )
        print(f"management API back: Ready after {time.monotonic() - restarted:.1f}s")
        record = (await fl.control.registry(ns)).clusters[0]
        assert not record.unreachable
        # Reachable=True is dated from the probe that answered again, not left blank.
        since = record.reachable_since
        assert since is not None and since >= back_at, record
        reachable = describe_cluster(record, await fl.control.list_bundles(ns)).splitlines()
        line = next(x for x in reachable if x.strip().startswith("Reachable"))
        assert line.split()[1:3] == ["True", "Probed"] and " ago)" in line, line
        await fl.listed_as(f"gitrepo/{ns}/repo", "Ready")
    finally:
        await forwarder.stop()
        await forwarder.start()  # the cleanup below reads through it
        await fl.cleanup()
        await fl.worker.stop()
        forwarder.close()
        with contextlib.suppress(Exception):
            local_cluster.request("DELETE", f"/api/v1/namespaces/{target}")


def kube(cluster: LocalCluster) -> str:
    return cluster.kubeconfig.read_text()
