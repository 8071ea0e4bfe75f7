"""Deployment states with Fleet's precedence, and the small summaries of bundles and repos."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from flotilla.errors import MAX_MESSAGE, one_line

MAX_NON_READY = 10
# A GitRepo's status lists at most this many bundles (its counts cover all of them).
MAX_BUNDLE_LINES = 50
_SHOWN_IN_MESSAGE = 3


class BundleState(StrEnum):
    """The state of one bundle deployment, as Fleet names it, plus WaitingForDependency.

    Offline is Fleet's name for a cluster that stopped answering; here it comes from the
    worker's API-server probes recorded in the cluster registry.
    """

    READY = "Ready"
    NOT_READY = "NotReady"
    WAIT_APPLIED = "WaitApplied"
    ERR_APPLIED = "ErrApplied"
    OUT_OF_SYNC = "OutOfSync"
    MODIFIED = "Modified"
    PENDING = "Pending"
    WAITING_FOR_DEPENDENCY = "WaitingForDependency"
    OFFLINE = "Offline"


class RepoState(StrEnum):
    """GitRepo states that are no bundle's: git cannot be read (GitError, flotilla's own; the
    commit it still serves keeps running), or the first commit is still being read
    (GitUpdating, Fleet's)."""

    GIT_ERROR = "GitError"
    GIT_UPDATING = "GitUpdating"
    # A workspace restriction refuses the GitRepo: nothing new deploys, what runs stays.
    RESTRICTED = "Restricted"
    # A HelmOp's chart source cannot give a version (down, refused, nothing matches): the
    # version chosen before keeps running.
    CHART_ERROR = "ChartError"
    # A gate stopped a bundle's rollout of its version (a spent failure budget, a rejected or
    # expired approval): no later partition starts it. A bundle's and a GitRepo's state, never
    # one deployment's (its clusters show why each is where it is).
    HALTED = "Halted"


# Worst first. Fleet's order, with WaitingForDependency just worse than Pending: a dependency
# wait is expected and never an error, so it must not outrank anything that needs a person
# (errors, drift, held-back versions); yet it says more than Pending ("nothing yet"), so a
# bundle whose clusters are partly pending and partly waiting shows what it waits for.
# Offline comes right after ErrApplied: a cluster that does not answer needs a person as much as
# a failed apply does, and it explains every other state seen there (nothing can change).
SEVERITY: tuple[BundleState, ...] = (
    BundleState.ERR_APPLIED,
    BundleState.OFFLINE,
    BundleState.WAIT_APPLIED,
    BundleState.MODIFIED,
    BundleState.OUT_OF_SYNC,
    BundleState.WAITING_FOR_DEPENDENCY,
    BundleState.PENDING,
    BundleState.NOT_READY,
    BundleState.READY,
)


class DeploymentObservation(BaseModel):
    """What is known about one bundle deployment (one bundle on one cluster).

    Versions are deployment ids, empty for none: ``staged`` is the newest version planned for
    this cluster; ``released`` the version the rollout has told it to run (older than staged
    while paused or held by maxUnavailable); ``applied`` the version last applied successfully.
    """

    model_config = ConfigDict(frozen=True)

    staged: str = ""
    released: str = ""
    applied: str = ""
    apply_error: str = ""
    ready: bool = False
    non_ready: list[str] = Field(default_factory=list)
    drift: list[str] = Field(default_factory=list)
    paused: bool = False
    waiting_for: list[str] = Field(default_factory=list)
    # Why the cluster is unreachable (from the registry's probes), empty while it answers.
    offline: str = ""
    # Why the rollout holds the staged version back, when a gate does (flotilla.gates).
    held_by: str = ""


class StateWithMessage(BaseModel):
    """A state and the one line that explains it to a person."""

    model_config = ConfigDict(frozen=True)

    state: BundleState
    message: str = ""


class NonReadyEntry(BaseModel):
    """One deployment that is not Ready, named by cluster (or bundle/cluster for a GitRepo)."""

    model_config = ConfigDict(frozen=True)

    name: str
    state: BundleState
    message: str


class Summary(BaseModel):
    """Counts per state and the worst state; small enough to keep in workflow state."""

    model_config = ConfigDict(frozen=True)

    counts: dict[BundleState, int]
    ready: int
    desired: int
    display: str
    state: BundleState
    message: str
    non_ready: list[NonReadyEntry]


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN_IN_MESSAGE])
    rest = len(items) - _SHOWN_IN_MESSAGE
    return shown + (f" (+{rest} more)" if rest > 0 else "")


