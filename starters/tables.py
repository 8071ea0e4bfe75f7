"""How the CLI prints: aligned tables, ``-o yaml|json``, and kubectl's ages."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import yaml

if TYPE_CHECKING:
    # Annotations only: `flotilla secret` prints its tables without loading the workflows.
    from flotilla.models import Restriction, Schedule
    from flotilla.notifications import AlertSpec
    from flotilla.status import BundleLine, Condition, StateWithMessage
    from starters.control import WorkspaceSummary
    from workflows.bundle_models import BundleStatus
    from workflows.gitrepo_models import GitRepoStatus
    from workflows.helmop_models import HelmOpStatus
    from workflows.notifications_models import ProviderStatus
    from workflows.registry_models import ClusterRecord, RegistrySnapshot


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
    """``State: why``; Ready alone unless something is worth saying (a version pin)."""
    return f"{state}: {message}" if message else state


def conditions_table(conditions: Sequence[Condition], now: datetime | None = None) -> str:
    """Conditions as ``kubectl describe`` lists them, with how long ago each last changed."""
    return table(
        ["  TYPE", "STATUS", "REASON", "LAST-TRANSITION", "MESSAGE"],
        [
            [
                f"  {c.type}",
                str(c.status),
                c.reason,
                _when(c.last_transition, now),
                c.message,
            ]
            for c in conditions
        ],
    )


def _when(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "-"
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%SZ')} ({age(moment, now)} ago)"


def describe_gitrepo(status: GitRepoStatus, now: datetime | None = None) -> str:
    lines = [
        f"Name:        {status.namespace}/{status.name}",
        f"Repo:        {status.repo} ({status.branch})",
        f"Commit:      {status.commit or '<none read yet>'}",
        f"Clusters:    {status.ready_clusters}/{status.desired_ready_clusters} ready",
        f"Deployments: {status.ready_bundle_deployments} ready",
        f"State:       {status_text(status.state, status.message)}",
    ]
    if status.error:
        lines.append(f"Git error:   {status.error}")
        lines.append(f"  Since:     {_when(status.error_since)}")
        lines.append(f"  Serving:   {status.commit or '<nothing: no commit read yet>'}")
    lines += [f"Pinned:      {pin}" for pin in status.pins]
    if status.pins and status.head and status.head != status.commit:
        lines.append(f"Branch head: {status.head}")
    lines += [
        "Conditions:",
        conditions_table(status.conditions, now),
        "Bundles:",
        table(
            ["  NAME", "PATH", "READY", "STATE", "SINCE", "MESSAGE"],
            [
                [
                    f"  {b.name}",
                    b.path,
                    f"{b.ready}/{b.desired}",
                    b.state,
                    age(b.since, now) if b.since else "-",
                    b.error or b.message,
                ]
                for b in status.bundles
            ],
        ),
    ]
    lines += _not_ready_bundles(status.bundles)
    lines += [f"Warning:     {w}" for w in status.warnings]
    return "\n".join(lines)


def _not_ready_bundles(bundles: Sequence[BundleLine]) -> list[str]:
    """Each bundle that is not all Ready: its deployments by state and the first non-ready
    ones its report named (``describe bundle`` lists every deployment)."""
    from flotilla.status import SEVERITY  # noqa: PLC0415

    def worst_first(state: str) -> int:
        # States added later (not ranked here yet) come first: unknown is never hidden.
        return SEVERITY.index(state) if state in SEVERITY else -1

    lines: list[str] = []
    for b in bundles:
        if not b.counts or set(b.counts) == {"Ready"}:
            continue
        counts = ", ".join(f"{s} {b.counts[s]}" for s in sorted(b.counts, key=worst_first))
        lines.append(f"  {b.name}: {counts}")
        lines += [f"    {e.name}  {e.state}  {e.message}" for e in b.non_ready]
        rest = sum(n for s, n in b.counts.items() if s != "Ready") - len(b.non_ready)
        if rest > 0:
            lines.append(f"    (+{rest} more: flotilla describe bundle {b.name})")
    return ["Not ready:", *lines] if lines else []


def helmop_table(items: Sequence[HelmOpStatus]) -> str:
    """Fleet's HelmOp columns: repo, chart, the version chosen, deployments ready, status."""
    return table(
        ["NAME", "REPO", "CHART", "VERSION", "BUNDLEDEPLOYMENTS-READY", "STATUS"],
        [
            [
                h.name,
                h.repo,
                h.chart or "-",
                h.version or "-",
                h.ready_bundle_deployments,
                status_text(h.state, h.message),
            ]
            for h in items
        ],
    )


