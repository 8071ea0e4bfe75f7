"""Shards of a big bundle: which shard owns a cluster, and one rollout across all shards.

A bundle on more clusters than the shard size is rolled out by shard workflows, each owning
the clusters of one range of names. A shard tells its bundle only counts per partition
(``PartitionCounts``); the bundle answers with the partitions its rollout has reached and
each shard's share of every maxUnavailable (``plan_shards``), so the limits hold for the
whole bundle as Fleet counts them while no workflow carries every cluster.

Budgets are safe under delay: a shard may act on any grant it was sent until it says which
one it acts on, so the bundle counts, per shard, the highest budget sent since the last one
the shard confirmed (``ceiling``) as spent, and shares out only what is left.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from flotilla.clusterstates import decode_states, encode_states
from flotilla.gates import (
    GateDecision,
    GateRecord,
    PartitionGate,
    decide,
    observe,
    partition_gates,
    partition_order,
)
from flotilla.models import RolloutStrategy
from flotilla.rollout import (
    UNMATCHED_PARTITION,
    PartitionStatus,
    RolloutPlan,
    RolloutTarget,
    ShardView,
    auto_partition_names,
    is_unavailable,
    is_up_to_date,
    limit,
    make_partitions,
)
from flotilla.status import SEVERITY, BundleState, count_states

# States a deployment keeps while its shard has not taken the bundle's commit yet (worse
# than waiting for it); every other state is an older version's, so it is WaitApplied.
_WORSE_THAN_WAITING = frozenset(SEVERITY[: SEVERITY.index(BundleState.WAIT_APPLIED)])


class PartitionCounts(BaseModel):
    """One partition as one shard sees it after its pass: how many of its clusters are in
    it, up to date, unavailable as a partition counts it (not up to date, or not Ready),
    unavailable as a deployment counts it (released but not applied, or not Ready), and
    waiting for budget (available, behind the staged version, neither paused nor blocked)."""

    model_config = ConfigDict(frozen=True)

    name: str
    count: int = 0
    updated: int = 0
    unavailable: int = 0
    not_ready: int = 0
    pending: int = 0


class ShardPlan(BaseModel):
    """What the bundle tells its shards: the partitions reached and each shard's budgets."""

    model_config = ConfigDict(frozen=True)

    reached: list[str]
    budgets: dict[int, dict[str, int]]
    summary: str
    # The partition the rollout stands at because a gate keeps it closed, and why.
    gated: str = ""
    gate: str = ""
    # Each partition of the bundle summed over its shards, in rollout order.
    partitions: list[PartitionStatus] = []


def shard_boundaries(names: Iterable[str], size: int) -> list[str]:
    """The first name of each shard's range: the sorted names cut every ``size`` (the first
    range starts at ""), so a cluster added later joins the range its name falls in."""
    ordered = sorted(set(names))
    starts = [ordered[i] for i in range(0, len(ordered), max(size, 1))]
    return ["", *starts[1:]]


def shard_of(name: str, boundaries: list[str]) -> int:
    """The shard whose range holds ``name``."""
    return max(bisect.bisect_right(boundaries, name) - 1, 0)


def shard_offsets(targets: Mapping[int, int]) -> dict[int, int]:
    """How many of the bundle's targets sort before each shard's (ranges are in name order)."""
    offsets, seen = {}, 0
    for index in sorted(targets):
        offsets[index] = seen
        seen += targets[index]
    return offsets


def _needs_budget(target: RolloutTarget) -> bool:
    return (
        target.released is not None
        and target.released != target.staged
        and not target.paused
        and not target.blocked
        and not is_unavailable(target)
    )


def shard_counts(
    targets: list[RolloutTarget], plan: RolloutPlan, strategy: RolloutStrategy, shard: ShardView
) -> list[PartitionCounts]:
    """A shard's partitions after the moves of ``plan``, as counts for its bundle."""
    after = {t.cluster: t for t in targets}
    for name in plan.deploy:
        after[name] = after[name].model_copy(update={"released": after[name].staged})
    counts = []
    for partition in make_partitions(targets, strategy, shard):
        members = [after[c] for c in partition.clusters]
        counts.append(
            PartitionCounts(
                name=partition.name,
                count=len(members),
                updated=sum(is_up_to_date(m) for m in members),
                unavailable=sum(not is_up_to_date(m) or is_unavailable(m) for m in members),
                not_ready=sum(is_unavailable(m) for m in members),
                pending=sum(_needs_budget(m) for m in members),
            )
        )
    return counts