def _version(deployment_id: str) -> str:
    return deployment_id[:12] or "none"


def compute_state(obs: DeploymentObservation) -> StateWithMessage:
    """Return the state of one deployment: the first of Fleet's rules that holds."""
    if obs.offline:
        # Whatever was last known about the deployment, nothing can be known now.
        return StateWithMessage(state=BundleState.OFFLINE, message=one_line(obs.offline))
    if not obs.staged:
        return StateWithMessage(state=BundleState.PENDING, message="no deployment yet")
    if obs.waiting_for:
        # The engine holds the deployment back until these are ready, so nothing else about
        # it can change meanwhile; saying what it waits for is the whole story.
        return StateWithMessage(
            state=BundleState.WAITING_FOR_DEPENDENCY,
            message=f"waiting for {_listed(sorted(obs.waiting_for))}",
        )
    if obs.released and obs.applied != obs.released:
        if obs.apply_error:
            return StateWithMessage(
                state=BundleState.ERR_APPLIED, message=one_line(obs.apply_error)
            )
        return StateWithMessage(
            state=BundleState.WAIT_APPLIED,
            message=f"applying version {_version(obs.released)}",
        )
    if obs.released and not obs.ready:
        return StateWithMessage(
            state=BundleState.NOT_READY,
            message=one_line(_listed(obs.non_ready)) or "not ready",
        )
    if obs.released != obs.staged:
        held_by = "paused" if obs.paused else obs.held_by or "held back by the rollout"
        return StateWithMessage(
            state=BundleState.OUT_OF_SYNC,
            message=f"{held_by}: version {_version(obs.staged)} staged, not deployed",
        )
    if obs.drift:
        return StateWithMessage(state=BundleState.MODIFIED, message=one_line(_listed(obs.drift)))
    return StateWithMessage(state=BundleState.READY)


# What a state means when nothing more specific is known: no state but Ready is ever shown
# without a reason.
_DEFAULT_REASON: dict[str, str] = {
    BundleState.ERR_APPLIED: "apply failed",
    BundleState.OFFLINE: "cluster unreachable",
    BundleState.WAIT_APPLIED: "waiting for the new version to be applied",
    BundleState.MODIFIED: "live objects differ from the release",
    BundleState.OUT_OF_SYNC: "a new version is staged, not deployed",
    BundleState.WAITING_FOR_DEPENDENCY: "waiting for dependencies",
    BundleState.PENDING: "no deployment yet",
    BundleState.NOT_READY: "not ready",
    BundleState.READY: "",
    RepoState.GIT_ERROR: "git cannot be read",
    RepoState.GIT_UPDATING: "reading the first commit",
    RepoState.HALTED: "the rollout halted",
}


def explain(state: str, message: str) -> str:
    """The one line shown with ``state``: its message, or what the state means when empty."""
    return one_line(message) or _DEFAULT_REASON.get(state, "")


def worst_state(states: Iterable[BundleState]) -> BundleState:
    """Return the worst of states by SEVERITY; Ready when there are none."""
    return min(states, key=SEVERITY.index, default=BundleState.READY)