def describe_helmop(status: HelmOpStatus) -> str:
    """One HelmOp: the chart, the version wanted and chosen (and when it was seen), polling,
    the source's error if any, conditions and its bundle."""
    polling = f"every {status.polling_interval}" if status.polling_interval else "off"
    lines = [
        f"Name:        {status.namespace}/{status.name}",
        f"Repo:        {status.repo}",
        f"Chart:       {status.chart or '-'}",
        f"Wanted:      {status.wanted}",
        f"Version:     {status.version or '<none chosen yet>'}",
        f"  Seen:      {_when(status.version_seen_at)}",
        f"Polling:     {polling} (last {_when(status.polled_at)})",
        f"Clusters:    {status.ready_clusters}/{status.desired_ready_clusters} ready",
        f"Deployments: {status.ready_bundle_deployments} ready",
        f"State:       {status_text(status.state, status.message)}",
    ]
    if status.error:
        lines.append(f"Chart error: {status.error}")
        lines.append(f"  Since:     {_when(status.error_since)}")
    lines += [
        "Conditions:",
        conditions_table(status.conditions),
        "Bundles:",
        table(
            ["  NAME", "READY", "STATE", "MESSAGE"],
            [
                [f"  {b.name}", f"{b.ready}/{b.desired}", b.state, b.error or b.message]
                for b in status.bundles
            ],
        ),
    ]
    return "\n".join(lines)


def describe_bundle(status: BundleStatus, now: datetime | None = None) -> str:
    """One bundle: its state, Ready condition, and per cluster the state, since when (age) and
    why."""
    from flotilla.status import explain  # noqa: PLC0415

    lines = [
        f"Name:        {status.namespace}/{status.bundle}",
        f"GitRepo:     {status.gitrepo}",
        f"Commit:      {status.commit}",
        f"Paused:      {str(status.paused).lower()}",
        f"Ready:       {status.ready}/{status.desired}",
        f"State:       {status_text(status.state, status.message)}",
        *([f"Pinned:      {status.pin}"] if status.pin else []),
        f"Rollout:     {status.summary}",
        "Conditions:",
        conditions_table(status.conditions or [_ready(status.state, status.message)], now),
        "Clusters:",
        table(
            ["  CLUSTER", "STATE", "SINCE", "RELEASE", "LAST-DEPLOY", "MESSAGE"],
            [
                [
                    f"  {c.cluster}",
                    c.state,
                    age(c.since, now) if c.since else "-",
                    c.release,
                    c.last_action,
                    explain(c.state, c.message),
                ]
                for c in status.clusters
            ],
        ),
    ]
    if status.gates:
        lines += [
            "Gates:",
            table(
                ["  PARTITION", "GATE", "BY", "WHEN", "MESSAGE"],
                [
                    [
                        f"  {g.partition}",
                        g.state,
                        g.user or "-",
                        _when(g.at, now),
                        "; ".join(part for part in (g.message, g.reason) if part) or "-",
                    ]
                    for g in status.gates
                ],
            ),
        ]
    for cluster in status.clusters:
        for resource in cluster.non_ready:
            lines.append(f"Not ready on {cluster.cluster}: {resource}")
    for name, error in sorted(status.errors.items()):
        lines.append(f"Error on {name}: {error}")
    return "\n".join(lines)


def _ready(state: str, message: str) -> Condition:
    from flotilla.status import ready_condition  # noqa: PLC0415

    return ready_condition(state, message)