def _order(strategy: RolloutStrategy, total: int) -> list[tuple[str, int | str | None, str]]:
    """The bundle's partitions in rollout order, each with its maxUnavailable and field."""
    rollout = strategy.max_unavailable
    automatic = auto_partition_names(total, strategy)
    if automatic is not None:
        return [(name, rollout, "rolloutStrategy.maxUnavailable") for name, _ in automatic]
    order: list[tuple[str, int | str | None, str]] = []
    for index, spec in enumerate(strategy.partitions or []):
        own = spec.max_unavailable
        order.append(
            (
                spec.name or f"partition-{index + 1}",
                rollout if own is None else own,
                f"rolloutStrategy.partitions[{index}].maxUnavailable"
                if own is not None
                else "rolloutStrategy.maxUnavailable",
            )
        )
    order.append((UNMATCHED_PARTITION, rollout, "rolloutStrategy.maxUnavailable"))
    return order


def plan_shards(
    strategy: RolloutStrategy,
    counts: Mapping[int, list[PartitionCounts]],
    ceilings: Mapping[int, Mapping[str, int]],
    closed: Mapping[str, str] | None = None,
    *,
    even: bool = False,
    usable: bool = False,
) -> ShardPlan:
    """Decide, from every shard's counts, which partitions the bundle has reached (Fleet's
    rule: stop after more partitions are unavailable than maxUnavailablePartitions; and, as
    ``plan_rollout`` does, at a partition a gate keeps ``closed`` while some of it is not up
    to date) and share out the bundle-wide and per-partition maxUnavailable between the
    shards that wait: evenly with ``even`` (``even_shares``), else in shard order.

    With ``usable`` a shard asks the bundle-wide budget only for what its partition budgets
    let it use: a cluster moves only within both, so the rest would sit unused in its grant,
    and count as spent until the shard confirms a lower one. Without it, the shards of a
    partition held most of the bundle-wide budget, and when the next partition was reached
    its shards got none until those confirmed: a second round of grants at every partition
    boundary."""
    totals: dict[str, PartitionCounts] = {}
    for shard_counts_ in counts.values():
        for c in shard_counts_:
            t = totals.get(c.name, PartitionCounts(name=c.name))
            totals[c.name] = PartitionCounts(
                name=c.name,
                count=t.count + c.count,
                updated=t.updated + c.updated,
                unavailable=t.unavailable + c.unavailable,
                not_ready=t.not_ready + c.not_ready,
                pending=t.pending + c.pending,
            )
    total = sum(t.count for t in totals.values())
    order = [(n, v, f) for n, v, f in _order(strategy, total) if n in totals]
    allowed_partitions = limit(
        len(order),
        0 if strategy.max_unavailable_partitions is None else strategy.max_unavailable_partitions,
        field="rolloutStrategy.maxUnavailablePartitions",
    )
    limits = {n: limit(totals[n].count, v, field=f) for n, v, f in order}
    reached: list[str] = []
    unavailable_partitions = 0
    gated = ""
    for name, _, _ in order:
        if name in (closed or {}) and totals[name].updated < totals[name].count:
            gated = name  # a gate keeps it from starting, and everything after it waits
            break
        reached.append(name)
        if totals[name].unavailable > limits[name]:
            unavailable_partitions += 1
        if unavailable_partitions > allowed_partitions:
            break
    budgets: dict[int, dict[str, int]] = {index: {} for index in counts}

    def share(
        key: str,
        most: int,
        names: list[str],
        *,
        everywhere: bool = False,
        usable_by: Mapping[int, int] | None = None,
    ) -> None:
        """Share ``most`` for ``key``: what waits in ``names`` asks (at most ``usable_by``);
        what is unavailable in ``names`` (in every partition when ``everywhere``: the
        bundle-wide limit) is spent."""
        by_shard = {i: [c for c in counts[i] if c.name in names] for i in sorted(counts)}
        not_ready = {
            i: sum(c.not_ready for c in (counts[i] if everywhere else by_shard[i]))
            for i in by_shard
        }
        want = {i: sum(c.pending for c in cs) for i, cs in by_shard.items()}
        if usable_by is not None:
            want = {i: min(n, usable_by.get(i, 0)) for i, n in want.items()}
        spent = {i: max(not_ready[i], ceilings.get(i, {}).get(key, 0)) for i in by_shard}
        free = most - sum(spent.values())
        gives = even_shares(free, want, spent) if even else greedy_shares(free, want)
        for i in sorted(by_shard):
            if want[i] <= 0:
                # Nothing waits there: what it does not use goes back to the others.
                budgets[i][key] = not_ready[i]
                continue
            budgets[i][key] = spent[i] + gives.get(i, 0)

    bundle_wide = limit(total, strategy.max_unavailable)
    if not usable:
        share("", bundle_wide, reached, everywhere=True)
    for name in reached:
        share(name, limits[name], [name])
    if usable:
        # Room left in each shard's partition budgets: what it can move, at most.
        room = {
            i: sum(max(budgets[i][c.name] - c.not_ready, 0) for c in counts[i] if c.name in reached)
            for i in counts
        }
        share("", bundle_wide, reached, everywhere=True, usable_by=room)
        budgets = {i: {"": b.pop("")} | b for i, b in budgets.items()}
    updated = sum(t.updated for t in totals.values())
    current = reached[-1] if reached else ""
    where = (
        f"partition {len(reached)}/{len(order)} ({current})" if len(order) > 1 and current else ""
    )
    gate = (closed or {}).get(gated, "")
    summary = ", ".join(
        part
        for part in (
            f"{len(counts)} shards",
            where,
            f"{updated}/{total} clusters updated",
            f"{sum(t.not_ready for t in totals.values())} unavailable",
            gate,
        )
        if part
    )
    statuses = [
        PartitionStatus(
            name=name,
            count=totals[name].count,
            max_unavailable=limits[name],
            updated=totals[name].updated,
            unavailable=totals[name].unavailable,
            reached=name in reached,
        )
        for name, _, _ in order
    ]
    return ShardPlan(
        reached=reached,
        budgets=budgets,
        summary=summary,
        gated=gated,
        gate=gate,
        partitions=statuses,
    )