def bundle_shown(
    state: BundleState, message: str, *, halted: str = "", source_error: str = "", pin: str = ""
) -> tuple[BundleState | RepoState, str]:
    """A bundle's state and message as its own status shows them (and `get bundles`), ranked
    as its GitRepo ranks them: a read error of the newest commit first (the clusters still run
    an older one), then a halted rollout, then the deployments' own; a Ready bundle's message
    names its version pin, if any."""
    if source_error:
        return BundleState.ERR_APPLIED, source_error
    if halted:
        return RepoState.HALTED, halted
    return state, message or pin


def planning_text(commit: str) -> str:
    return f"planning commit {commit[:12]}"


def while_planning(
    states: Mapping[str, StateWithMessage], commit: str
) -> dict[str, StateWithMessage]:
    """The deployments while ``commit`` is still being planned: what each runs is an older
    commit's, so none is Ready (nor NotReady, drifted or held) at the new one; it waits for
    the new version (WaitApplied) unless it is worse off already (ErrApplied, Offline)."""
    waiting = StateWithMessage(state=BundleState.WAIT_APPLIED, message=planning_text(commit))
    worse = SEVERITY[: SEVERITY.index(BundleState.WAIT_APPLIED)]
    return {name: item if item.state in worse else waiting for name, item in states.items()}


def summarize(states: Mapping[str, StateWithMessage], *, planning: str = "") -> Summary:
    """Summarize deployments by name: counts, "ready/desired", worst state, ten non-ready.

    With ``planning`` (a commit whose plan is not made yet) nothing is Ready: the states are
    taken ``while_planning``, and a bundle with no deployments yet is WaitApplied, not an
    empty Ready 0/0.
    """
    if planning:
        states = while_planning(states, planning)
        if not states:
            return Summary(
                counts=dict.fromkeys(SEVERITY[::-1], 0),
                ready=0,
                desired=0,
                display="0/0",
                state=BundleState.WAIT_APPLIED,
                message=planning_text(planning),
                non_ready=[],
            )
    # Models only for the few entries shown: a bundle workflow summarizes on every wake, and
    # building one per cluster was half of a 500-cluster pass (issue 12).
    rank = {state: index for index, state in enumerate(SEVERITY)}
    ordered = sorted(states.items(), key=lambda pair: (rank[pair[1].state], pair[0]))
    counts = dict.fromkeys(SEVERITY[::-1], 0)
    for _, item in ordered:
        counts[item.state] += 1
    worst = ordered[0] if ordered else None
    ready = counts[BundleState.READY]
    shown = [pair for pair in ordered if pair[1].state is not BundleState.READY][:MAX_NON_READY]
    return Summary(
        counts=counts,
        ready=ready,
        desired=len(ordered),
        display=f"{ready}/{len(ordered)}",
        state=worst[1].state if worst else BundleState.READY,
        message=(
            f"{worst[0]}: {explain(worst[1].state, worst[1].message)}"
            if worst and worst[1].state is not BundleState.READY
            else ""
        ),
        non_ready=[
            NonReadyEntry(name=name, state=item.state, message=item.message) for name, item in shown
        ],
    )


# --- GitRepo status -------------------------------------------------------------------------


# A bundle's report names at most this many of its non-ready deployments with their messages
# (cut to REPORTED_MESSAGE), so 50 bundles' reports stay a few tens of KB whatever the fleet;
# ``describe bundle`` asks the bundle workflow for all of them.
MAX_REPORTED_NON_READY = 3
REPORTED_MESSAGE = 120


def _unless_empty(value: object) -> bool:
    return not value


