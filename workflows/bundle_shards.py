"""A bundle on more clusters than the shard size, rolled out by shard workflows.

The bundle workflow ``bundle/<ns>/<bundle>`` then plans nothing itself: it cuts the cluster
snapshot into name ranges (``flotilla.shards``), starts one child ``BundleWorkflow`` per range
(``bundle/<ns>/<bundle>/shard-<k>``, abandoned on close so they outlive continue-as-new),
hands each its part of the snapshot, the spec and dependency states, and keeps the rollout
one rollout: shards report counts per partition, the bundle answers with the partitions
reached and each shard's share of maxUnavailable, and reports the sum to its GitRepo. Each
shard is an ordinary bundle workflow on at most about the shard size of clusters (its own
planning, deploys, retries, drift checks, continue-as-new), so no history or payload grows
with the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import FailureError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.objectwatch_models import OBJECTS_CHANGED_SIGNAL, ObjectsChanged
    from flotilla.clusterstates import (
        ClusterIndex,
        cluster_index,
        decode_states,
        pack_report,
        split_packed,
        with_packed,
    )
    from flotilla.gates import GateDecision, partition_gates, rolls_back
    from flotilla.gates import statuses as gate_statuses
    from flotilla.ids import bundle_shard_workflow_id, bundle_workflow_id
    from flotilla.settings import DEFAULT_BUNDLE_SHARD_SIZE
    from flotilla.shards import (
        PackedPart,
        PackedStates,
        ShardGates,
        gate_shards,
        grant_as_seen,
        join_shard_states,
        plan_shards,
        shard_boundaries,
        shard_of,
        shard_offsets,
    )
    from flotilla.status import (
        MAX_REPORTED_NON_READY,
        BundleReport,
        BundleState,
        StateWithMessage,
        bundle_shown,
        planning_text,
        worst_state,
    )
    from workflows.bundle_models import (
        PAUSE_SIGNAL,
        BundleRefresh,
        BundleSpec,
        BundleStatus,
        BundleWorkflowState,
        DependencyStates,
        PauseRequest,
        RetireRequest,
        ShardBook,
        ShardGrant,
        ShardReport,
        ShardRole,
    )
    from workflows.registry_models import ClusterSnapshot, ClusterView
    from workflows.snapshots import split_clusters
    from workflows.visibility import (
        publish_bundle,
    )

# Bundles on more clusters than the shard size drive shard workflows. Asked only when a
# snapshot is bigger than that, so the runs of smaller bundles carry no marker.
SHARDS_PATCH = "bundle-shards"
# The signal a shard sends its bundle (ShardReport).
SHARD_REPORT_SIGNAL = "shard_report"
REFRESH = "refresh"
RETIRE = "retire"
BUNDLE_REPORT = "bundle_report"
# As the bundle workflow's REPORT_GAP: a change of the sum reaches the GitRepo within it.
SHARD_REPORT_GAP = timedelta(seconds=3)
# Shards report their per-cluster states packed; the bundle joins them into its report (so
# the GitRepo counts its clusters in readyClusters and forwards them to dependents) and cuts
# the packed states of bundles it depends on into its shards'. Asked by a shard when it
# reports and by a sharded bundle when it reports or has packed dependency states to hand
# on, so runs that never shard carry no marker.
SHARD_STATES_PATCH = "shard-cluster-states"
# Budgets shared evenly between the shards that wait (flotilla.shards.even_shares), not in
# shard order; asked only when the two differ, so bundles whose budgets never were shared
# between shards carry no marker.
SHARD_EVEN_BUDGETS_PATCH = "shard-budgets-shared-evenly"
# A sharded bundle whose snapshot came by digest joins its shards' packed states (and cuts
# its dependencies') against the keys and sizes ``split_snapshot`` returns, as the inline
# path does against the names. Asked only when a split returns them, so bundles on inline
# snapshots, and runs whose splits came from older workers, carry no marker.
SHARD_DIGEST_STATES_PATCH = "shard-states-by-digest"
# A bundle whose snapshot came by digest reads the packed dependency states it kept (they
# came before its clusters were loaded) once it has loaded them. Asked only when one of them
# is packed against the loaded list, so other runs carry no marker.
LOADED_DEPENDENCIES_PATCH = "digest-read-dependencies-after-load"
# A shard is granted of the bundle-wide budget only what its partition budgets let it use
# (flotilla.shards.plan_shards ``usable``), so the next partition's shards get theirs in the
# grant that reaches it instead of a second round once the last partition's confirm. Asked
# only when that changes a grant, so other runs carry no marker.
SHARD_USABLE_BUDGETS_PATCH = "shard-budgets-only-usable"
# A shard gets a new grant only when something it acts on changes (flotilla.shards
# grant_as_seen): before, every shard got one whenever the rollout reached a partition, and
# the bundle's next decision waited until all had confirmed it. Asked only when a grant is
# left unsent, so bundles that never shard carry no marker.
SHARD_GRANTS_THAT_MATTER_PATCH = "shard-grants-only-when-they-matter"
# A budget of 0 is the same as none for that comparison: the first plan of a commit gave every
# shard outside the first partition explicit zeros where the commit's withdrawn grant had no
# budgets, so all of them were sent a grant and the bundle's next decision waited for all to
# confirm (at 10,000 clusters 18 signals, shard tasks and reports as the first partition
# began; issue 12). Asked only when a grant is left unsent so.
SHARD_ZERO_BUDGETS_PATCH = "shard-grants-zero-budget-is-none"
# Partition gates across shards: the bundle decides them over its shards' sums and sends the
# closed partitions with each grant. Asked only by sharded bundles whose partitions declare a
# gate, so others carry no marker.
SHARD_GATES_PATCH = "shard-partition-gates"


def _digest(model: Any) -> str:
    return hashlib.sha256(model.model_dump_json().encode()).hexdigest()


def _for_shards(spec: BundleSpec) -> BundleSpec:
    """The spec as shards get it: without the GitRepo's read error of a newer commit, which
    is the bundle's status alone (a changed spec would withdraw every grant)."""
    return spec.model_copy(update={"source_error": ""}) if spec.source_error else spec