def drained(
    before: Iterable[PartitionCounts] | None,
    after: Iterable[PartitionCounts],
    reached: Iterable[str],
) -> bool:
    """Whether a shard's part of a reached partition ran out of clusters waiting for budget
    since the counts its bundle last heard (``before``; None: not known in this run).

    That is the moment the bundle needs to hear at once: the budget the shard no longer asks
    for can go to others, and the partition, with no more of it waiting than is in flight,
    may let the rollout reach the next one (Fleet's rule).
    """
    if before is None:
        return False
    waiting_before = {c.name: c.pending for c in before}
    names = set(reached)
    return any(
        c.name in names and c.pending == 0 and waiting_before.get(c.name, 0) > 0 for c in after
    )


def grant_as_seen(
    partitions: Collection[str],
    reached: Sequence[str],
    budgets: Mapping[str, int],
    closed: Mapping[str, str],
    *,
    zero_is_none: bool = False,
) -> tuple[list[str], dict[str, int], dict[str, str]]:
    """The part of a grant a shard whose clusters lie in ``partitions`` acts on: the reached
    partitions among them, its bundle-wide budget ("") and theirs, and their gates. A grant
    that differs from the last only elsewhere (the rollout reached a partition the shard has
    no cluster in) changes nothing for it, so the bundle need not send it and wait for the
    shard to confirm it.

    With ``zero_is_none`` a budget of 0 is left out, as a shard reads a missing one as 0
    (``plan_rollout``): the grants a new commit withdraws have no budgets, and the plan that
    follows gives the shards of partitions not reached yet explicit zeros."""
    own = set(partitions)
    return (
        [name for name in reached if name in own],
        {
            key: value
            for key, value in budgets.items()
            if (key == "" or key in own) and (value or not zero_is_none)
        },
        {key: value for key, value in closed.items() if key in own},
    )


def greedy_shares(free: int, want: Mapping[int, int]) -> dict[int, int]:
    """``free`` budget given in shard order, each shard what it waits for while any is left
    (how grants were shared before ``even_shares``)."""
    gives: dict[int, int] = {}
    for i in sorted(want):
        if want[i] > 0:
            gives[i] = max(min(want[i], free), 0)
            free -= gives[i]
    return gives


def even_shares(free: int, want: Mapping[int, int], held: Mapping[int, int]) -> dict[int, int]:
    """``free`` budget shared between the shards with clusters waiting so that what each
    then holds (``held``, what it has spent already, plus its share) is as even as it can
    be, none given more than it waits for; ties go to the first shard in order.

    Shards sharing a partition then move together and run out of waiting clusters at about
    the same time, instead of one after the other with a hand-over (a report, a lowered
    grant, its confirmation, a raised grant to the next) between them.
    """
    gives = {i: 0 for i, n in want.items() if n > 0}
    queue = [(held.get(i, 0), i) for i in gives]
    heapq.heapify(queue)
    for _ in range(max(free, 0)):
        if not queue:
            break
        level, i = heapq.heappop(queue)
        gives[i] += 1
        if gives[i] < want[i]:
            heapq.heappush(queue, (level + 1, i))
    return gives