class BundleReport(BaseModel):
    """What a bundle tells its GitRepo: its summary, counts per state, a few non-ready
    deployments, and the state on each cluster packed against the cluster list
    (flotilla.clusterstates). Reports of older runs carry ``states`` unpacked instead."""

    model_config = ConfigDict(frozen=True)

    bundle: str
    commit: str
    ready: int
    desired: int
    state: BundleState
    message: str
    # Unpacked states: older runs' reports, and in packed ones the deployments on clusters
    # the list does not name (a cluster being removed).
    states: dict[str, BundleState] = Field(default_factory=dict)
    # Deployments per state (state-agnostic: any state name), the first non-ready ones, and
    # the per-cluster states packed (``clusters_key`` names the cluster list ``codes`` is
    # over; its symbols stand for the states of ``counts`` by name). All left out of the JSON
    # when empty, so reports of older runs serialize as they did.
    counts: dict[str, int] = Field(default_factory=dict, exclude_if=_unless_empty)
    non_ready: list[NonReadyEntry] = Field(default_factory=list, exclude_if=_unless_empty)
    clusters_key: str = Field(default="", exclude_if=_unless_empty)
    codes: str = Field(default="", exclude_if=_unless_empty)
    retired: bool = False
    # Partitions of the staged version whose clusters are all updated and available (set
    # only when the rollout has several), so the GitRepo can tell "partition done".
    partitions_done: list[str] = Field(default_factory=list)
    # Why a gate halted the rollout of this commit (flotilla.gates), else empty and left out
    # of the JSON, so reports of bundles without gates are what they always were.
    halted: str = Field(default="", exclude_if=lambda value: not value)
    # The halt asks its GitRepo to roll the bundle back to its last Ready version (the halted
    # partition has autoRollback); left out of the JSON when not, as above.
    auto_rollback: bool = Field(default=False, exclude_if=lambda value: not value)


def reported_summary(summary: Summary) -> tuple[dict[str, int], list[NonReadyEntry]]:
    """What a report carries of a bundle's summary: its non-zero counts per state and its
    first MAX_REPORTED_NON_READY non-ready deployments, each message cut to one short line."""
    counts = {str(state): n for state, n in summary.counts.items() if n}
    shown = [
        entry.model_copy(
            update={"message": one_line(explain(entry.state, entry.message), REPORTED_MESSAGE)}
        )
        for entry in summary.non_ready[:MAX_REPORTED_NON_READY]
    ]
    return counts, shown


def deployment_page(
    reports: Mapping[str, BundleReport], offset: int, size: int
) -> tuple[list[tuple[str, str, str, BundleState]], int]:
    """One page of the bundle deployments the reports name, as (bundle, cluster, commit,
    state) in (bundle, cluster) order from ``offset``, and how many there are in all. Whole
    bundles before the page are counted, not listed, so a page costs its own size."""
    page: list[tuple[str, str, str, BundleState]] = []
    skip, total = max(offset, 0), 0
    for name, report in sorted(reports.items()):
        total += len(report.states)
        room = size - len(page)
        if skip >= len(report.states) or room <= 0:
            skip = max(skip - len(report.states), 0)
            continue
        clusters = sorted(report.states)[skip : skip + room]
        page.extend((name, cluster, report.commit, report.states[cluster]) for cluster in clusters)
        skip = 0
    return page, total


class BundleSource(Protocol):
    """A bundle of the GitRepo's commit (``BundleRef`` of the GitOps activities fits)."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def error(self) -> str: ...


class BundleLine(BaseModel):
    """One bundle in a GitRepo's status (Halted when a gate halted its rollout)."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    state: BundleState | RepoState
    ready: int
    desired: int
    message: str
    error: str = ""
    # When the GitRepo saw the bundle's state change to this one (None: before it kept track).
    since: datetime | None = None
    # Its deployments per state and its first non-ready ones, as its report gave them (empty
    # for reports of older runs).
    counts: dict[str, int] = Field(default_factory=dict, exclude_if=_unless_empty)
    non_ready: list[NonReadyEntry] = Field(default_factory=list, exclude_if=_unless_empty)


class GitRepoSummary(BaseModel):
    """Fleet's GitRepo status fields, aggregated from its bundles' reports."""

    model_config = ConfigDict(frozen=True)

    ready_clusters: int
    desired_ready_clusters: int
    ready_bundle_deployments: str
    state: BundleState | RepoState
    message: str
    bundles: list[BundleLine]
    # Bundle deployments per state over every bundle (Fleet's GitRepo summary counts these).
    deployment_counts: dict[str, int] = Field(default_factory=dict)


