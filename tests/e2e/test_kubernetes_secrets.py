"""Run beyond one machine: worker and CLI share only Temporal and a management cluster.

The worker and the CLI (its own HOME) both use FLOTILLA_SECRET_BACKEND=kubernetes. `cluster
add` writes the kubeconfig Secret into the management cluster, a Fleet Cluster names a Secret
made by hand, a GitRepo deploys to both downstream clusters, and no file secret store exists
anywhere. Removing the clusters uninstalls with their kubeconfigs, then the worker deletes the
Secret flotilla made and keeps the one a person made.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.kubesecrets import MANAGED_BY, MANAGED_BY_LABEL
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from starters.cli import main
from tests.e2e.harness import gitrepo_yaml, per_cluster_namespaces, releases, start_flotilla
from tests.secrets.conftest import create_namespace, create_secret

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {greeting: hello}\n"
CLUSTER_TWO = """\
apiVersion: fleet.cattle.io/v1alpha1
kind: Cluster
metadata: {{name: two, namespace: {namespace}}}
spec: {{kubeConfigSecret: two-creds}}
"""


async def test_worker_and_cli_share_secrets_only_through_the_management_cluster(
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    tools_on_path: list[Path],
    local_cluster: LocalCluster,
    management_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = f"fl-{uuid.uuid4().hex[:8]}"
    create_namespace(management_cluster, ns)
    backend = {
        "FLOTILLA_SECRET_BACKEND": "kubernetes",
        "FLOTILLA_MANAGEMENT_KUBECONFIG": str(management_cluster.kubeconfig),
    }
    fl = await start_flotilla(
        temporal_client, task_queue, tmp_path / "worker", namespace=ns, **backend
    )
    cli_home = tmp_path / "cli-home"
    for variable in ("FLOTILLA_SECRETS_DIR", "FLOTILLA_CONTENT_DIR", "FLOTILLA_WORKDIR"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in {
        **backend,
        "HOME": str(cli_home),
        "TEMPORAL_ADDRESS": temporal_client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": temporal_client.namespace,
    }.items():
        monkeypatch.setenv(variable, value)

    async def cli(*argv: str) -> str:
        capsys.readouterr()
        code = await asyncio.to_thread(main, [*argv, "--task-queue", task_queue])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out.strip()

    def secret(name: str) -> dict[str, object]:
        return management_cluster.request("GET", f"/api/v1/namespaces/{ns}/secrets/{name}")

    prefix = f"t{uuid.uuid4().hex[:6]}"
    fleet = per_cluster_namespaces(prefix, ["one", "two"])
    url = git_daemon.create_repo(repo_name, {"app/fleet.yaml": fleet, "app/cm.yaml": CM})
    kubeconfig = local_cluster.kubeconfig.read_text()
    try:
        # `cluster add` writes <name>-kubeconfig into the management cluster, labelled.
        out = await cli(
            "cluster", "add", "one", "--kubeconfig", str(local_cluster.kubeconfig), "-n", ns
        )
        assert out == "cluster one added"
        written = secret("one-kubeconfig")
        assert written["metadata"]["labels"] == {MANAGED_BY_LABEL: MANAGED_BY}  # type: ignore[index]
        assert base64.b64decode(written["data"]["value"]).decode() == kubeconfig  # type: ignore[index]

        # A Secret made for Fleet by hand, named by the Cluster's spec.kubeConfigSecret.
        create_secret(management_cluster, ns, "two-creds", {"value": kubeconfig})
        (tmp_path / "cluster.yaml").write_text(CLUSTER_TWO.format(namespace=ns))
        assert (
            await cli("apply", "-f", str(tmp_path / "cluster.yaml")) == f"cluster {ns}/two applied"
        )
        await fl.worker.refresh_clusters()
        assert fl.worker.cluster_queues == [f"cluster.{ns}.one", f"cluster.{ns}.two"]

        (tmp_path / "gitrepo.yaml").write_text(
            gitrepo_yaml(ns, "demo", url, targets=[{"clusterSelector": {}}])
        )
        assert (
            await cli("apply", "-f", str(tmp_path / "gitrepo.yaml")) == f"gitrepo {ns}/demo applied"
        )
        status = await fl.eventually(
            lambda: fl.control.gitrepo_status(ns, "demo"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "2/2",
        )
        assert status.ready_clusters == 2
        for name in ("one", "two"):
            cm = local_cluster.request(
                "GET", f"/api/v1/namespaces/{prefix}-{name}/configmaps/settings"
            )
            assert cm["data"] == {"greeting": "hello"}
        # Nobody kept a secret on disk: no file store directory under any home or setting.
        assert [p for p in tmp_path.rglob("*") if p.name == "secrets"] == []
        assert not fl.settings.secrets_dir.exists()

        # Removing both clusters uninstalls from them, with their kubeconfigs still there.
        assert await cli("cluster", "remove", "one", "-n", ns) == "cluster one removed"
        assert await cli("delete", "cluster", "two", "-n", ns) == "cluster two removed"

        async def installed() -> list[str]:
            return [
                *releases(local_cluster.kubeconfig, f"{prefix}-one"),
                *releases(local_cluster.kubeconfig, f"{prefix}-two"),
            ]

        await fl.eventually(installed, lambda found: found == [])
        assert [s.name for s in fl.control.secrets.list(ns)] == ["one-kubeconfig", "two-creds"]
        # Once the grace period for those uninstalls is over, the worker stops serving the
        # clusters and deletes the Secret flotilla made; the hand-made one stays.
        fl.worker.config.linger_seconds = 0

        async def left() -> tuple[list[str], list[str]]:
            await asyncio.sleep(0)
            return fl.worker.cluster_queues, [s.name for s in fl.control.secrets.list(ns)]

        await fl.eventually(left, lambda found: found == ([], ["two-creds"]), timeout=30)
    finally:
        await fl.cleanup()
        await fl.worker.stop()
        for name in ("one", "two", "default"):
            with contextlib.suppress(Exception):
                local_cluster.request("DELETE", f"/api/v1/namespaces/{prefix}-{name}")
