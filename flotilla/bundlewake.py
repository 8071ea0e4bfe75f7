"""What a bundle workflow recomputes on every wake, redone only for the clusters that changed.

While a rollout is in flight a bundle workflow wakes on every activity completion and, in each
wake, needs every targeted cluster as ``plan_rollout`` sees it (a ``RolloutTarget``) and every
cluster's state (for its report). Building both from scratch was three pydantic models per
cluster per wake: at 500 clusters most of a workflow task, at 10,000 far past Temporal's 2 s
deadlock detector (issue 12; ``bench/bench_wake.py``). A wake changes a few records, so
``WakeMemo`` keeps each cluster's target and state with the inputs they came from, and builds
them again only where a record (records are frozen: a changed one is a new object) or an
input (labels, paused, dependency wait, offline, a gate holding it) differs. The results are
exactly what a fresh computation gives, so replays and continue-as-new (which start with an
empty memo) see the same commands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from flotilla.bundledeployment import DeploymentRecord
from flotilla.rollout import RolloutTarget
from flotilla.status import StateWithMessage

V = TypeVar("V")

_NO_LABELS: dict[str, str] = {}


class ClusterFacts(Protocol):
    """What a wake reads of a cluster (``ClusterView`` of the registry's snapshot fits)."""

    @property
    def labels(self) -> dict[str, str]: ...

    @property
    def offline(self) -> str: ...


class _Kept(Generic[V]):
    """One value per cluster, with the record object and inputs it was computed from."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[object, tuple[object, ...], V]] = {}

    def get(self, cluster: str, record: object, inputs: tuple[object, ...]) -> V | None:
        """The value kept for ``cluster`` if it came from this very record and these inputs."""
        kept = self._kept.get(cluster)
        if kept is not None and kept[0] is record and kept[1] == inputs:
            return kept[2]
        return None

    def put(self, cluster: str, record: object, inputs: tuple[object, ...], value: V) -> V:
        self._kept[cluster] = (record, inputs, value)
        return value

    def keep_only(self, clusters: Mapping[str, object]) -> None:
        """Forget clusters that are gone, so the memo never outgrows the bundle's records."""
        if len(self._kept) > len(clusters):
            for name in [n for n in self._kept if n not in clusters]:
                del self._kept[name]


class WakeMemo:
    """Each cluster's rollout target and state from earlier wakes, reused while unchanged."""

    def __init__(self) -> None:
        self._targets: _Kept[RolloutTarget] = _Kept()
        self._states: _Kept[StateWithMessage] = _Kept()

    def rollout_targets(
        self,
        records: Mapping[str, DeploymentRecord[Any]],
        names: Iterable[str],
        views: Mapping[str, ClusterFacts],
        *,
        paused: Callable[[str], bool],
        blocked: Callable[[str], bool],
    ) -> list[RolloutTarget]:
        """``names`` (in the order given) as ``plan_rollout`` sees them; a cluster offline in
        ``views`` counts as unavailable, one missing from them has no labels."""
        targets = []
        for name in names:
            record = records[name]
            view = views.get(name)
            labels = view.labels if view is not None else _NO_LABELS
            offline = bool(view is not None and view.offline)
            is_paused, is_blocked = paused(name), blocked(name)
            inputs = (labels, is_paused, is_blocked, offline)
            target = self._targets.get(name, record, inputs)
            if target is None:
                target = self._targets.put(
                    name,
                    record,
                    inputs,
                    record.rollout_target(
                        labels=labels, paused=is_paused, blocked=is_blocked, offline=offline
                    ),
                )
            targets.append(target)
        self._targets.keep_only(records)
        return targets

    def states(
        self,
        records: Mapping[str, DeploymentRecord[Any]],
        names: Iterable[str],
        views: Mapping[str, ClusterFacts],
        *,
        paused: Callable[[str], bool],
        waiting_for: Callable[[str], Sequence[str]],
        held_by: Callable[[str], str] = lambda _: "",
    ) -> dict[str, StateWithMessage]:
        """Each of ``names`` with its state and message (``DeploymentRecord.state``)."""
        states = {}
        for name in names:
            record = records[name]
            view = views.get(name)
            offline = view.offline if view is not None else ""
            is_paused, waits, held = paused(name), tuple(waiting_for(name)), held_by(name)
            inputs = (is_paused, waits, offline, held)
            state = self._states.get(name, record, inputs)
            if state is None:
                state = self._states.put(
                    name,
                    record,
                    inputs,
                    record.state(
                        paused=is_paused, waiting_for=waits, offline=offline, held_by=held
                    ),
                )
            states[name] = state
        self._states.keep_only(records)
        return states