@dataclass(frozen=True)
class ClusterTally:
    """Which clusters one or more reports have a deployment on, and on which of those one is
    not Ready, as bit masks over positions (bit ``i``: position ``i``): ``named`` over the
    caller's cluster list (``tally_report``'s ``position``), ``positional`` over the list a
    snapshot by digest names by key only (``by_position``), and the names neither covers.
    A cluster is ready when some report has a deployment on it and none has one not Ready,
    so the tally of many reports is their bitwise or (``plus``)."""

    named: int = 0
    named_not_ready: int = 0
    positional: int = 0
    positional_not_ready: int = 0
    other: frozenset[str] = frozenset()
    other_not_ready: frozenset[str] = frozenset()
    # The report's deployments per state, by name (one report's only: ``plus`` drops them).
    counts: Mapping[str, int] = field(default_factory=dict)

    def plus(self, other: ClusterTally) -> ClusterTally:
        return ClusterTally(
            named=self.named | other.named,
            named_not_ready=self.named_not_ready | other.named_not_ready,
            positional=self.positional | other.positional,
            positional_not_ready=self.positional_not_ready | other.positional_not_ready,
            other=self.other | other.other,
            other_not_ready=self.other_not_ready | other.other_not_ready,
        )

    @property
    def clusters(self) -> int:
        return self.named.bit_count() + self.positional.bit_count() + len(self.other)

    @property
    def ready_clusters(self) -> int:
        not_ready = self.named_not_ready.bit_count() + self.positional_not_ready.bit_count()
        return self.clusters - not_ready - len(self.other_not_ready)


def _mask(positions: Iterable[int]) -> int:
    """The bit mask with the bits at ``positions`` set (built in a byte array: setting one bit
    of a big integer at a time copies it each time)."""
    bits = bytearray()
    for at in positions:
        byte = at >> 3
        if byte >= len(bits):
            bits.extend(bytes(byte + 1 - len(bits)))
        bits[byte] |= 1 << (at & 7)
    return int.from_bytes(bits, "little")


def tally_report(
    report: BundleReport,
    *,
    position: Mapping[str, int] | None = None,
    by_position: Callable[[BundleReport], Mapping[int, BundleState]] | None = None,
) -> ClusterTally:
    """The clusters ``report`` has a deployment on and those not Ready there: its named states
    at their ``position`` in the caller's cluster list (by name when it has none or the list
    lacks them) and, while it is still packed, the states ``by_position`` reads."""
    position = position or {}
    named: list[int] = []
    named_not_ready: list[int] = []
    other: set[str] = set()
    other_not_ready: set[str] = set()
    for cluster, state in report.states.items():
        at = position.get(cluster)
        if at is None:
            other.add(cluster)
            if state is not BundleState.READY:
                other_not_ready.add(cluster)
        else:
            named.append(at)
            if state is not BundleState.READY:
                named_not_ready.append(at)
    read = by_position(report) if report.codes and by_position is not None else {}
    return ClusterTally(
        named=_mask(named),
        named_not_ready=_mask(named_not_ready),
        positional=_mask(read),
        positional_not_ready=_mask(at for at, s in read.items() if s is not BundleState.READY),
        other=frozenset(other),
        other_not_ready=frozenset(other_not_ready),
        counts=report.counts or count_states(report.states.values()),
    )


