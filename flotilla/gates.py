"""Gates between partitions: approval before a partition starts, soak after one is Ready.

Declared per manual partition in fleet.yaml (``requireApproval``, ``approvalDeadline``,
``soakTime``; keys Fleet ignores). Every rule here is a pure function of the bundle's
``GateRecord`` (what happened to the gates of the version being rolled out) and the time;
the bundle workflow keeps the record, feeds ``decide`` into ``plan_rollout`` as closed
partitions, and sets a durable timer for ``GateDecision.due``. See
docs/progressive-delivery.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Self

from pydantic import BaseModel, ConfigDict

from flotilla.durations import parse_duration
from flotilla.errors import SpecError, one_line, short_repr
from flotilla.models import RolloutStrategy
from flotilla.rollout import UNMATCHED_PARTITION, PartitionStatus, limit

# How long a reason a person gives may be, in status and history.
MAX_REASON = 200
# How long a released cluster may take to be Ready at the new version before it counts
# against its partition's failure budget, when failureDeadline is not set.
DEFAULT_FAILURE_DEADLINE = timedelta(minutes=5)
# How many failed clusters a halt names.
_SHOWN_FAILED = 3


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class PartitionGate(_Frozen):
    """The gates of one partition, read from its fleet.yaml entry."""

    partition: str
    require_approval: bool = False
    approval_deadline: timedelta | None = None
    soak: timedelta | None = None
    failure_budget: int | str | None = None
    failure_deadline: timedelta = DEFAULT_FAILURE_DEADLINE
    auto_rollback: bool = False


class Approval(_Frozen):
    """A person's decision on one partition of one version (or the deadline's, ``expired``)."""

    partition: str
    approved: bool
    user: str
    reason: str = ""
    at: datetime
    expired: bool = False


class GateRecord(_Frozen):
    """What happened to the gates of one version (``version``: the bundle digest).

    ``requested_at``: when the rollout first stood at a partition its gate kept closed (the
    approval deadline runs from then); ``ready_at``: when a partition was first all Ready at
    this version (its soak runs from then).
    """

    version: str = ""
    requested_at: dict[str, datetime] = {}
    ready_at: dict[str, datetime] = {}
    approvals: dict[str, Approval] = {}
    # When each cluster was first released this version (kept only when a partition has a
    # failure budget), and the halt a spent budget caused: why, where, which clusters.
    released_at: dict[str, datetime] = {}
    halted: str = ""
    halted_partition: str = ""
    failed: dict[str, str] = {}

    def for_version(self, version: str) -> Self:
        """The record for ``version``: a new version starts with every gate closed again."""
        if version == self.version:
            return self
        return type(self)(version=version)

    def decided(self, approval: Approval) -> Self:
        return self.model_copy(
            update={"approvals": {**self.approvals, approval.partition: approval}}
        )


class GateDecision(_Frozen):
    """Which partitions may not start now and why, whether the rollout is halted, and when
    to look again (a soak ends or a deadline passes)."""

    closed: dict[str, str] = {}
    halted: str = ""
    due: datetime | None = None


class ClusterHealth(_Frozen):
    """One cluster of a partition with a failure budget: at the new version and Ready (``ok``),
    or why not."""

    cluster: str
    ok: bool
    reason: str = ""


class GateStatus(_Frozen):
    """One partition's gates as people see them (``describe bundle``)."""

    partition: str
    state: str
    message: str
    user: str = ""
    reason: str = ""
    at: datetime | None = None