def age(since: datetime | None, now: datetime | None = None) -> str:
    """kubectl's way of saying how long ago: ``45s``, ``12m``, ``3h``, ``2d``; ``<never>``."""
    if since is None:
        return "<never>"
    seconds = max(0, int(((now or datetime.now(UTC)) - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def cluster_states(
    snapshot: RegistrySnapshot, bundles: list[BundleStatus]
) -> dict[str, StateWithMessage]:
    """Each cluster's state by the one rule: Offline, else the worst of its deployments."""
    from flotilla.status import BundleState, cluster_state  # noqa: PLC0415

    on_cluster: dict[str, dict[str, BundleState]] = {}
    for bundle in bundles:
        for cluster in bundle.clusters:
            on_cluster.setdefault(cluster.cluster, {})[bundle.bundle] = BundleState(cluster.state)
    return {c.name: cluster_state(c.offline, on_cluster.get(c.name, {})) for c in snapshot.clusters}


def cluster_table(
    snapshot: RegistrySnapshot, bundles: list[BundleStatus], now: datetime | None = None
) -> str:
    ready: dict[str, int] = {}
    desired: dict[str, int] = {}
    for bundle in bundles:
        for cluster in bundle.clusters:
            desired[cluster.cluster] = desired.get(cluster.cluster, 0) + 1
            ready[cluster.cluster] = ready.get(cluster.cluster, 0) + (cluster.state == "Ready")
    states = cluster_states(snapshot, bundles)
    return table(
        [
            "NAME",
            "LABELS",
            "PAUSED",
            "MODE",
            "BUNDLES-READY",
            "LAST-SEEN",
            "READY",
            "KUBECONFIG-SECRET",
            "STATUS",
        ],
        [
            [
                c.name,
                ",".join(f"{k}={v}" for k, v in sorted(c.labels.items())) or "<none>",
                str(c.paused).lower(),
                "agent" if c.agent else "push",
                f"{ready.get(c.name, 0)}/{desired.get(c.name, 0)}",
                age(c.last_seen, now),
                # The cluster's Ready condition: it answers and every deployment is Ready.
                str(states[c.name].state == "Ready").lower(),
                c.kubeconfig_secret or "-",
                status_text(states[c.name].state, states[c.name].message),
            ]
            for c in snapshot.clusters
        ],
    )


def describe_cluster(
    record: ClusterRecord, bundles: list[BundleStatus], now: datetime | None = None
) -> str:
    """One cluster: its state by the one rule, Reachable and Ready conditions, its bundles."""
    from flotilla.status import Condition, ready_condition  # noqa: PLC0415
    from workflows.registry_models import RegistrySnapshot  # noqa: PLC0415

    snapshot = RegistrySnapshot(
        namespace="", version=0, clusters=[record], groups=[], subscribers=[]
    )
    state = cluster_states(snapshot, bundles)[record.name]
    reachable = Condition(
        type="Reachable",
        status=not record.unreachable,
        reason="Offline" if record.unreachable else "Probed",
        message=record.unreachable,
        last_transition=record.unreachable_since if record.unreachable else record.reachable_since,
    )
    ready = ready_condition(state.state, state.message)
    if record.unreachable:
        # Offline outranks every deployment's state: it is Offline since the first failed probe.
        ready = ready.model_copy(update={"last_transition": record.unreachable_since})
    rows = [
        [f"  {b.bundle}", c.state, age(c.since, now) if c.since else "-", c.message]
        for b in bundles
        for c in b.clusters
        if c.cluster == record.name
    ]
    return "\n".join(
        [
            f"Name:        {record.name}",
            f"Labels:      {','.join(f'{k}={v}' for k, v in sorted(record.labels.items()))}",
            f"Mode:        {'agent' if record.agent else 'push'}",
            *(
                [
                    f"Agent:       {record.agent_version or '-'} (Kubernetes "
                    f"{record.kubernetes_version or '-'}, heartbeat every "
                    f"{record.heartbeat_seconds:g}s)"
                ]
                if record.agent
                else []
            ),
            f"Last seen:   {age(record.last_seen, now)}",
            f"State:       {status_text(state.state, state.message)}",
            "Conditions:",
            conditions_table([reachable, ready], now),
            "Bundles:",
            table(["  BUNDLE", "STATE", "SINCE", "MESSAGE"], rows),
        ]
    )


def provider_table(items: Sequence[ProviderStatus]) -> str:
    """Notification Providers with their delivery counters and last error."""
    return table(
        ["NAME", "TYPE", "SECRET", "QUEUED", "DELIVERED", "DROPPED", "LAST-ERROR"],
        [
            [
                p.name,
                p.type,
                p.secret,
                str(p.queued),
                str(p.delivered),
                str(p.dropped),
                p.last_error or "-",
            ]
            for p in items
        ],
    )


def _sources(spec: AlertSpec) -> str:
    return ",".join(
        f"{s.kind}/{s.name}"
        + (
            "{" + ",".join(f"{k}={v}" for k, v in sorted(s.match_labels.items())) + "}"
            if s.match_labels
            else ""
        )
        for s in spec.event_sources
    )


def alert_table(alerts: dict[str, AlertSpec]) -> str:
    return table(
        ["NAME", "PROVIDER", "EVENT-KINDS", "SOURCES", "SUSPENDED"],
        [
            [
                name,
                spec.provider_ref.name,
                ",".join(spec.event_kinds),
                _sources(spec),
                str(spec.suspend).lower(),
            ]
            for name, spec in sorted(alerts.items())
        ],
    )


def describe_provider(status: ProviderStatus, alerts: dict[str, AlertSpec]) -> str:
    users = sorted(n for n, a in alerts.items() if a.provider_ref.name == status.name)
    return "\n".join(
        [
            f"Name:        {status.name}",
            f"Type:        {status.type}",
            f"Secret:      {status.secret}",
            f"Alerts:      {', '.join(users) or '<none>'}",
            f"Queued:      {status.queued}",
            f"Delivered:   {status.delivered}",
            f"Dropped:     {status.dropped}",
            f"Last error:  {status.last_error or '-'}",
        ]
    )


def describe_alert(name: str, spec: AlertSpec) -> str:
    return "\n".join(
        [
            f"Name:        {name}",
            f"Provider:    {spec.provider_ref.name}",
            f"Event kinds: {', '.join(spec.event_kinds)}",
            f"Sources:     {_sources(spec)}",
            f"Dependency wait: {spec.dependency_wait}",
            f"Suspended:   {str(spec.suspend).lower()}",
        ]
    )


def restriction_table(items: Sequence[Restriction]) -> str:
    """Policies and GitRepoRestrictions, one line each with the rules they set."""
    return table(
        ["KIND", "NAME", "RULES"],
        [
            [r.kind, r.metadata.name, _rules(r.model_dump(by_alias=True, exclude_defaults=True))]
            for r in items
        ],
    )


def schedule_table(items: Sequence[Schedule], now: datetime | None = None) -> str:
    """Schedules with Fleet's columns (schedule, duration, active, next start) and targets."""
    from flotilla.models import window_of  # noqa: PLC0415 - `get` tables import no pydantic
    from flotilla.windows import window_at  # noqa: PLC0415

    at = now or datetime.now(UTC)
    rows = []
    for schedule in items:
        window = window_at([window_of(schedule)], at)
        targets = schedule.spec.targets.clusters or []
        rows.append(
            [
                schedule.metadata.name,
                schedule.spec.schedule,
                str(schedule.spec.duration),
                schedule.spec.location or "UTC",
                "true" if window.open else "false",
                f"{window.opens_at:%Y-%m-%dT%H:%M:%SZ}" if window.opens_at else "-",
                _rules({"targets": [t.to_fleet() for t in targets]}) if targets else "<none>",
            ]
        )
    return table(
        ["NAME", "SCHEDULE", "DURATION", "LOCATION", "ACTIVE", "NEXT-START", "TARGETS"], rows
    )


def _rules(data: dict[str, Any], prefix: str = "") -> str:
    parts = []
    for key, value in data.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if isinstance(value, dict) and key != "allowedTargetNamespaceSelector":
            parts.append(_rules(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            parts.append(f"{prefix}{key}=[{','.join(map(str, value))}]")
        else:
            parts.append(f"{prefix}{key}={json.dumps(value)}")
    return " ".join(p for p in parts if p) if parts or prefix else "<none>"


def workspace_table(items: Sequence[WorkspaceSummary]) -> str:
    return table(
        ["WORKSPACE", "CLUSTERS", "CLUSTERGROUPS", "GITREPOS", "RESTRICTIONS", "MESSAGE"],
        [
            [w.name, "?", "?", "?", "?", w.problem]
            if w.problem
            else [
                w.name,
                str(w.clusters),
                str(w.cluster_groups),
                str(w.gitrepos),
                str(w.restrictions),
                "",
            ]
            for w in items
        ],
    )