def summarize_gitrepo(
    bundles: Iterable[BundleSource],
    reports: Mapping[str, BundleReport],
    *,
    commit: str,
    error: str = "",
    error_since: datetime | None = None,
    stale_is_wait_applied: bool = True,
    git_states: bool = True,
    restricted: str = "",
    pinned: Mapping[str, str] | None = None,
    by_position: Callable[[BundleReport], Mapping[int, BundleState]] | None = None,
    tally: Callable[[BundleReport], ClusterTally] | None = None,
) -> GitRepoSummary:
    """Aggregate a GitRepo's bundles: ready/desired clusters and bundle deployments, the worst
    state and the line that explains it.

    A cluster is ready when every bundle reports it Ready. A bundle with an error is
    ErrApplied whatever it last reported; one that has not reported is Pending; one whose
    report is about an older commit is WaitApplied (with ``stale_is_wait_applied``; older
    runs showed the old report's state). A git ``error`` outranks every bundle state: the
    GitRepo is GitError with the error, since when, and the commit it still serves. Before
    the first commit is read (and without an error) it is GitUpdating, never Ready. Without
    ``git_states`` (older runs) a git error was GitError only before a first commit was read.
    A workspace restriction that refuses the GitRepo outranks everything (Restricted, with why).
    ``pinned`` names bundles held at another commit than ``commit`` (a version pin): their
    reports are current at that commit. A bundle whose rollout a gate halted is Halted, and so
    is the GitRepo (below a git error or a restriction; above every deployment state).
    ``by_position`` reads the states of a report still packed (``codes``) by position in the
    GitRepo's cluster list when it knows that list by key only (a snapshot by digest): such
    clusters count as the named ones do, at their position. ``tally`` gives a report's
    ``ClusterTally`` (``tally_report`` with ``by_position`` when None); a caller that keeps
    each report's tally while the report is unchanged makes this call cost per bundle, not
    per bundle and cluster.
    """
    tally = tally or (lambda report: tally_report(report, by_position=by_position))
    lines: list[BundleLine] = []
    ready = desired = 0
    total = ClusterTally()
    worst = BundleState.READY
    halted: BundleLine | None = None
    deployment_counts: dict[str, int] = {}
    for bundle in sorted(bundles, key=lambda b: b.name):
        report = reports.get(bundle.name)
        state: BundleState | RepoState = report.state if report else BundleState.PENDING
        message = report.message if report else "no status report from it yet"
        expected = (pinned or {}).get(bundle.name, commit)
        if stale_is_wait_applied and report and report.commit != expected:
            # The bundle has not taken this commit yet: its report speaks of an older one.
            state = BundleState.WAIT_APPLIED
            message = f"applying commit {commit[:12]}"
        if bundle.error:
            state = BundleState.ERR_APPLIED
        worst = worst_state([worst, BundleState(state)])
        if report and report.halted and report.commit == expected and not bundle.error:
            state, message = RepoState.HALTED, report.halted
        if report:
            ready += report.ready
            desired += report.desired
            counted = tally(report)
            for name, n in counted.counts.items():
                deployment_counts[name] = deployment_counts.get(name, 0) + n
            total = total.plus(counted)
        line = BundleLine(
            name=bundle.name,
            path=bundle.path,
            state=state,
            ready=report.ready if report else 0,
            desired=report.desired if report else 0,
            message=explain(state, message),
            error=bundle.error,
            counts=report.counts if report else {},
            non_ready=report.non_ready if report else [],
        )
        halted = halted or (line if state is RepoState.HALTED else None)
        lines.append(line)
    first_bad = halted or next(
        (b for b in lines if b.state is worst and worst is not BundleState.READY), None
    )
    shown: BundleState | RepoState = RepoState.HALTED if halted else worst
    message = f"{first_bad.name}: {first_bad.error or first_bad.message}" if first_bad else ""
    if not git_states:
        shown = RepoState.GIT_ERROR if error and not commit else worst
        message = error or message
    elif error:
        shown, message = RepoState.GIT_ERROR, git_error_message(error, error_since, commit)
    elif not commit:
        shown, message = RepoState.GIT_UPDATING, explain(RepoState.GIT_UPDATING, "")
    if restricted:
        shown, message = RepoState.RESTRICTED, restricted
    return GitRepoSummary(
        ready_clusters=total.ready_clusters,
        desired_ready_clusters=total.clusters,
        ready_bundle_deployments=f"{ready}/{desired}",
        state=shown,
        message=message,
        bundles=lines[:MAX_BUNDLE_LINES],
        deployment_counts=deployment_counts,
    )