def _spec_key(spec: BundleSpec) -> str:
    return _digest(_for_shards(spec))


def with_packed_states(
    report: ShardReport, states: Mapping[str, StateWithMessage], index: ClusterIndex
) -> ShardReport:
    """A shard's report with its per-cluster states packed against its part of the snapshot
    (``index``), counts taken from them (their sorted names are the legend)."""
    packed = pack_report(
        BundleReport(
            bundle="",
            commit=report.commit,
            ready=report.ready,
            desired=report.desired,
            state=report.state,
            message="",
            states={name: item.state for name, item in states.items()},
        ),
        index,
    )
    # Keyed even when no state is packed: the bundle joins only shards whose key is their
    # part's, and a shard with no deployment has its part too.
    return with_packed(report, packed.model_copy(update={"clusters_key": index.key}))


def unpack_dependency(update: DependencyStates, index: ClusterIndex) -> dict[str, BundleState]:
    """The per-cluster states of a packed ``update`` read with ``index`` (its key matches)."""
    states = {
        name: BundleState(state)
        for name, state in zip(
            index.names,
            decode_states(update.codes, sorted(update.counts), len(index.names)),
            strict=True,
        )
        if state is not None
    }
    states.update(update.states)
    return states


class ShardedBundle:
    """The part of ``BundleWorkflow`` that drives shards (mixed in; state is the workflow's)."""

    state: BundleWorkflowState
    _index: ClusterIndex
    _report_due: datetime | None
    _summary: str
    _run_started: datetime
    _gate: GateDecision

    def _cluster_views(self) -> dict[str, ClusterView]:
        raise NotImplementedError  # BundleWorkflow's

    def _init_shards(self) -> None:
        # Clusters whose watcher reported a change, for their shard (empty name: all shards).
        self._shard_changes: list[str] = []
        # When this run last sent a shard a grant (its reply confirms it).
        self._granted_at: datetime | None = None

    # --- dependency states ---------------------------------------------------------------------

    def _take_dependency(self, update: DependencyStates, index: ClusterIndex) -> None:
        """Keep a dependency's states: unpacked ones as they come; packed ones read with this
        run's cluster list when it is theirs, else kept until it is (a sharded bundle cuts
        them into its shards' in ``_forward``). The commit goes with the states it is of."""
        if not update.clusters_key:
            self.state.dependency_states[update.bundle] = update.states
            self.state.dependency_commits[update.bundle] = update.commit
            self.state.dependency_packed.pop(update.bundle, None)
            return
        self.state.dependency_packed[update.bundle] = update
        self._unpack_dependencies(index)

    def _unpack_dependencies(self, index: ClusterIndex) -> None:
        """Read the packed dependency states this run's cluster list can read (a bundle that
        drives shards hands them on instead)."""
        if self.state.shards is not None:
            return
        for name, update in list(self.state.dependency_packed.items()):
            if update.clusters_key != index.key:
                continue  # of another snapshot: read once this bundle has that one
            self.state.dependency_states[name] = unpack_dependency(update, index)
            self.state.dependency_commits[name] = update.commit
            del self.state.dependency_packed[name]

    def _read_loaded_dependencies(self) -> None:
        """Read the packed dependency states kept while this bundle's snapshot was a header
        by digest (no names yet), now that its clusters are loaded: a refresh that started it
        brought them before the load, and a settled dependency sends no more."""
        if not self.state.dependency_packed:
            return
        self._cluster_views()  # the index of the loaded list
        keys = {update.clusters_key for update in self.state.dependency_packed.values()}
        if self._index.key in keys and workflow.patched(LOADED_DEPENDENCIES_PATCH):
            self._unpack_dependencies(self._index)

    def _cut_dependencies(self) -> dict[int, list[DependencyStates]]:
        """The packed dependency states of the snapshot last handed out, cut into each
        shard's part (by position: parts are consecutive ranges of the sorted names)."""
        book = self.state.shards
        assert book is not None
        shards = range(book.started)
        if not book.clusters_key or any(i not in book.part_sizes for i in shards):
            return {}
        out: dict[int, list[DependencyStates]] = {}
        for name, update in list(self.state.dependency_packed.items()):
            if update.clusters_key != book.clusters_key:
                continue  # the next snapshot's: cut once it is handed out
            pieces = split_packed(
                update.codes, sorted(update.counts), [book.part_sizes[i] for i in shards]
            )
            for index, (codes, counts) in zip(shards, pieces, strict=True):
                extra = {
                    cluster: state
                    for cluster, state in update.states.items()
                    if shard_of(cluster, book.boundaries) == index
                }
                out.setdefault(index, []).append(
                    DependencyStates(
                        bundle=name,
                        states=extra,
                        commit=update.commit,
                        clusters_key=book.part_keys[index],
                        codes=codes,
                        counts=counts,
                    )
                )
            del self.state.dependency_packed[name]
        return out

    def _sharding(self, clusters: ClusterSnapshot) -> bool:
        """Whether this bundle drives shards: once it has, it always does."""
        if self.state.shards is not None:
            return True
        if self.state.shard is not None:
            return False
        size = self.state.shard_size or DEFAULT_BUNDLE_SHARD_SIZE
        if clusters.size <= size or not workflow.patched(SHARDS_PATCH):
            return False
        self.state.shards = ShardBook(size=size)
        return True

    def _shard_ids(self) -> list[str]:
        book = self.state.shards
        assert book is not None
        # From the state, not workflow.info(): replays run under other ids.
        own = bundle_workflow_id(self.state.namespace, self.state.bundle)
        return [bundle_shard_workflow_id(own, i) for i in range(len(book.boundaries))]

    async def _signal_shard(self, index: int, signal: str, arg: Any) -> None:
        handle = workflow.get_external_workflow_handle(self._shard_ids()[index])
        with contextlib.suppress(FailureError):  # a shard that is gone has nothing to hear
            await handle.signal(signal, arg)

    def _next_grant(self, index: int, **fields: Any) -> ShardGrant:
        """A new grant for one shard: its budgets count as spent until the shard confirms."""
        book = self.state.shards
        assert book is not None
        old = book.grants.get(index, ShardGrant())
        grant = old.model_copy(update={"seq": old.seq + 1, **fields})
        book.grants[index] = grant
        self._granted_at = workflow.now()
        ceiling = book.ceilings.setdefault(index, {})
        for key, value in grant.budgets.items():
            ceiling[key] = max(ceiling.get(key, 0), value)
        return grant

    # --- messages -----------------------------------------------------------------------------

    def _shard_reported(self, report: ShardReport) -> None:
        book = self.state.shards
        if book is None:
            return
        book.reports[report.index] = report
        grant = book.grants.get(report.index)
        if grant is not None and report.seq == grant.seq:
            # It acts on the latest grant now: only that one's budgets are spent.
            book.ceilings[report.index] = dict(grant.budgets)

    def _shard_objects_changed(self, change: ObjectsChanged) -> bool:
        """Queue a watcher's change for the shard that owns the cluster (True: sharded)."""
        if self.state.shards is None:
            return False
        self._shard_changes.append(change.cluster)
        return True

    # --- the reconcile step -------------------------------------------------------------------

    async def _coordinate(self, spec: BundleSpec, clusters: ClusterSnapshot) -> None:
        book = self.state.shards
        assert book is not None
        if clusters.by_digest:
            await self._distribute_stored(spec, clusters)
        elif clusters.clusters:
            await self._distribute(spec, clusters)
        elif _spec_key(spec) != book.sent_spec:
            await self._send(spec, None)
        await self._forward()
        await self._grant(spec)
        await self._report_shards(spec)

    async def _distribute(self, spec: BundleSpec, clusters: ClusterSnapshot) -> None:
        """Hand each shard its part of a new snapshot (only shards whose part changed)."""
        book = self.state.shards
        assert book is not None
        if not book.boundaries:
            book.boundaries = shard_boundaries((c.name for c in clusters.clusters), book.size)
        parts: dict[int, list[ClusterView]] = {i: [] for i in range(len(book.boundaries))}
        for view in clusters.clusters:
            parts[shard_of(view.name, book.boundaries)].append(view)
        book.clusters_key = cluster_index(view.name for view in clusters.clusters).key
        for index, views in parts.items():
            book.part_keys[index] = cluster_index(view.name for view in views).key
            book.part_sizes[index] = len(views)
        await self._send(
            spec, {i: clusters.model_copy(update={"clusters": v}) for i, v in parts.items()}
        )
        # The bundle keeps the snapshot's version, groups and windows, not its clusters; the
        # shards plan their own (records of clusters it deployed before went with them).
        self.state.clusters = clusters.model_copy(update={"clusters": []})
        self.state.targets, self.state.plan_errors = {}, {}

    async def _distribute_stored(self, spec: BundleSpec, header: ClusterSnapshot) -> None:
        """As ``_distribute``, for a snapshot in the content store: an activity cuts it into
        the shards' parts and stores them, and each shard whose part changed gets the part's
        header (its digest changes only when its clusters do)."""
        book = self.state.shards
        assert book is not None
        split = await split_clusters(header, book.boundaries, book.size, self.state.bundle)
        if split is None:
            if _spec_key(spec) != book.sent_spec:
                await self._send(spec, None)  # the new spec at least; parts at the next pass
            return
        book.boundaries = split.boundaries
        # This bundle never sees the names of a stored snapshot: the split says the key of
        # the whole list and of each part, and the parts' sizes, which is all it needs to
        # join its shards' packed states (and cut its dependencies') by position. A split by
        # an older worker says nothing of them: the reports then go without per-cluster
        # states, and a key kept from an inline snapshot must not hold them back.
        keyed = bool(split.clusters_key) and workflow.patched(SHARD_DIGEST_STATES_PATCH)
        book.clusters_key = split.clusters_key if keyed else ""
        book.part_keys.clear()
        book.part_sizes.clear()
        if keyed:
            for index, part in enumerate(split.parts):
                book.part_keys[index] = part.clusters_key
                book.part_sizes[index] = part.cluster_count
        parts = {
            i: header.model_copy(
                update={
                    "clusters_digest": part.digest,
                    "cluster_count": part.cluster_count,
                    "stored_bytes": part.stored_bytes,
                    # The part's key, not the whole's (empty from older workers).
                    "clusters_key": part.clusters_key if keyed else "",
                }
            )
            for i, part in enumerate(split.parts)
        }
        await self._send(spec, parts)
        # Handed out: kept without the digest, so the next pass does not cut it again.
        self.state.clusters = header.model_copy(
            update={
                "clusters_digest": "",
                "cluster_count": 0,
                "stored_bytes": 0,
                "clusters_key": "",
            }
        )
        self.state.targets, self.state.plan_errors = {}, {}

    async def _send(self, spec: BundleSpec, parts: dict[int, ClusterSnapshot] | None) -> None:
        """Start the shards not started yet; tell the others what changed for them. A new
        spec withdraws every grant until all shards have planned it."""
        book = self.state.shards
        assert book is not None
        new_spec = _spec_key(spec) != book.sent_spec
        sends = []
        for index in range(len(book.boundaries)):
            part = parts.get(index) if parts else None
            digest = _digest(part.model_copy(update={"version": 0})) if part else ""
            changed = part is not None and digest != book.sent_clusters.get(index)
            if index < book.started and not new_spec and not changed:
                continue
            if part is not None:
                book.sent_clusters[index] = digest
            grant = self._next_grant(index, reached=[], budgets={}, closed={}) if new_spec else None
            refresh = BundleRefresh(
                spec=_for_shards(spec), clusters=part if changed else None, grant=grant or None
            )
            if index < book.started:
                sends.append(self._signal_shard(index, REFRESH, refresh))
            else:
                sends.append(self._start_shard(index, refresh))
        book.sent_spec = _spec_key(spec)
        await asyncio.gather(*sends)
        book.started = max(book.started, len(book.boundaries))

    async def _start_shard(self, index: int, refresh: BundleRefresh) -> None:
        """Start one shard with its part, the switches of this bundle, and the records of
        its clusters when this bundle deployed them before it was sharded."""
        book = self.state.shards
        assert book is not None
        records = {
            name: record
            for name, record in self.state.deployments.items()
            if shard_of(name, book.boundaries) == index
        }
        for name in records:
            self.state.deployments.pop(name)
            self.state.targets.pop(name, None)
        state = self.state.model_copy(
            update={
                "spec": refresh.spec,
                "clusters": refresh.clusters,
                "plan_key": "",
                "targets": {},
                "deployments": records,
                "dependency_states": {},
                "dependency_packed": {},
                "last_report": "",
                "last_report_at": None,
                "conditions": [],
                "since": {},
                "shards": None,
                "shard": ShardRole(
                    parent_workflow_id=bundle_workflow_id(self.state.namespace, self.state.bundle),
                    index=index,
                    grant=refresh.grant or ShardGrant(),
                ),
            }
        )
        await workflow.start_child_workflow(
            "BundleWorkflow",
            state,
            id=self._shard_ids()[index],
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=f"shard {index} of bundle {self.state.namespace}/{self.state.bundle}",
        )

    async def _forward(self) -> None:
        """Pass on, to the shards they concern: dependency states, pause, watcher changes."""
        book = self.state.shards
        assert book is not None
        sends = []
        packed: dict[int, list[DependencyStates]] = {}
        if self.state.dependency_packed and workflow.patched(SHARD_STATES_PATCH):
            packed = self._cut_dependencies()
        if self.state.dependency_states or packed:
            by_shard: dict[int, dict[str, dict[str, BundleState]]] = {}
            for bundle, states in self.state.dependency_states.items():
                for cluster, item in states.items():
                    index = shard_of(cluster, book.boundaries)
                    by_shard.setdefault(index, {}).setdefault(bundle, {})[cluster] = item
            commits = self.state.dependency_commits
            if packed:
                # Only the commits of the unpacked states sent with them: a packed one
                # carries its own, and an older one must not be paired with newer states.
                commits = {b: c for b, c in commits.items() if b in self.state.dependency_states}
            for index in range(book.started):
                refresh = BundleRefresh(
                    dependency_states=by_shard.get(index, {}),
                    dependency_commits=commits,
                    dependency_packed=packed.get(index, []),
                )
                sends.append(self._signal_shard(index, REFRESH, refresh))
            # Forwarded: the shards keep them (this state stays small).
            self.state.dependency_states = {}
        paused = self.state.paused
        if paused != book.paused:
            book.paused = paused
            sends.extend(
                self._signal_shard(i, PAUSE_SIGNAL, PauseRequest(paused=paused))
                for i in range(book.started)
            )
        changes, self._shard_changes = self._shard_changes, []
        everyone = "" in changes  # ``flotilla sync``: every shard checks every cluster
        named = sorted({(shard_of(c, book.boundaries), c) for c in changes if c and not everyone})
        sends.extend(
            self._signal_shard(i, OBJECTS_CHANGED_SIGNAL, ObjectsChanged(cluster=c))
            for i, c in (named or [(i, "") for i in range(book.started) if everyone])
        )
        await asyncio.gather(*sends)

    async def _grant(self, spec: BundleSpec) -> None:
        """Once every shard acts on its latest grant and has planned this commit: offsets
        first (automatic partitions are cut over the whole bundle), then the partitions
        reached and the budgets (``flotilla.shards.plan_shards``)."""
        book = self.state.shards
        assert book is not None
        shards = range(book.started)
        reports = book.reports
        for index in shards:
            report = reports.get(index)
            grant = book.grants.get(index, ShardGrant())
            if report is None or report.seq != grant.seq:
                return
            if report.commit != spec.commit or not report.planned:
                return
        offsets = shard_offsets({i: reports[i].targets for i in shards})
        total = sum(reports[i].targets for i in shards)
        moved = [
            i
            for i in shards
            if (book.grants[i].offset, book.grants[i].total) != (offsets[i], total)
        ]
        sends = []
        if moved:
            for index in moved:
                grant = self._next_grant(
                    index, offset=offsets[index], total=total, reached=[], budgets={}
                )
                sends.append(self._signal_shard(index, REFRESH, BundleRefresh(grant=grant)))
            await asyncio.gather(*sends)
            return
        strategy = reports[0].strategy if 0 in reports else next(iter(reports.values())).strategy
        counts = {i: reports[i].partitions for i in shards}
        # The strategy the shards planned: what approvals and `flotilla status` check against.
        self.state.strategy = strategy
        closed: dict[str, str] = {}
        if partition_gates(strategy) and workflow.patched(SHARD_GATES_PATCH):

            def gated_plan(even: bool, usable: bool = False) -> ShardGates:
                return gate_shards(
                    strategy,
                    counts,
                    book.ceilings,
                    self.state.gates.for_version(spec.bundle_digest),
                    workflow.now(),
                    size=book.size,
                    even=even,
                    usable=usable,
                )

            gated, even = gated_plan(False), gated_plan(True)
            if even.plan.budgets != gated.plan.budgets and workflow.patched(
                SHARD_EVEN_BUDGETS_PATCH
            ):
                gated = even
            usable = gated_plan(True, usable=True)
            if usable.plan.budgets != gated.plan.budgets and workflow.patched(
                SHARD_USABLE_BUDGETS_PATCH
            ):
                gated = usable
            plan, self.state.gates, self._gate = gated.plan, gated.record, gated.decision
            self._gate_record = gated.record
            closed = gated.decision.closed
        else:
            plan = plan_shards(strategy, counts, book.ceilings)
            even_plan = plan_shards(strategy, counts, book.ceilings, even=True)
            if even_plan.budgets != plan.budgets and workflow.patched(SHARD_EVEN_BUDGETS_PATCH):
                plan = even_plan
            usable_plan = plan_shards(strategy, counts, book.ceilings, even=True, usable=True)
            if usable_plan.budgets != plan.budgets and workflow.patched(SHARD_USABLE_BUDGETS_PATCH):
                plan = usable_plan
        book.summary = plan.summary
        for index in shards:
            grant = book.grants[index]
            budgets = plan.budgets.get(index, {})
            if (
                grant.reached == plan.reached
                and grant.budgets == budgets
                and grant.closed == closed
            ):
                continue
            own = [c.name for c in reports[index].partitions if c.count]
            if grant_as_seen(own, grant.reached, grant.budgets, grant.closed) == grant_as_seen(
                own, plan.reached, budgets, closed
            ) and workflow.patched(SHARD_GRANTS_THAT_MATTER_PATCH):
                continue  # nothing it acts on changed: no grant to send and wait for
            if grant_as_seen(
                own, grant.reached, grant.budgets, grant.closed, zero_is_none=True
            ) == grant_as_seen(
                own, plan.reached, budgets, closed, zero_is_none=True
            ) and workflow.patched(SHARD_ZERO_BUDGETS_PATCH):
                continue  # only budgets of 0 where it had none
            grant = self._next_grant(index, reached=plan.reached, budgets=budgets, closed=closed)
            sends.append(self._signal_shard(index, REFRESH, BundleRefresh(grant=grant)))
        await asyncio.gather(*sends)

    def _shard_summary(self, spec: BundleSpec, *, with_states: bool = False) -> BundleReport:
        """The bundle as the sum of its shards' last reports (``with_states``: and their
        per-cluster states joined, when every shard has reported them for its part)."""
        book = self.state.shards
        assert book is not None
        reports = [book.reports.get(i) for i in range(book.started)]
        current = [r for r in reports if r is not None and r.commit == spec.commit and r.planned]
        ready = sum(r.ready for r in current)
        desired = sum(r.desired for r in current)
        if len(current) < len(reports) or not reports:
            state, message = BundleState.WAIT_APPLIED, planning_text(spec.commit)
        else:
            state = worst_state(r.state for r in current)
            message = next((r.message for r in current if r.state is state and r.message), "")
        counts: dict[str, int] = {}
        for r in current:
            for name, n in r.counts.items():
                counts[name] = counts.get(name, 0) + n
        non_ready = [entry for r in current for entry in r.non_ready][:MAX_REPORTED_NON_READY]
        halted = self._shard_halted(spec)
        report = BundleReport(
            bundle=self.state.bundle,
            commit=spec.commit,
            ready=ready,
            desired=desired,
            state=state,
            message=message,
            counts=counts,
            non_ready=non_ready,
            halted=halted,
            auto_rollback=bool(halted)
            and rolls_back(partition_gates(self.state.strategy), self.state.gates),
        )
        joined = self._joined_states(spec) if with_states else None
        return report if joined is None else with_packed(report, joined)

    def _shard_halted(self, spec: BundleSpec) -> str:
        """Why a gate halted the rollout of the version the spec names, as the bundle's
        own gates say (``BundleWorkflow._halted``)."""
        return self._gate.halted if self.state.gates.version == spec.bundle_digest else ""

    def _shards_behind(self) -> bool:
        """Whether, after a first report, a shard still packs its states against an older
        part than the one it was last handed (a shard of an older worker that packs none,
        or a bundle sharded before it kept its parts' keys, is not waited for: its report
        goes out without per-cluster states, as it did then)."""
        book = self.state.shards
        assert book is not None
        if not self.state.last_report or not book.clusters_key:
            return False
        return any(
            (report := book.reports.get(index)) is not None
            and report.clusters_key
            and report.clusters_key != book.part_keys.get(index)
            for index in range(book.started)
        )

    def _joined_states(self, spec: BundleSpec) -> PackedStates | None:
        """Every shard's packed states joined against the snapshot last handed out, or None
        while a shard has not reported against its part of it yet."""
        book = self.state.shards
        assert book is not None
        parts = []
        for index in range(book.started):
            report = book.reports.get(index)
            if (
                report is None
                or not report.clusters_key
                or report.clusters_key != book.part_keys.get(index)
            ):
                return None
            parts.append(
                PackedPart(
                    codes=report.codes,
                    counts=report.counts,
                    length=book.part_sizes[index],
                    extra=report.states,
                    stale=report.commit != spec.commit,
                )
            )
        if not parts or not book.clusters_key:
            return None
        return join_shard_states(parts, book.clusters_key)

    async def _report_shards(self, spec: BundleSpec, *, retired: bool = False) -> None:
        """Report the sum to the GitRepo when it changed, at most every REPORT_GAP."""
        states = workflow.patched(SHARD_STATES_PATCH)
        report = self._shard_summary(spec, with_states=states).model_copy(
            update={"retired": retired}
        )
        self._summary = (self.state.shards.summary if self.state.shards else "") or report.message
        workflow.set_current_details(self._summary)
        if states and not report.clusters_key and not retired and self._shards_behind():
            # A shard has not reported against its new part yet (it will, as its key
            # changed): a report without per-cluster states would drop this bundle's clusters
            # from readyClusters and from its dependents until then.
            return
        # With a read error of a newer commit, as the unsharded bundle's (see _report): it
        # changes what this bundle publishes; without one, the report's digest alone.
        fingerprint = hashlib.sha256(
            (report.model_dump_json() + spec.source_error).encode()
        ).hexdigest()
        if fingerprint == self.state.last_report:
            self._report_due = None
            return
        now = workflow.now()
        last = self.state.last_report_at or self._run_started
        if not retired and now - last < SHARD_REPORT_GAP:
            self._report_due = last + SHARD_REPORT_GAP
            return
        self._report_due = None
        self.state.last_report, self.state.last_report_at = fingerprint, now
        state, message = bundle_shown(
            report.state, report.message, halted=report.halted, source_error=spec.source_error
        )
        publish_bundle(
            gitrepo=spec.gitrepo,
            bundle=self.state.bundle,
            commit=spec.commit,
            state=state,
            message=message,
            ready=report.ready,
            desired=report.desired,
        )
        with contextlib.suppress(FailureError):
            await workflow.get_external_workflow_handle(self.state.gitrepo_workflow_id).signal(
                BUNDLE_REPORT, report
            )

    async def _retire_shards(self) -> None:
        """Retire every shard, wait until each has removed its releases, then report."""
        book = self.state.shards
        assert book is not None
        await asyncio.gather(
            *(self._signal_shard(i, RETIRE, RetireRequest()) for i in range(book.started))
        )
        await workflow.wait_condition(
            lambda: all(
                (r := book.reports.get(i)) is not None and r.retired for i in range(book.started)
            )
        )
        if self.state.spec is not None:
            await self._report_shards(self.state.spec, retired=True)

    def _shard_status(self) -> BundleStatus:
        """``flotilla status`` of a sharded bundle: the sums, and how many shards list its
        clusters (``Control.bundle_status(..., clusters=True)`` asks them)."""
        spec = self.state.spec
        book = self.state.shards
        assert book is not None
        summary = self._shard_summary(spec) if spec else None
        halted = summary.halted if summary else ""
        state, message = bundle_shown(
            summary.state if summary else BundleState.PENDING,
            summary.message if summary else "",
            halted=halted,
            source_error=spec.source_error if spec else "",
        )
        return BundleStatus(
            namespace=self.state.namespace,
            bundle=self.state.bundle,
            gitrepo=spec.gitrepo if spec else "",
            commit=spec.commit if spec else "",
            paused=self.state.paused or any(r.paused for r in book.reports.values()),
            ready=summary.ready if summary else 0,
            desired=summary.desired if summary else 0,
            state=state,
            message=message,
            summary=self._summary,
            clusters=[],
            gates=gate_statuses(
                partition_gates(self.state.strategy), self._gate_record, self._gate, workflow.now()
            ),
            halted=halted,
            source_error=spec.source_error if spec else "",
            shards=book.started,
        )
