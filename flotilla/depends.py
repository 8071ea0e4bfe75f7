"""dependsOn: which bundles a bundle waits for, whether they are ready on a cluster, and cycles."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from flotilla.errors import SpecError, short_repr
from flotilla.models import BundleRef, LabelSelector
from flotilla.status import BundleState
from flotilla.targeting import match_selector

DEFAULT_ACCEPTED_STATES = (BundleState.READY,)


class BundleInfo(BaseModel):
    """What dependency resolution needs to know about one bundle."""

    model_config = ConfigDict(frozen=True)

    name: str
    labels: dict[str, str] = {}
    depends_on: list[BundleRef] = []


class Dependency(BaseModel):
    """One bundle another one waits for, and the states of it that count as done."""

    model_config = ConfigDict(frozen=True)

    bundle: str
    accepted_states: tuple[BundleState, ...] = DEFAULT_ACCEPTED_STATES


class DependencyCheck(BaseModel):
    """Whether a bundle may deploy to one cluster, and if not, which bundles it waits for."""

    model_config = ConfigDict(frozen=True)

    satisfied: bool
    waiting_for: list[str]


def resolve_dependencies(
    bundle: BundleInfo,
    all_bundles: Sequence[BundleInfo],
    *,
    file: str = "fleet.yaml",
) -> list[Dependency]:
    """Turn ``bundle``'s dependsOn entries into the bundles they select, in entry order.

    An entry that selects nothing is an error (Fleet would wait forever). A selector never
    selects the bundle itself, which would otherwise wait for its own readiness.
    """
    names = sorted(b.name for b in all_bundles)
    resolved: list[Dependency] = []
    for index, entry in enumerate(bundle.depends_on):
        field = f"dependsOn[{index}]"
        states = tuple(BundleState(s) for s in entry.accepted_states or DEFAULT_ACCEPTED_STATES)
        if entry.name:
            if entry.name == bundle.name:
                raise SpecError(
                    f"a bundle cannot depend on itself ({short_repr(entry.name)})",
                    file=file,
                    field=f"{field}.name",
                )
            if entry.name not in names:
                raise SpecError(
                    f"no bundle with this name{_did_you_mean(entry.name, names)} "
                    f"({short_repr(entry.name)})",
                    file=file,
                    field=f"{field}.name",
                )
            selected = [entry.name]
        else:
            selector = entry.selector or LabelSelector()
            selected = sorted(
                b.name
                for b in all_bundles
                if b.name != bundle.name and match_selector(selector, b.labels)
            )
            if not selected:
                raise SpecError(
                    f"selects no bundle ({short_repr(selector.to_fleet())})",
                    file=file,
                    field=f"{field}.selector",
                )
        for name in selected:
            dependency = Dependency(bundle=name, accepted_states=states)
            if dependency not in resolved:
                resolved.append(dependency)
    return resolved


def _did_you_mean(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f", did you mean {close[0]!r}?" if close else ""


def check_dependencies(
    deps: Sequence[Dependency], states_on_cluster: Mapping[str, BundleState]
) -> DependencyCheck:
    """Check the dependencies on one cluster: each must be there, in one of its accepted states.

    A dependency with no deployment on the cluster is waited for, as in Fleet.
    """
    waiting = sorted(
        {d.bundle for d in deps if states_on_cluster.get(d.bundle) not in d.accepted_states}
    )
    return DependencyCheck(satisfied=not waiting, waiting_for=waiting)


def states_on_cluster(
    states: Mapping[str, Mapping[str, BundleState]],
    commits: Mapping[str, str],
    *,
    cluster: str,
    commit: str,
) -> dict[str, BundleState]:
    """Each dependency's state on ``cluster`` as of ``commit``, the dependent's own commit.

    A state reported at another commit is of the dependency's older (or other) version: on an
    upgrade the dependency still shows Ready with its old version until its new one is
    planned, so such a state is left out and the dependency is waited for. Fleet checks only
    the state and lets a dependent's new version race its dependency's. A dependency whose
    commit is not known (a sender from before this rule) keeps the old behaviour.
    """
    return {
        bundle: by_cluster[cluster]
        for bundle, by_cluster in states.items()
        if cluster in by_cluster and commits.get(bundle, "") in ("", commit)
    }


def find_cycles(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Return every group of bundles that wait for each other, each sorted, groups by first name.

    A group is a strongly connected component with more than one bundle, or one bundle that
    lists itself. Iterative Tarjan, so a long dependency chain cannot hit the recursion limit.
    """
    nodes = sorted(set(graph) | {d for deps in graph.values() for d in deps})
    edges = {n: sorted(set(graph.get(n, ()))) for n in nodes}
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in nodes:
        if root in index_of:
            continue
        work = [(root, 0)]
        while work:
            node, next_edge = work.pop()
            if next_edge == 0:
                index_of[node] = low[node] = len(index_of)
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            if next_edge < len(targets):
                work.append((node, next_edge + 1))
                target = targets[next_edge]
                if target not in index_of:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index_of[target])
                continue
            if low[node] == index_of[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in edges[node]:
                    groups.append(sorted(group))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(groups)


def check_no_cycles(graph: Mapping[str, Sequence[str]], *, file: str = "") -> None:
    """Raise one SpecError line naming every bundle of the first dependsOn cycle found."""
    cycles = find_cycles(graph)
    if cycles:
        more = f" and {len(cycles) - 1} more cycle(s)" if len(cycles) > 1 else ""
        raise SpecError(
            f"bundles wait for each other: {', '.join(cycles[0])}{more}",
            file=file,
            field="dependsOn",
        )