def count_states(states: Iterable[str]) -> dict[str, int]:
    """How many of ``states`` are in each state, by name."""
    counts: dict[str, int] = {}
    for state in states:
        counts[str(state)] = counts.get(str(state), 0) + 1
    return counts


def since_text(when: datetime | None) -> str:
    """A moment as people read it in status lines: UTC to the second."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else "unknown"


def git_error_message(error: str, since: datetime | None, commit: str) -> str:
    """The GitRepo's line while git cannot be read: the error, since when, what still runs."""
    serving = f"still serving {commit[:12]}" if commit else "no commit read yet"
    tail = f" (since {since_text(since)}; {serving})"
    # The error is cut, never the tail: since when and what runs are the point of the line.
    return one_line(error, MAX_MESSAGE - len(tail)) + tail


def cluster_state(offline: str, deployments: Mapping[str, BundleState]) -> StateWithMessage:
    """A cluster's state by the same rule: Offline when it does not answer, else the worst of
    its bundle deployments (by bundle name), Ready only when every one is."""
    if offline:
        return StateWithMessage(state=BundleState.OFFLINE, message=one_line(offline))
    worst = worst_state(deployments.values())
    if worst is BundleState.READY:
        return StateWithMessage(state=worst)
    bad = sorted(name for name, state in deployments.items() if state is worst)
    return StateWithMessage(state=worst, message=f"{worst} on {_listed(bad)}")


# --- conditions -------------------------------------------------------------------------------


class Condition(BaseModel):
    """One condition of an object, as ``kubectl describe`` lists them: true or not, why, and
    when it last changed (the moment its status or reason changed, not its message)."""

    model_config = ConfigDict(frozen=True)

    type: str
    status: bool
    reason: str = ""
    message: str = ""
    last_transition: datetime | None = None


def transition(
    previous: Sequence[Condition], current: Sequence[Condition], now: datetime
) -> list[Condition]:
    """``current`` with transition times: kept from ``previous`` while a condition's status and
    reason are unchanged, ``now`` where they changed or the condition is new."""
    before = {c.type: c for c in previous}
    out = []
    for condition in current:
        old = before.get(condition.type)
        unchanged = old is not None and (old.status, old.reason) == (
            condition.status,
            condition.reason,
        )
        when = old.last_transition if unchanged and old is not None else now
        out.append(condition.model_copy(update={"last_transition": when}))
    return out


class StateSince(BaseModel):
    """A deployment's state and when it took that state (its last transition)."""

    model_config = ConfigDict(frozen=True)

    state: BundleState
    since: datetime


def state_since(
    previous: Mapping[str, StateSince], states: Mapping[str, StateWithMessage], now: datetime
) -> dict[str, StateSince]:
    """When each deployment took its state: kept from ``previous`` while the state is the
    same (a changed message is no transition, as for conditions), ``now`` where it changed
    or the deployment is new; deployments no longer in ``states`` are dropped."""
    out = {}
    for name, item in states.items():
        old = previous.get(name)
        out[name] = (
            old
            if old is not None and old.state is item.state
            else StateSince(state=item.state, since=now)
        )
    return out


def ready_condition(state: str, message: str) -> Condition:
    """Every object's Ready condition: true only in state Ready; else the state shown is its
    reason and the state's line its message."""
    ready = state == BundleState.READY
    return Condition(
        type="Ready", status=ready, reason=state, message="" if ready else explain(state, message)
    )


def gitrepo_conditions(summary: GitRepoSummary, error: str) -> list[Condition]:
    """A GitRepo's conditions: GitPolling (git can be read, Fleet's name) and Ready."""
    return [
        Condition(
            type="GitPolling",
            status=not error,
            reason=RepoState.GIT_ERROR if error else "Polled",
            message=one_line(error),
        ),
        ready_condition(summary.state, summary.message),
    ]
