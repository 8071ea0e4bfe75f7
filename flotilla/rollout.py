"""Fleet's rollout: partitions and maxUnavailable decisions as a pure function of state."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from flotilla.errors import SpecError, short_repr
from flotilla.models import Partition, RolloutStrategy
from flotilla.targeting import has_criteria, match_selector

DEFAULT_LIMIT = "100%"
DEFAULT_AUTO_PARTITION_SIZE = "25%"
DEFAULT_AUTO_PARTITION_THRESHOLD = 200
DEFAULT_MAX_NEW = 50
UNMATCHED_PARTITION = "unmatched"

_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class RolloutTarget(_Model):
    """One cluster a bundle targets, with what runs there now and what should.

    Versions are opaque deployment ids: ``staged`` is the newest version planned for the
    cluster, ``released`` the version it was last told to run (None: no deployment yet),
    ``applied`` the version the cluster reports applied. ``paused``: the cluster or bundle is
    paused; ``blocked``: its dependsOn bundles are not in an accepted state on this cluster yet.
    """

    cluster: str
    labels: dict[str, str] = {}
    # Group name -> that ClusterGroup's own labels, for clusterGroup/clusterGroupSelector.
    groups: dict[str, dict[str, str]] = {}
    staged: str
    released: str | None = None
    applied: str | None = None
    ready: bool = False
    paused: bool = False
    blocked: bool = False


class PlannedPartition(_Model):
    """Clusters that roll out together, in order, with their own maxUnavailable: the plan
    made from ``rolloutStrategy`` (``flotilla.models.Partition`` is one of its YAML entries)."""

    name: str
    clusters: list[str]
    max_unavailable: int
    note: str = ""


class PartitionStatus(_Model):
    """How far one partition has got, after this pass's moves."""

    name: str
    count: int
    max_unavailable: int
    updated: int
    unavailable: int
    reached: bool


class ShardView(_Model):
    """One shard's part in a rollout that spans shards (``flotilla.shards``).

    ``offset``: how many of the bundle's targets sort before this shard's first one, and
    ``total`` the bundle's target count, so automatic partitions are cut as over the whole
    bundle; ``reached``: the partitions the bundle's rollout has reached (no others move);
    ``budgets``: how many of this shard's deployments may be unavailable at once, bundle-wide
    (key ``""``) and per partition name: the shard's share of each maxUnavailable.
    """

    offset: int = 0
    total: int = 0
    reached: list[str] = []
    budgets: dict[str, int] = {}


class RolloutState(_Model):
    """Everything ``plan_rollout`` needs: the strategy and every targeted cluster."""

    strategy: RolloutStrategy = RolloutStrategy()
    targets: list[RolloutTarget]
    # Fleet creates at most this many new deployments per pass, so a big fleet joins in waves.
    max_new: int = Field(default=DEFAULT_MAX_NEW, ge=1)
    # Partitions a gate keeps from starting (flotilla.gates): name -> why, for people.
    closed: dict[str, str] = {}
    # Set when these targets are one shard of a bigger bundle: limits come from the shard's
    # budgets and partition order from the bundle (None: the targets are the whole bundle).
    shard: ShardView | None = None

    @model_validator(mode="after")
    def _one_target_per_cluster(self) -> RolloutState:
        seen: set[str] = set()
        for target in self.targets:
            if target.cluster in seen:
                raise ValueError(f"cluster {target.cluster!r} is targeted twice")
            seen.add(target.cluster)
        return self