def partition_gates(strategy: RolloutStrategy) -> dict[str, PartitionGate]:
    """The gated partitions of ``strategy`` by name (a partition without a name is
    ``partition-N``, as ``flotilla.rollout`` names it)."""
    gates: dict[str, PartitionGate] = {}
    for index, spec in enumerate(strategy.partitions or []):
        if not (
            spec.require_approval or spec.soak_time is not None or spec.failure_budget is not None
        ):
            continue
        name = spec.name or f"partition-{index + 1}"
        field = f"rolloutStrategy.partitions[{index}]"
        gates[name] = PartitionGate(
            partition=name,
            require_approval=spec.require_approval,
            approval_deadline=_seconds(spec.approval_deadline, f"{field}.approvalDeadline"),
            soak=_seconds(spec.soak_time, f"{field}.soakTime"),
            failure_budget=spec.failure_budget,
            failure_deadline=DEFAULT_FAILURE_DEADLINE
            if spec.failure_deadline is None
            else timedelta(seconds=parse_duration(spec.failure_deadline, field=field)),
            auto_rollback=spec.auto_rollback,
        )
    return gates


def has_failure_budget(gates: Mapping[str, PartitionGate]) -> bool:
    return any(g.failure_budget is not None for g in gates.values())


def rolls_back(gates: Mapping[str, PartitionGate], record: GateRecord) -> bool:
    """Whether the halt in ``record`` asks for an automatic rollback: a spent failure budget
    (not a person's rejection, nor an expired approval) of a partition with ``autoRollback``."""
    gate = gates.get(record.halted_partition) if record.halted else None
    return gate is not None and gate.auto_rollback


def _seconds(value: str | int | float | None, field: str) -> timedelta | None:
    if value is None:
        return None
    return timedelta(seconds=parse_duration(value, field=field))


def partition_order(strategy: RolloutStrategy) -> list[str]:
    """The manual partitions' names in rollout order, then the leftovers' partition."""
    names = [p.name or f"partition-{i + 1}" for i, p in enumerate(strategy.partitions or [])]
    return [*names, UNMATCHED_PARTITION]


def decide(
    gates: Mapping[str, PartitionGate],
    order: list[str],
    record: GateRecord,
    now: datetime,
    health: Mapping[str, Sequence[ClusterHealth]] | None = None,
) -> GateDecision:
    """Which partitions the gates keep closed at ``now``.

    A partition after one with a soak time stays closed until that one has been all Ready
    for the soak time. A partition that requires approval stays closed until approved; a
    rejection, or no decision within the deadline (counted from ``requested_at``), halts
    the rollout of this version: that partition and every later one never start.
    """
    closed: dict[str, str] = {}
    halted = ""
    due: list[datetime] = []
    for index, name in enumerate(order):
        before = gates.get(order[index - 1]) if index else None
        if before is not None and before.soak is not None:
            ready = record.ready_at.get(before.partition)
            if ready is None:
                closed[name] = (
                    f"soak: partition {before.partition} must be Ready for "
                    f"{_duration(before.soak)} first"
                )
            elif now < ready + before.soak:
                closed[name] = (
                    f"soaking partition {before.partition} until {_clock(ready + before.soak)}"
                )
                due.append(ready + before.soak)
        gate = gates.get(name)
        if gate is None or not gate.require_approval:
            continue
        approval = record.approvals.get(name)
        if approval is not None and approval.approved:
            continue
        if approval is not None:
            reason = _rejection(approval)
        else:
            deadline = _deadline(gate, record)
            if deadline is not None and now >= deadline:
                reason = (
                    f"rollout halted: partition {name} not approved within "
                    f"{_duration(gate.approval_deadline)} (deadline {_clock(deadline)})"
                )
            else:
                reason = f"waiting for approval of partition {name}" + (
                    f" (deadline {_clock(deadline)})" if deadline else ""
                )
                if deadline is not None:
                    due.append(deadline)
                closed[name] = _joined(closed.get(name), reason)
                continue
        closed[name] = reason
        halted = halted or reason
    for index, name in enumerate(order):
        # Until a partition with a failure budget has its verdict (every cluster Ready at the
        # version, or failed past its deadline), no later partition starts.
        gate = gates.get(name)
        if gate is None or gate.failure_budget is None or record.halted:
            continue
        pending = [
            c.cluster
            for c in (health or {}).get(name, [])
            if not c.ok
            and (
                c.cluster not in record.released_at
                or now < record.released_at[c.cluster] + gate.failure_deadline
            )
        ]
        if pending:
            why = (
                f"waiting for partition {name} to be Ready (failure budget "
                f"{gate.failure_budget}, {_duration(gate.failure_deadline)} per cluster)"
            )
            for later in order[index + 1 :]:
                closed[later] = _joined(closed.get(later), why)
    if record.halted and record.halted_partition in order:
        # A spent failure budget: no partition after the failing one starts this version.
        for name in order[order.index(record.halted_partition) + 1 :]:
            closed[name] = record.halted
        halted = record.halted
    return GateDecision(closed=closed, halted=halted, due=min(due, default=None))


