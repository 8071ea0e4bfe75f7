"""How the CLI prints: aligned tables, ``-o yaml|json``, and kubectl's ages."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import yaml

if TYPE_CHECKING:
    # Annotations only: `flotilla secret` prints its tables without loading the workflows.
    from workflows.bundle_models import BundleStatus
    from workflows.gitrepo_models import GitRepoStatus
    from workflows.registry_models import RegistrySnapshot


class GitRepoRow(Protocol):
    """What a GitRepo's table line shows: the ``status`` query's answer, or the same fields
    read from its search attributes (``starters/get.py``)."""

    @property
    def name(self) -> str: ...
    @property
    def repo(self) -> str: ...
    @property
    def commit(self) -> str: ...
    @property
    def ready_bundle_deployments(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def message(self) -> str: ...


class BundleRow(Protocol):
    """What a bundle's table line shows (the ``status`` query or its search attributes)."""

    @property
    def bundle(self) -> str: ...
    @property
    def gitrepo(self) -> str: ...
    @property
    def commit(self) -> str: ...
    @property
    def ready(self) -> int: ...
    @property
    def desired(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def message(self) -> str: ...


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "   ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)


def render(items: Any, output: str, as_table: Callable[[], str]) -> str:
    if output == "table":
        return as_table()
    data = (
        [i.model_dump(mode="json") for i in items]
        if isinstance(items, list)
        else items.model_dump(mode="json")
    )
    if output == "json":
        return json.dumps(data, indent=2, sort_keys=True)
    return yaml.safe_dump(data, sort_keys=False).rstrip()


def gitrepo_table(items: Sequence[GitRepoRow]) -> str:
    return table(
        ["NAME", "REPO", "COMMIT", "BUNDLEDEPLOYMENTS-READY", "STATUS"],
        [
            [
                g.name,
                g.repo,
                g.commit[:12],
                g.ready_bundle_deployments,
                status_text(g.state, g.message),
            ]
            for g in items
        ],
    )


def bundle_table(items: Sequence[BundleRow]) -> str:
    return table(
        ["NAME", "GITREPO", "COMMIT", "BUNDLEDEPLOYMENTS-READY", "STATUS"],
        [
            [
                b.bundle,
                b.gitrepo,
                b.commit[:12],
                f"{b.ready}/{b.desired}",
                status_text(b.state, b.message),
            ]
            for b in items
        ],
    )


def status_text(state: str, message: str) -> str:
    return state if state == "Ready" or not message else f"{state}: {message}"


def describe_gitrepo(status: GitRepoStatus) -> str:
    lines = [
        f"Name:        {status.namespace}/{status.name}",
        f"Repo:        {status.repo} ({status.branch})",
        f"Commit:      {status.commit}",
        f"Clusters:    {status.ready_clusters}/{status.desired_ready_clusters} ready",
        f"Deployments: {status.ready_bundle_deployments} ready",
        f"State:       {status_text(status.state, status.message)}",
        "Bundles:",
        table(
            ["  NAME", "PATH", "READY", "STATE", "MESSAGE"],
            [
                [f"  {b.name}", b.path, f"{b.ready}/{b.desired}", b.state, b.error or b.message]
                for b in status.bundles
            ],
        ),
    ]
    lines += [f"Warning:     {w}" for w in status.warnings]
    return "\n".join(lines)


def describe_bundle(status: BundleStatus) -> str:
    lines = [
        f"Name:        {status.namespace}/{status.bundle}",
        f"GitRepo:     {status.gitrepo}",
        f"Commit:      {status.commit}",
        f"Paused:      {str(status.paused).lower()}",
        f"Ready:       {status.ready}/{status.desired}",
        f"State:       {status_text(status.state, status.message)}",
        f"Rollout:     {status.summary}",
        "Clusters:",
        table(
            ["  CLUSTER", "STATE", "RELEASE", "LAST-DEPLOY", "MESSAGE"],
            [
                [f"  {c.cluster}", c.state, c.release, c.last_action, c.message]
                for c in status.clusters
            ],
        ),
    ]
    for cluster in status.clusters:
        for resource in cluster.non_ready:
            lines.append(f"Not ready on {cluster.cluster}: {resource}")
    for name, error in sorted(status.errors.items()):
        lines.append(f"Error on {name}: {error}")
    return "\n".join(lines)


def age(since: datetime | None, now: datetime | None = None) -> str:
    """kubectl's way of saying how long ago: ``45s``, ``12m``, ``3h``, ``2d``; ``<never>``."""
    if since is None:
        return "<never>"
    seconds = max(0, int(((now or datetime.now(UTC)) - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def cluster_table(
    snapshot: RegistrySnapshot, bundles: list[BundleStatus], now: datetime | None = None
) -> str:
    ready: dict[str, int] = {}
    desired: dict[str, int] = {}
    for bundle in bundles:
        for cluster in bundle.clusters:
            desired[cluster.cluster] = desired.get(cluster.cluster, 0) + 1
            ready[cluster.cluster] = ready.get(cluster.cluster, 0) + (cluster.state == "Ready")
    return table(
        ["NAME", "LABELS", "PAUSED", "MODE", "BUNDLES-READY", "LAST-SEEN", "KUBECONFIG-SECRET"],
        [
            [
                c.name,
                ",".join(f"{k}={v}" for k, v in sorted(c.labels.items())) or "<none>",
                str(c.paused).lower(),
                "agent" if c.agent else "push",
                f"{ready.get(c.name, 0)}/{desired.get(c.name, 0)}",
                age(c.last_seen, now),
                c.kubeconfig_secret or "-",
            ]
            for c in snapshot.clusters
        ],
    )