class RolloutPlan(_Model):
    """What to do in this pass and how things stand, for workflows and for people.

    Cluster lists, each in partition order: ``deploy`` move to the staged version now;
    ``paused`` and ``blocked`` stay staged (OutOfSync / WaitingForDependency); ``held`` wait
    for maxUnavailable budget; ``waiting`` are in partitions this pass did not reach;
    ``not_created`` are new deployments beyond ``max_new``; ``gated`` are the clusters of
    the partition a gate keeps from starting, and ``gate`` says why.
    """

    deploy: list[str]
    paused: list[str]
    blocked: list[str]
    held: list[str]
    waiting: list[str]
    not_created: list[str]
    partitions: list[PartitionStatus]
    current_partition: int
    total_partitions: int
    updated: int
    total: int
    unavailable: int
    max_unavailable: int
    done: bool
    notes: list[str]
    summary: str
    gated: list[str] = []
    gate: str = ""
    gated_partition: str = ""


def limit(count: int, value: int | str | None, *, field: str = "maxUnavailable") -> int:
    """Return how many of ``count`` items ``value`` (an int, "N%" or None for 100%) allows.

    As in Fleet: a percentage is rounded down but allows at least 1 ("0%" too), and ``count``
    of 0 or less gives 1. Integers are clamped to [0, count], which changes no move decision
    (Fleet keeps a negative maxUnavailablePartitions and then stops after the first partition).
    The value is checked even when ``count`` is 0, so a typo shows before the first cluster joins.
    """
    allowed = _limit_of(count, DEFAULT_LIMIT if value is None else value, field)
    return 1 if count <= 0 else allowed