def count_failures(
    gates: Mapping[str, PartitionGate],
    record: GateRecord,
    members: Mapping[str, Sequence[ClusterHealth]],
    now: datetime,
) -> tuple[GateRecord, datetime | None]:
    """Halt the rollout when a partition has more failed clusters than its failure budget.

    A cluster fails when, ``failureDeadline`` after the new version was first released to it,
    it is not at that version and Ready (ErrApplied, NotReady, still applying). The halt
    stays for this version even if the clusters recover later. Also returns when to look
    again (the next deadline of a released cluster that is not Ready yet)."""
    if record.halted:
        return record, None
    due: list[datetime] = []
    for name, gate in gates.items():
        if gate.failure_budget is None:
            continue
        health = members.get(name, [])
        failed: dict[str, str] = {}
        for cluster in health:
            released = record.released_at.get(cluster.cluster)
            if cluster.ok or released is None:
                continue
            if now >= released + gate.failure_deadline:
                failed[cluster.cluster] = one_line(cluster.reason) or "not Ready"
            else:
                due.append(released + gate.failure_deadline)
        allowed = limit(len(health), gate.failure_budget, field=f"{name}.failureBudget")
        if len(failed) > allowed:
            shown = "; ".join(f"{c}: {r}" for c, r in sorted(failed.items())[:_SHOWN_FAILED])
            more = (
                f"; and {len(failed) - _SHOWN_FAILED} more" if len(failed) > _SHOWN_FAILED else ""
            )
            halted = (
                f"rollout halted: partition {name}: {len(failed)} of {len(health)} cluster(s) "
                f"not Ready {_duration(gate.failure_deadline)} after release, failure budget "
                f"{gate.failure_budget} ({shown}{more})"
            )
            update = {"halted": one_line(halted), "halted_partition": name, "failed": failed}
            return record.model_copy(update=update), None
    return record, min(due, default=None)


def observe(
    gates: Mapping[str, PartitionGate],
    record: GateRecord,
    *,
    partitions: list[PartitionStatus],
    gated_partition: str,
    now: datetime,
    released: Sequence[str] = (),
) -> GateRecord:
    """The record after a rollout pass: partitions now all Ready at this version, the
    partition the rollout stands at because of its gate (its deadline starts), and an
    approval deadline that has passed (recorded as an expired rejection)."""
    ready_at = dict(record.ready_at)
    for status in partitions:
        done = status.reached and status.updated == status.count and not status.unavailable
        if done and status.name in gates and status.name not in ready_at:
            ready_at[status.name] = now
    requested_at = dict(record.requested_at)
    if gated_partition and gated_partition not in requested_at:
        requested_at[gated_partition] = now
    approvals = dict(record.approvals)
    released_at = dict(record.released_at)
    if has_failure_budget(gates):
        for cluster in released:
            released_at.setdefault(cluster, now)
    after = record.model_copy(
        update={"ready_at": ready_at, "requested_at": requested_at, "released_at": released_at}
    )
    for name, gate in gates.items():
        deadline = _deadline(gate, after)
        if gate.require_approval and name not in approvals and deadline and now >= deadline:
            approvals[name] = Approval(
                partition=name,
                approved=False,
                user="",
                reason=f"not approved within {_duration(gate.approval_deadline)} "
                f"(deadline {_clock(deadline)})",
                at=deadline,
                expired=True,
            )
    return after.model_copy(update={"approvals": approvals})


