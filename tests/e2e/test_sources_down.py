"""A chart source that is down (a Helm repository, an OCI registry) shows in `get` and
`describe` as ErrApplied with a one-line reason naming its address, and clears by itself when
it comes back: the deploy's retry (``RETRY_DELAY``) pulls the chart again.

Real components: the Temporal dev server, the git daemon, the local cluster, Helm, a real
registry process (``devenv.registry``, stopped and started on the same port) and a chart
repository served over HTTP behind a TCP forwarder (``devenv.forward``) that is closed and
opened again, as for a stopped server.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from devenv.cluster import LocalCluster
from devenv.forward import TcpForwarder
from devenv.gitserver import GitDaemon
from devenv.registry import LocalRegistry
from flotilla.bundledeployment import RETRY_DELAY
from starters.tables import bundle_table, describe_bundle, describe_gitrepo, gitrepo_table
from tests.charts import package_chart, serve_charts, write_chart
from tests.conftest import locate
from tests.e2e.harness import Flotilla, gitrepo_yaml, table_row

# The first deploy fails at once; it is tried again RETRY_DELAY after, and then deploys.
CLEARS_WITHIN = RETRY_DELAY.total_seconds() + 60


async def _down_then_back(
    flotilla: Flotilla,
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
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "repo", url, targets=[{"clusterSelector": {}}]), file="gitrepo.yaml"
    )
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
    bundle = await flotilla.control.bundle_status(ns, "repo-chart")
    assert address in table_row(bundle_table([bundle]), "repo-chart")
    (cluster,) = bundle.clusters
    assert cluster.state == "ErrApplied" and address in cluster.message, cluster
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
            await flotilla.control.add_cluster(ns := flotilla.namespace, "one", kube(local_cluster))
            await flotilla.worker.refresh_clusters()
            await _down_then_back(flotilla, git_daemon, repo_name, helm, address, forwarder.start)
            assert [b.bundle for b in await flotilla.control.list_bundles(ns)] == ["repo-chart"]
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
        await flotilla.control.add_cluster(flotilla.namespace, "one", kube(local_cluster))
        await flotilla.worker.refresh_clusters()

        async def start() -> None:
            registry.start()

        await _down_then_back(flotilla, git_daemon, repo_name, helm, registry.host, start)
    finally:
        with contextlib.suppress(Exception):
            registry.stop()


def kube(cluster: LocalCluster) -> str:
    return cluster.kubeconfig.read_text()