class ShardGates(BaseModel):
    """A sharded bundle's rollout with its gates: the plan, the gates' decision, and the
    gate record brought up to date."""

    model_config = ConfigDict(frozen=True)

    plan: ShardPlan
    decision: GateDecision
    record: GateRecord


def failure_budget_refusal(gates: Mapping[str, PartitionGate], size: int) -> str:
    """Why a sharded bundle does not roll out a version whose partitions have a failure
    budget ("" when none has): it needs every cluster's health in one place."""
    name = next((n for n, g in gates.items() if g.failure_budget is not None), "")
    if not name:
        return ""
    return (
        f"rollout held: partition {name}: failureBudget is not supported on a bundle rolled "
        f"out in shards (more than {size} clusters); remove it, or use requireApproval"
    )


def gate_shards(
    strategy: RolloutStrategy,
    counts: Mapping[int, list[PartitionCounts]],
    ceilings: Mapping[int, Mapping[str, int]],
    record: GateRecord,
    now: datetime,
    *,
    size: int,
    even: bool = False,
    usable: bool = False,
) -> ShardGates:
    """``plan_shards`` with the partitions the gates keep closed, over the bundle's sums:
    a soak starts when a partition is all updated and available in every shard, an approval
    deadline when the rollout stands at its partition. A partition with a failure budget
    holds every partition (see ``failure_budget_refusal``): nothing of the version starts."""
    gates = partition_gates(strategy)
    order = partition_order(strategy)
    refused = failure_budget_refusal(gates, size)
    if refused:
        closed = dict.fromkeys(order, refused)
        plan = plan_shards(strategy, counts, ceilings, closed, even=even, usable=usable)
        decision = GateDecision(closed=closed, halted=refused if plan.gated else "")
        return ShardGates(plan=plan, decision=decision, record=record)
    for _ in range(3):
        decision = decide(gates, order, record, now)
        plan = plan_shards(strategy, counts, ceilings, decision.closed, even=even, usable=usable)
        after = observe(
            gates, record, partitions=plan.partitions, gated_partition=plan.gated, now=now
        )
        if after == record:
            break
        record = after
    return ShardGates(plan=plan, decision=decision, record=record)


class PackedPart(BaseModel):
    """One shard's per-cluster states as its report carries them: packed against its part
    of the snapshot (``length`` clusters; the sorted names of ``counts`` are the legend),
    plus those on clusters outside it (being removed). ``stale``: of an older commit than
    the bundle's."""

    model_config = ConfigDict(frozen=True)

    codes: str = ""
    counts: dict[str, int] = {}
    length: int = 0
    extra: dict[str, BundleState] = {}
    stale: bool = False


class PackedStates(BaseModel):
    """A sharded bundle's per-cluster states as one report carries them (as
    ``flotilla.clusterstates.pack_report`` packs a bundle's)."""

    model_config = ConfigDict(frozen=True)

    clusters_key: str
    codes: str
    counts: dict[str, int]
    states: dict[str, BundleState] = {}


def _as_of_commit(state: str, stale: bool) -> str:
    if not stale or BundleState(state) in _WORSE_THAN_WAITING:
        return state
    return BundleState.WAIT_APPLIED.value


def join_shard_states(parts: list[PackedPart], clusters_key: str) -> PackedStates:
    """The shards' parts (in shard order: consecutive ranges of the sorted names) packed as
    one list, ``clusters_key`` being that list's key. A stale part's deployments count as
    waiting for the bundle's commit (as a bundle's do while it plans), so neither a
    dependent nor readyClusters takes an older version's Ready for the new one's."""
    states: list[str | None] = []
    extra: dict[str, BundleState] = {}
    for part in parts:
        decoded = decode_states(part.codes, sorted(part.counts), part.length)
        states.extend(s if s is None else _as_of_commit(s, part.stale) for s in decoded)
        extra.update({n: BundleState(_as_of_commit(s, part.stale)) for n, s in part.extra.items()})
    counts = count_states([*(s for s in states if s), *extra.values()])
    return PackedStates(
        clusters_key=clusters_key,
        codes=encode_states(states, sorted(counts)),
        counts=counts,
        states=extra,
    )