def _limit_of(count: int, value: int | str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpecError(
            f"must be an integer or a percentage such as '25%' ({short_repr(value)})",
            field=field,
        )
    if isinstance(value, int):
        return min(max(value, 0), max(count, 0))
    # Fleet reads a positive integer in a string as that integer; "0" and "-1" are errors there.
    if _INTEGER.fullmatch(value) and int(value) > 0:
        return min(int(value), max(count, 0))
    if not value.endswith("%"):
        raise SpecError(
            f"must be an integer or a percentage ending with '%' ({short_repr(value)})",
            field=field,
        )
    # Go's ParseFloat syntax without inf/nan, which no one means as a share of clusters.
    if not _DECIMAL.fullmatch(value[:-1]):
        raise SpecError(f"is not a valid percentage ({short_repr(value)})", field=field)
    # Above 100% allows everything; capping first also keeps '1e999%' from overflowing.
    percent = min(float(value[:-1]), 100.0)
    if percent <= 0:
        return 1
    return max(int(count * percent) // 100, 1)


def make_partitions(
    targets: list[RolloutTarget], strategy: RolloutStrategy, shard: ShardView | None = None
) -> list[PlannedPartition]:
    """Split ``targets`` into ordered partitions as Fleet does, plus one for any leftovers.

    Clusters no manual partition takes go into a last partition named ``unmatched`` with a
    note: Fleet would never deploy them, which its own docs do not say. For a shard, automatic
    partitions are those of the whole bundle (``shard.offset``, ``shard.total``), each with
    only this shard's members; partitions without any are left out.
    """
    ordered = sorted(targets, key=lambda t: t.cluster)
    if strategy.partitions:
        return _partition_manually(ordered, strategy)
    return _partition_automatically(ordered, strategy, shard)


def auto_partition_names(count: int, strategy: RolloutStrategy) -> list[tuple[str, int]] | None:
    """The automatic partitions of ``count`` targets, in order, as (name, size); None when
    the strategy names its partitions."""
    if strategy.partitions:
        return None
    size = _auto_partition_size(count, strategy)
    if size is None:
        return [("all", count)]
    return [
        (f"clusters {start + 1}-{min(start + size, count)}", min(size, count - start))
        for start in range(0, count, size)
    ]


def _auto_partition_size(count: int, strategy: RolloutStrategy) -> int | None:
    """How many targets each automatic partition takes (None: one partition of all)."""
    size_value = strategy.auto_partition_size
    disabled = isinstance(size_value, int) and size_value <= 0
    threshold = strategy.auto_partition_threshold
    if threshold is None:
        threshold = DEFAULT_AUTO_PARTITION_THRESHOLD
    if disabled or count < threshold:
        return None
    return limit(
        count,
        DEFAULT_AUTO_PARTITION_SIZE if size_value is None else size_value,
        field="rolloutStrategy.autoPartitionSize",
    )


def _partition_automatically(
    ordered: list[RolloutTarget], strategy: RolloutStrategy, shard: ShardView | None = None
) -> list[PlannedPartition]:
    rollout_limit = (strategy.max_unavailable, "rolloutStrategy.maxUnavailable")
    offset, total = (shard.offset, shard.total) if shard else (0, len(ordered))
    size = _auto_partition_size(total, strategy)
    if size is None:
        return [_partition("all", ordered, rollout_limit)]
    partitions = []
    for start in range(0, total, size):
        members = ordered[max(start - offset, 0) : max(start + size - offset, 0)]
        if shard is None or members:
            name = f"clusters {start + 1}-{min(start + size, total)}"
            partitions.append(_partition(name, members, rollout_limit))
    return partitions


def _partition_manually(
    ordered: list[RolloutTarget], strategy: RolloutStrategy
) -> list[PlannedPartition]:
    rollout_limit = (strategy.max_unavailable, "rolloutStrategy.maxUnavailable")
    remaining = list(ordered)
    partitions = []
    for index, spec in enumerate(strategy.partitions or []):
        taken = [t for t in remaining if _partition_matches(spec, t)]
        remaining = [t for t in remaining if t not in taken]
        own = (spec.max_unavailable, f"rolloutStrategy.partitions[{index}].maxUnavailable")
        partitions.append(
            _partition(spec.name or f"partition-{index + 1}", taken, own, rollout_limit)
        )
    if remaining:
        leftover = _partition(UNMATCHED_PARTITION, remaining, rollout_limit)
        names = ", ".join(t.cluster for t in remaining[:5]) + (
            ", ..." if len(remaining) > 5 else ""
        )
        note = (
            f"{len(remaining)} cluster(s) match no partition ({names}); Fleet would never "
            f"deploy them, flotilla deploys them last in partition {UNMATCHED_PARTITION!r}"
        )
        partitions.append(leftover.model_copy(update={"note": note}))
    return partitions


def _partition_matches(spec: Partition, target: RolloutTarget) -> bool:
    """Every criterion the partition sets must hold, group criteria for one and the same group.

    A cluster in no group is tried with an empty group name and labels, as targeting does.
    """
    if not has_criteria(spec):
        return False
    if spec.cluster_name and spec.cluster_name != target.cluster:
        return False
    if spec.cluster_selector is not None and not match_selector(
        spec.cluster_selector, target.labels
    ):
        return False
    groups: list[tuple[str, Mapping[str, str]]] = list(target.groups.items()) or [("", {})]
    return any(
        (not spec.cluster_group or spec.cluster_group == group)
        and (
            spec.cluster_group_selector is None
            or match_selector(spec.cluster_group_selector, labels)
        )
        for group, labels in groups
    )


def _partition(
    name: str, targets: list[RolloutTarget], *choices: tuple[int | str | None, str]
) -> PlannedPartition:
    """The first limit that is set wins, as in Fleet; the error names the field it came from."""
    value, field = next(((v, f) for v, f in choices if v is not None), (None, choices[-1][1]))
    return PlannedPartition(
        name=name,
        clusters=[t.cluster for t in targets],
        max_unavailable=limit(len(targets), value, field=field),
    )


def is_unavailable(target: RolloutTarget) -> bool:
    """A deployment is unavailable while its version is not yet applied or it is not Ready."""
    return target.released is not None and (target.applied != target.released or not target.ready)


def is_up_to_date(target: RolloutTarget) -> bool:
    """Released and applied at the staged version, the newest the bundle has for it."""
    return target.released == target.staged and target.applied == target.staged


def plan_rollout(state: RolloutState) -> RolloutPlan:
    """Decide which clusters move to their staged version in this pass, following Fleet.

    Partition by partition, a cluster moves when it is not paused and both the bundle-wide and
    its partition's unavailable counts are under their limits, or it is unavailable already.
    Later partitions wait once more partitions are unavailable than maxUnavailablePartitions.
    New deployments (never released) are created at most ``max_new`` per pass.
    """
    strategy = state.strategy
    shard = state.shard
    partitions = make_partitions(state.targets, strategy, shard)
    if shard is not None:
        # The bundle's limits are shared out between its shards: this shard has its budgets.
        partitions = [
            p.model_copy(update={"max_unavailable": shard.budgets.get(p.name, 0)})
            for p in partitions
        ]
    by_cluster = {t.cluster: t for t in state.targets}
    max_unavailable = limit(
        len(state.targets), strategy.max_unavailable, field="rolloutStrategy.maxUnavailable"
    )
    if shard is not None:
        max_unavailable = shard.budgets.get("", 0)
    max_unavailable_partitions = limit(
        len(partitions),
        0 if strategy.max_unavailable_partitions is None else strategy.max_unavailable_partitions,
        field="rolloutStrategy.maxUnavailablePartitions",
    )
    pass_ = _Pass(
        unavailable=sum(is_unavailable(t) for t in state.targets),
        max_unavailable=max_unavailable,
        max_new=state.max_new,
    )
    statuses: list[PartitionStatus] = []
    stopped_at: int | None = None
    unavailable_partitions = 0
    gated: PlannedPartition | None = None
    for index, partition in enumerate(partitions):
        members = [by_cluster[c] for c in partition.clusters]
        if (
            stopped_at is None
            and partition.name in state.closed
            and any(not is_up_to_date(m) for m in members)
        ):
            # A gate keeps it from starting, and everything after it waits too.
            gated, stopped_at = partition, index
        if stopped_at is None and shard is not None and partition.name not in shard.reached:
            # The bundle's rollout has not reached it: the shard's part waits.
            stopped_at = index
        if stopped_at is not None:
            statuses.append(_status(partition, members, reached=False))
            continue
        moved = pass_.advance(partition, members)
        status = _status(partition, moved, reached=True)
        statuses.append(status)
        if status.unavailable > status.max_unavailable:
            unavailable_partitions += 1
        # Across shards the bundle counts unavailable partitions (flotilla.shards).
        if unavailable_partitions > max_unavailable_partitions and shard is None:
            stopped_at = index
        for member in moved:
            by_cluster[member.cluster] = member
    waiting = [
        c
        for s, p in zip(statuses, partitions, strict=True)
        if not s.reached
        for c in p.clusters
        if not is_up_to_date(by_cluster[c])
    ]
    plan = _plan(
        partitions, statuses, after=by_cluster, pass_=pass_, waiting=waiting, stopped_at=stopped_at
    )
    if gated is None:
        return plan
    gate = state.closed[gated.name]
    return plan.model_copy(
        update={
            "gated": [c for c in gated.clusters if not is_up_to_date(by_cluster[c])],
            "gate": gate,
            "gated_partition": gated.name,
            "summary": f"{plan.summary}, {gate}",
        }
    )


class _Pass:
    """The counters one pass carries from partition to partition, as Fleet's bundle status does."""

    def __init__(self, *, unavailable: int, max_unavailable: int, max_new: int) -> None:
        self.unavailable = unavailable
        self.max_unavailable = max_unavailable
        self.max_new = max_new
        self.created = 0
        self.deploy: list[str] = []
        self.paused: list[str] = []
        self.blocked: list[str] = []
        self.held: list[str] = []
        self.not_created: list[str] = []

    def advance(
        self, partition: PlannedPartition, members: list[RolloutTarget]
    ) -> list[RolloutTarget]:
        """Move what this partition's limits allow; return members as they are after the moves."""
        partition_unavailable = sum(is_unavailable(t) for t in members)
        after = []
        for target in members:
            new = target.released is None
            if new and self.created >= self.max_new:
                self.not_created.append(target.cluster)
                after.append(target)
                continue
            self.created += new
            if target.released == target.staged:
                after.append(target)
                continue
            if target.paused or target.blocked:
                (self.paused if target.paused else self.blocked).append(target.cluster)
                after.append(target)
                continue
            # A brand-new deployment is not Ready yet, so like Fleet it never waits for budget.
            already = new or is_unavailable(target)
            if already or (
                self.unavailable < self.max_unavailable
                and partition_unavailable < partition.max_unavailable
            ):
                if not already:
                    self.unavailable += 1
                    partition_unavailable += 1
                self.deploy.append(target.cluster)
                after.append(target.model_copy(update={"released": target.staged}))
            else:
                self.held.append(target.cluster)
                after.append(target)
        return after


def _status(
    partition: PlannedPartition, members: list[RolloutTarget], *, reached: bool
) -> PartitionStatus:
    # For a partition, a deployment that is not yet up to date counts as unavailable too.
    return PartitionStatus(
        name=partition.name,
        count=len(members),
        max_unavailable=partition.max_unavailable,
        updated=sum(is_up_to_date(t) for t in members),
        unavailable=sum(not is_up_to_date(t) or is_unavailable(t) for t in members),
        reached=reached,
    )


def _plan(
    partitions: list[PlannedPartition],
    statuses: list[PartitionStatus],
    *,
    after: dict[str, RolloutTarget],
    pass_: _Pass,
    waiting: list[str],
    stopped_at: int | None,
) -> RolloutPlan:
    targets = list(after.values())
    updated = sum(is_up_to_date(t) for t in targets)
    unavailable = sum(is_unavailable(t) for t in targets)
    # The partition a person should look at: where the pass stopped, else the first unsettled.
    current = (
        stopped_at
        if stopped_at is not None
        else next((i for i, s in enumerate(statuses) if s.unavailable), max(len(statuses) - 1, 0))
    )
    plan = RolloutPlan(
        deploy=pass_.deploy,
        paused=pass_.paused,
        blocked=pass_.blocked,
        held=pass_.held,
        waiting=waiting,
        not_created=pass_.not_created,
        partitions=statuses,
        current_partition=current + 1 if partitions else 0,
        total_partitions=len(partitions),
        updated=updated,
        total=len(targets),
        unavailable=unavailable,
        max_unavailable=pass_.max_unavailable,
        done=updated == len(targets) and not unavailable,
        notes=[p.note for p in partitions if p.note],
        summary="",
    )
    members = [after[c] for c in partitions[current].clusters] if partitions else []
    return plan.model_copy(update={"summary": _summarize(plan, members)})


def _summarize(plan: RolloutPlan, members: list[RolloutTarget]) -> str:
    """One line for people, e.g. ``partition 2/4: 3/10 clusters updated, waiting for 2 ...``."""
    if plan.total == 0:
        return "no clusters targeted"
    if plan.done:
        return f"rollout complete: {plan.total}/{plan.total} clusters updated"
    status = plan.partitions[plan.current_partition - 1]
    in_partition = {t.cluster for t in members}
    reasons = []
    not_ready = sum(is_unavailable(t) for t in members)
    if not_ready:
        reasons.append(f"waiting for {not_ready} to become Ready")
    for count, why in (
        (len(in_partition.intersection(plan.paused)), "paused"),
        (len(in_partition.intersection(plan.blocked)), "waiting for dependencies"),
        (len(in_partition.intersection(plan.held)), "held by maxUnavailable"),
        (len(in_partition.intersection(plan.not_created)), "queued (at most maxNew new per pass)"),
    ):
        if count:
            reasons.append(f"{count} {why}")
    head = (
        f"partition {plan.current_partition}/{plan.total_partitions}: "
        f"{status.updated}/{status.count} clusters updated"
    )
    return ", ".join([head, *reasons])