def check_approval(
    gates: Mapping[str, PartitionGate], partition: str, *, user: str, reason: str
) -> None:
    """Refuse, in one line, an approval no gate asks for, or without a user."""
    if partition not in gates or not gates[partition].require_approval:
        asking = sorted(n for n, g in gates.items() if g.require_approval)
        listed = ", ".join(asking) if asking else "none"
        raise SpecError(
            f"partition {short_repr(partition)} has no approval gate (partitions that ask for "
            f"approval: {listed})",
            field="--partition",
        )
    if not user.strip():
        raise SpecError("who approves must be given (--user or $USER)", field="--user")
    if len(reason) > MAX_REASON:
        raise SpecError(f"is longer than {MAX_REASON} characters", field="--reason")


def statuses(
    gates: Mapping[str, PartitionGate], record: GateRecord, decision: GateDecision, now: datetime
) -> list[GateStatus]:
    """Each gated partition as people see it: its approval (Waiting, Approved, Rejected,
    Expired) and its soak (Soaking until, Soaked), or Closed while not reached yet."""
    out = []
    for name, gate in gates.items():
        if gate.require_approval:
            out.append(_approval_status(name, record, decision))
        if gate.soak is not None:
            ready = record.ready_at.get(name)
            if ready is None:
                state, message = "Closed", f"soak {_duration(gate.soak)} once Ready"
            elif now < ready + gate.soak:
                state, message = "Soaking", f"soaking until {_clock(ready + gate.soak)}"
            else:
                state, message = (
                    "Soaked",
                    f"Ready since {_clock(ready)}, soaked {_duration(gate.soak)}",
                )
            out.append(GateStatus(partition=name, state=state, message=message, at=ready))
        if gate.failure_budget is not None:
            budget = f"failure budget {gate.failure_budget}, {_duration(gate.failure_deadline)}"
            if record.halted_partition == name:
                failed = ", ".join(sorted(record.failed))
                out.append(
                    GateStatus(partition=name, state="Halted", message=record.halted, reason=failed)
                )
            else:
                out.append(GateStatus(partition=name, state="Watching", message=budget))
    return out


def _approval_status(name: str, record: GateRecord, decision: GateDecision) -> GateStatus:
    approval = record.approvals.get(name)
    if approval is None:
        waiting = name in decision.closed and "approval" in decision.closed[name]
        return GateStatus(
            partition=name,
            state="Waiting" if waiting else "Closed",
            message=decision.closed[name] if waiting else "approval required",
        )
    state = "Approved" if approval.approved else "Expired" if approval.expired else "Rejected"
    return GateStatus(
        partition=name,
        state=state,
        message="" if approval.approved else _rejection(approval),
        user=approval.user,
        reason=approval.reason,
        at=approval.at,
    )


def _deadline(gate: PartitionGate, record: GateRecord) -> datetime | None:
    requested = record.requested_at.get(gate.partition)
    if requested is None or gate.approval_deadline is None:
        return None
    return requested + gate.approval_deadline


def _rejection(approval: Approval) -> str:
    if approval.expired:
        return f"rollout halted: partition {approval.partition} {approval.reason}"
    why = f": {approval.reason}" if approval.reason else ""
    return one_line(
        f"rollout halted: partition {approval.partition} rejected by {approval.user}{why}"
    )


def _joined(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def _clock(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


def _duration(value: timedelta | None) -> str:
    seconds = int(value.total_seconds()) if value else 0
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds:
        return f"{seconds // 60}m"
    return f"{seconds}s"
