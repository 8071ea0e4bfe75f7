"""The GitOps demo behind ``make dev``: the example repo, two clusters, one GitRepo, all Ready."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.errors import FlotillaError
from flotilla.models import load_gitrepo
from runtime.stores import load_settings, secret_store
from runtime.temporal import connect
from starters.control import Control
from starters.tables import bundle_table, gitrepo_table
from workflows.gitrepo_models import GitRepoStatus

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REPO_NAME = "fleet-examples"
CLUSTER_LABELS = {"dev": {"env": "dev"}, "prod": {"env": "prod"}}
POLLING_INTERVAL = "5s"
READY_TIMEOUT = 600.0

Progress = Callable[[str], None]


def _line(status: GitRepoStatus) -> str:
    line = (
        f"commit {status.commit[:7] or '-'}: bundle deployments ready "
        f"{status.ready_bundle_deployments}, clusters ready "
        f"{status.ready_clusters}/{status.desired_ready_clusters}, {status.state}"
    )
    return f"{line}: {status.message}" if status.message and status.state != "Ready" else line


async def _deploy(
    temporal_address: str,
    daemon: GitDaemon,
    clusters: dict[str, LocalCluster],
    progress: Progress,
) -> str:
    url = daemon.create_repo(REPO_NAME, EXAMPLES / REPO_NAME, message="fleet examples")
    progress(f"pushed examples/{REPO_NAME} to {url}")
    settings = load_settings()
    client = await connect(settings.temporal, address=temporal_address)
    control = Control(client, secrets=secret_store(settings))
    gitrepo, _ = load_gitrepo((EXAMPLES / "gitrepo.yaml").read_text(), file="examples/gitrepo.yaml")
    namespace, name = gitrepo.metadata.namespace, gitrepo.metadata.name
    for cluster_name, cluster in clusters.items():
        labels = CLUSTER_LABELS[cluster_name]
        await control.add_cluster(
            namespace, cluster_name, cluster.kubeconfig.read_text(), labels=labels
        )
        progress(
            f"registered cluster {cluster_name} with labels "
            + ",".join(f"{k}={v}" for k, v in labels.items())
        )
    spec = gitrepo.spec.model_copy(update={"repo": url, "polling_interval": POLLING_INTERVAL})
    await control.apply_gitrepo(gitrepo.model_copy(update={"spec": spec}))
    progress(f"applied GitRepo {namespace}/{name}; waiting for every bundle to be Ready ...")

    deadline = time.monotonic() + READY_TIMEOUT
    last = ""
    while True:
        status = await control.gitrepo_status(namespace, name)
        line = _line(status)
        if line != last:
            progress(line)
            last = line
        done = status.commit and status.desired_ready_clusters > 0 and status.state == "Ready"
        if done:
            break
        if time.monotonic() > deadline:
            raise FlotillaError(
                f"gitrepo {namespace}/{name} not Ready after "
                f"{READY_TIMEOUT:.0f}s: {status.state}: {status.message}"
            )
        await asyncio.sleep(1)
    bundles = await control.list_bundles(namespace, name)
    return gitrepo_table([status]) + "\n\n" + bundle_table(bundles)


def deploy_example(
    temporal_address: str,
    daemon: GitDaemon,
    clusters: dict[str, LocalCluster],
    progress: Progress,
) -> str:
    """Push the example repo, register the clusters, apply the GitRepo, wait until Ready.

    Returns the `flotilla get gitrepos` and `get bundles` tables."""
    return asyncio.run(_deploy(temporal_address, daemon, clusters, progress))
