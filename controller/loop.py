"""The controller loop: watch GitRepo, HelmOp, Cluster, ClusterGroup, Schedule and
restriction objects, apply them as ``flotilla apply`` does, and write the workflows' status
back in Fleet's shape.

Reads and decisions that need no I/O are ``flotilla.fleetapi``'s; this module only moves data
between the management cluster's API (``activities.kube``, a blocking client, called on
threads) and Temporal (``starters.control.Control``, what the CLI uses).

State kept in memory is a cache, never a record: objects as last watched, the status last
seen on them and the bundles' last status. A restart lists everything again, applies nothing
whose ``status.appliedDigest`` says it was applied, and rewrites only statuses that differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from activities.kube import (
    ConflictError,
    GoneError,
    Kube,
    KubeError,
    NotFoundError,
    ResourceInfo,
    list_everywhere,
    watch_everywhere,
)
from flotilla import fleetapi
from flotilla.errors import FlotillaError, one_line
from flotilla.fleetapi import DeploymentView, GitRepoView
from flotilla.models import ClusterGroup, GitRepo, GitRepoRestriction, HelmOp, Policy, Schedule
from flotilla.status import BundleLine, BundleState
from flotilla.targeting import match_selector
from starters.control import Control
from workflows.bundle_models import BundleStatus

log = logging.getLogger("flotilla.controller")

FLEET_API = f"{fleetapi.GROUP}/{fleetapi.VERSION}"
WATCHED = (
    "GitRepo",
    "HelmOp",
    "Cluster",
    "ClusterGroup",
    "Schedule",
    "Policy",
    "GitRepoRestriction",
)
# Kinds whose status (conditions included) the status pass writes from their workflow.
_OWN_STATUS = ("GitRepo", "HelmOp")
REPO_LABEL = "fleet.cattle.io/repo-name"
# Fleet's label on a HelmOp's Bundle (and here its BundleDeployments): the HelmOp's name.
HELMOP_LABEL = "fleet.cattle.io/fleet-helm-name"
# The label that ties a Bundle and its BundleDeployments to what owns them, by owner kind.
_OWNER_LABELS = {"GitRepo": REPO_LABEL, "HelmOp": HELMOP_LABEL}
BUNDLE_LABEL = "fleet.cattle.io/bundle-name"
CLUSTER_LABEL = "fleet.cattle.io/cluster"
_MERGE = "application/merge-patch+json"
_WATCH_SECONDS = 240
# GitRepo status queries in flight at once in a status pass.
_STATUS_CONCURRENCY = 8


def _reraise_if_stopping(err: Exception) -> None:
    """Raise CancelledError if the current task is being cancelled (the controller stops).

    Temporal's client turns a cancellation that lands in an update call into
    WorkflowUpdateRPCTimeoutOrCancelledError: a loop that logs errors and carries on would
    swallow the stop and run forever, and ``run`` would wait for it forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from err


class ControllerRefused(FlotillaError):
    """Another controller serves a namespace this one was asked to serve."""


Key = tuple[str, str, str]  # kind, namespace, name


@dataclass
class ControllerConfig:
    namespaces: list[str]
    identity: str
    install_crds: bool = True
    status_seconds: float = 2.0
    retry_seconds: float = 30.0
    workers: int = 4
    # The GitRepos' bundles shard above this many clusters (None: the bundles' own default,
    # ``flotilla.settings.DEFAULT_BUNDLE_SHARD_SIZE``); a test switch, as in GitRepoState.
    bundle_shard_size: int | None = None


@dataclass
class _Seen:
    """What the status pass last read for one GitRepo's bundles."""

    lines: dict[str, tuple[object, ...]] = field(default_factory=dict)
    bundles: dict[str, BundleStatus] = field(default_factory=dict)


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(obj.get("kind")), str(meta.get("namespace")), str(meta.get("name"))


def _path(kind: str, namespace: str, name: str = "", sub: str = "") -> str:
    plural = fleetapi.KIND_BY_NAME[kind].plural
    path = f"/apis/{FLEET_API}/namespaces/{quote(namespace, safe='')}/{plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    return path + (f"/{sub}" if sub else "")


def _now() -> datetime:
    return datetime.now(UTC)


def _covers(current: Any, desired: Any) -> bool:
    """Whether ``current`` already holds everything ``desired`` says (a merge patch of it
    would change nothing)."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(
            _covers(current.get(k), v) for k, v in desired.items()
        )
    return bool(current == desired)


class Controller:
    """One controller process; ``requests`` counts its API calls by verb (for benchmarks)."""

    def __init__(self, kube: Kube, control: Control, config: ControllerConfig) -> None:
        self.kube = kube
        self.control = control
        self.config = config
        self.requests: Counter[str] = Counter()
        self.status_writes: Counter[str] = Counter()
        self.objects: dict[Key, dict[str, Any]] = {}
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._busy: set[Key] = set()
        self._extra: dict[Key, list[dict[str, Any]]] = {}
        self._applied: set[Key] = set()
        self._retry: dict[Key, float] = {}
        self._seen: dict[Key, _Seen] = {}
        self._children: set[tuple[str, str, str]] = set()
        # The spec each child was last written with (a new commit changes it).
        self._child_specs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._stop_watching = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set once the CRDs are there, the Leases held and the watches started.
        self.started = asyncio.Event()

    # --- API calls ---------------------------------------------------------------------------

    async def _call(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        """``Kube.request`` on a thread, counted."""
        self.requests[method] += 1
        return await asyncio.to_thread(self.kube.request, method, path, **options)

    async def _patch(self, path: str, body: Any, *, what: str) -> dict[str, Any]:
        return await self._call("PATCH", path, what=what, body=body, content_type=_MERGE)

    # --- start: CRDs and leases --------------------------------------------------------------

    async def ensure_crds(self) -> None:
        """Install (or update) Fleet's CRDs, or check that they are there."""
        for crd in fleetapi.crd_documents():
            name = crd["metadata"]["name"]
            path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            what = f"CustomResourceDefinition {name}"
            try:
                current = await self._call("GET", path, what=what)
            except NotFoundError:
                if not self.config.install_crds:
                    raise ControllerRefused(
                        f"{what} is not installed: run `flotilla controller --install-crds` "
                        "once, or install Fleet's CRDs"
                    ) from None
                await self._call(
                    "POST",
                    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                    what=what,
                    body=crd,
                )
                continue
            if (
                self.config.install_crds
                and current.get("spec", {}).get("versions") != crd["spec"]["versions"]
            ):
                crd["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                await self._call("PUT", path, what=what, body=crd)
        await self._wait_established()

    async def _wait_established(self) -> None:
        deadline = time.monotonic() + 30
        for kind in fleetapi.KINDS:
            path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{kind.resource}"
            while True:
                crd = await self._call("GET", path, what=f"CRD {kind.resource}")
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    break
                if time.monotonic() > deadline:
                    raise ControllerRefused(f"CRD {kind.resource} is not established after 30s")
                await asyncio.sleep(0.2)

    async def take_leases(self) -> None:
        """Refuse to run beside Fleet's controller or another flotilla controller on a
        namespace; otherwise hold a Lease in each namespace served."""
        now = _now()
        leases = await self._call(
            "GET", "/apis/coordination.k8s.io/v1/leases", what="leases in all namespaces"
        )
        fleet = fleetapi.fleet_controller_lease(leases.get("items") or [], now)
        if fleet:
            raise ControllerRefused(
                f"Fleet's controller is running (Lease {fleet} is held): it serves every "
                "namespace's GitRepos; stop it (scale fleet-controller to 0) before "
                "handing them to flotilla"
            )
        for namespace in self.config.namespaces:
            path = self._lease_path(namespace)
            what = f"Lease {namespace}/{fleetapi.LEASE_NAME}"
            try:
                lease = await self._call("GET", path, what=what)
            except NotFoundError:
                lease = None
            body: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": fleetapi.LEASE_NAME, "namespace": namespace},
                "spec": fleetapi.lease_spec(self.config.identity, now),
            }
            if lease is None:
                await self._call("POST", path.rsplit("/", 1)[0], what=what, body=body)
                continue
            holder = fleetapi.lease_holder(lease, self.config.identity, now)
            if holder:
                raise ControllerRefused(
                    f"namespace {namespace} is served by another flotilla controller "
                    f"({holder!r}, {what}); run one controller per namespace"
                )
            body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
            await self._call("PUT", path, what=what, body=body)

    def _lease_path(self, namespace: str) -> str:
        return (
            f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace, safe='')}"
            f"/leases/{fleetapi.LEASE_NAME}"
        )

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(fleetapi.LEASE_SECONDS / 3)
            spec = fleetapi.lease_spec(self.config.identity, _now())
            for namespace in self.config.namespaces:
                try:
                    await self._patch(
                        self._lease_path(namespace),
                        {"spec": {"renewTime": spec["renewTime"]}},
                        what=f"Lease {namespace}/{fleetapi.LEASE_NAME}",
                    )
                except KubeError as err:
                    log.warning("lease of namespace %s not renewed: %s", namespace, err)

    async def release_leases(self) -> None:
        for namespace in self.config.namespaces:
            with contextlib.suppress(KubeError):
                await self._call(
                    "DELETE",
                    self._lease_path(namespace),
                    what=f"Lease {namespace}/{fleetapi.LEASE_NAME}",
                )

    # --- run ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; ControllerRefused before anything is watched."""
        await self.ensure_crds()
        await self.take_leases()
        self._loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(self._renew_leases())]
        try:
            for kind in WATCHED:
                threading.Thread(
                    target=self._watch, args=(kind,), daemon=True, name=f"watch-{kind}"
                ).start()
            tasks += [asyncio.create_task(self._worker()) for _ in range(self.config.workers)]
            tasks.append(asyncio.create_task(self._status_loop()))
            self.started.set()
            log.info(
                "flotilla controller %s serving namespaces %s",
                self.config.identity,
                ", ".join(self.config.namespaces),
            )
            await stop.wait()
        finally:
            self._stop_watching.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.release_leases()

    # --- watching (threads) --------------------------------------------------------------------

    def _watch(self, kind: str) -> None:
        info = ResourceInfo(
            api_version=FLEET_API,
            kind=kind,
            plural=fleetapi.KIND_BY_NAME[kind].plural,
            namespaced=True,
        )
        version = ""
        while not self._stop_watching.is_set():
            try:
                if not version:
                    self.requests["LIST"] += 1
                    items, version = list_everywhere(self.kube, info, label_selector="")
                    self._deliver("LISTED", kind, items)
                self.requests["WATCH"] += 1
                for event, obj in watch_everywhere(
                    self.kube,
                    info,
                    resource_version=version,
                    label_selector="",
                    timeout_seconds=_WATCH_SECONDS,
                ):
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if event != "BOOKMARK":
                        self._deliver(event, kind, [obj])
                    if self._stop_watching.is_set():
                        return
            except GoneError:
                version = ""  # list again, then watch from the new list
            except KubeError as err:
                if self._stop_watching.is_set():
                    return
                log.warning("watch of %s: %s; listing again in 2s", info.plural, err)
                version = ""
                self._stop_watching.wait(2.0)

    def _deliver(self, event: str, kind: str, objects: list[dict[str, Any]]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._observe, event, kind, objects)

    def _observe(self, event: str, kind: str, objects: list[dict[str, Any]]) -> None:
        served = set(self.config.namespaces)
        if event == "LISTED":
            listed = {_key(o) for o in objects}
            for key in [k for k in self.objects if k[0] == kind and k not in listed]:
                self._forget(key)
        for obj in objects:
            key = _key(obj)
            if key[1] not in served:
                continue
            if event == "DELETED":
                self._forget(key)
                continue
            before = self.objects.get(key)
            self.objects[key] = obj
            if before is None or _intent(before) != _intent(obj):
                self._enqueue(key)

    def _forget(self, key: Key) -> None:
        self.objects.pop(key, None)
        self._applied.discard(key)
        self._extra.pop(key, None)
        self._retry.pop(key, None)

    def _enqueue(self, key: Key) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    # --- reconciling -------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            if key in self._busy:  # another worker has it: look again once it is done
                await asyncio.sleep(0.2)
                self._enqueue(key)
                continue
            self._busy.add(key)
            try:
                await self.reconcile(key)
            except ConflictError:
                # The object changed under a finalizer patch: again with the newer one soon.
                self._retry[key] = time.monotonic()
            except Exception as err:  # a bug or an outage: one line, retried later
                _reraise_if_stopping(err)
                log.warning("%s %s/%s: %s", *key, one_line(f"{type(err).__name__}: {err}"))
                self._retry[key] = time.monotonic() + self.config.retry_seconds
            finally:
                self._busy.discard(key)

    async def reconcile(self, key: Key) -> None:
        obj = self.objects.get(key)
        if obj is None:
            return
        meta = obj.get("metadata") or {}
        kind, namespace, name = key
        if meta.get("deletionTimestamp"):
            if fleetapi.FINALIZER in (meta.get("finalizers") or []):
                await self._remove(key)
                await self._patch(
                    _path(kind, namespace, name),
                    {
                        "metadata": {
                            "finalizers": [
                                f for f in meta["finalizers"] if f != fleetapi.FINALIZER
                            ],
                            "resourceVersion": meta.get("resourceVersion"),
                        }
                    },
                    what=fleetapi.object_name(obj),
                )
            return
        try:
            model, warnings = fleetapi.read_object(obj)
        except FlotillaError as err:
            await self._reject(key, obj, str(err), [])
            return
        self._extra[key] = _accepted(warnings)
        if fleetapi.FINALIZER not in (meta.get("finalizers") or []):
            await self._patch(
                _path(kind, namespace, name),
                {
                    "metadata": {
                        "finalizers": [*(meta.get("finalizers") or []), fleetapi.FINALIZER],
                        "resourceVersion": meta.get("resourceVersion"),
                    }
                },
                what=fleetapi.object_name(obj),
            )
        digest = fleetapi.applied_digest(obj)
        status = obj.get("status") or {}
        if status.get("appliedDigest") != digest or key in self._retry:
            try:
                if isinstance(model, GitRepo):
                    size = self.config.bundle_shard_size
                    await self.control.apply_gitrepo(
                        model, **({} if size is None else {"bundle_shard_size": size})
                    )
                elif isinstance(model, HelmOp):
                    await self.control.apply_helmop(model, file=fleetapi.object_name(obj))
                elif isinstance(model, ClusterGroup):
                    await self.control.apply_group(model)
                elif isinstance(model, Policy | GitRepoRestriction):
                    await self.control.apply_restriction(model)
                elif isinstance(model, Schedule):
                    await self.control.apply_schedule(model)
                else:
                    await self.control.apply_cluster(model)
            except FlotillaError as err:
                await self._reject(key, obj, str(err), warnings)
                self._retry[key] = time.monotonic() + self.config.retry_seconds
                return
            log.info("%s applied", fleetapi.object_name(obj))
        self._retry.pop(key, None)
        self._applied.add(key)
        await self._write_status(
            key,
            {
                "appliedDigest": digest,
                "observedGeneration": meta.get("generation", 0),
                **({} if kind in _OWN_STATUS else {"conditions": self._extra[key]}),
            },
        )

    async def _reject(self, key: Key, obj: dict[str, Any], error: str, warnings: list[str]) -> None:
        name = fleetapi.object_name(obj)
        log.warning("%s", one_line(error if error.startswith(name) else f"{name}: {error}"))
        self._applied.discard(key)
        status = fleetapi.rejected_status(obj, error, warnings)
        await self._write_status(key, status)

    async def _remove(self, key: Key) -> None:
        kind, namespace, name = key
        # No status pass reads it any more: a closed workflow still answers queries, and its
        # Bundles would be written again after they are deleted.
        self._applied.discard(key)
        try:
            if kind == "GitRepo":
                await self.control.delete_gitrepo(namespace, name, wait=True)
            elif kind == "HelmOp":
                await self.control.delete_helmop(namespace, name, wait=True)
            elif kind == "Cluster":
                await self.control.remove_cluster(namespace, name)
            elif kind == "Schedule":
                await self.control.remove_schedule(namespace, name)
            elif kind == "ClusterGroup":
                await self.control.remove_group(namespace, name)
            else:
                await self.control.remove_restriction(namespace, kind, name)
        except FlotillaError as err:
            # Never applied (invalid, or already gone): nothing of it runs.
            log.info("%s %s/%s: nothing to remove (%s)", kind, namespace, name, one_line(str(err)))
        if kind in _OWNER_LABELS:
            for bundle in (self._seen.pop(key, None) or _Seen()).bundles.values():
                self._drop_children(namespace, bundle)
            await self._delete_children(key)
        log.info("%s %s/%s deleted", kind.lower(), namespace, name)

    async def _delete_children(self, owner: Key) -> None:
        """Delete the Bundles and BundleDeployments of a GitRepo or HelmOp."""
        kind, namespace, name = owner
        for child in ("BundleDeployment", "Bundle"):
            await self._call(
                "DELETE",
                _path(child, namespace),
                what=f"{child}s of {kind.lower()} {namespace}/{name}",
                query=[("labelSelector", f"{_OWNER_LABELS[kind]}={name}")],
            )

    # --- status ------------------------------------------------------------------------------

    async def _write_status(self, key: Key, status: dict[str, Any]) -> bool:
        """Merge ``status`` into the object's status unless it already says all of it."""
        obj = self.objects.get(key)
        if obj is None or _covers(obj.get("status"), status):
            return False
        kind, namespace, name = key
        try:
            written = await self._patch(
                _path(kind, namespace, name, "status"),
                {"status": status},
                what=f"the status of {kind.lower()} {namespace}/{name}",
            )
        except NotFoundError:
            if kind in ("Bundle", "BundleDeployment"):
                # Deleted by hand: _child creates it again.
                self._children.discard(key)
                self._child_specs.pop(key, None)
            return False
        self.status_writes[kind] += 1
        if key in self.objects:
            self.objects[key] = {**self.objects[key], "status": written.get("status")}
        return True

    async def _status_loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.status_pass()
            except Exception as err:  # Temporal or the API server away: next pass
                _reraise_if_stopping(err)
                log.warning("status pass: %s", one_line(f"{type(err).__name__}: {err}"))
            for key, when in list(self._retry.items()):
                if when <= time.monotonic():
                    self._enqueue(key)
            await asyncio.sleep(max(0.0, self.config.status_seconds - (time.monotonic() - started)))

    async def status_pass(self) -> None:
        """Read every applied GitRepo's status (and changed bundles'), write what differs."""
        per_cluster: dict[str, dict[str, dict[str, str]]] = {}
        gitrepos = [k for k in self.objects if k[0] == "GitRepo" and k in self._applied]
        bound = asyncio.Semaphore(_STATUS_CONCURRENCY)

        async def one(key: Key) -> None:
            async with bound:
                try:
                    await self._gitrepo_pass(key)
                except Exception as err:  # one slow or failed query must not hold the rest
                    log.warning(
                        "status of %s %s/%s: %s", *key, one_line(f"{type(err).__name__}: {err}")
                    )

        await asyncio.gather(*(one(key) for key in gitrepos))
        for key in [k for k in self.objects if k[0] == "HelmOp" and k in self._applied]:
            try:
                await self._helmop_pass(key)
            except Exception as err:  # as for GitRepos: the next pass tries again
                log.warning(
                    "status of %s %s/%s: %s", *key, one_line(f"{type(err).__name__}: {err}")
                )
        for key, seen in self._seen.items():
            for bundle in seen.bundles.values():
                for c in bundle.clusters:
                    per_cluster.setdefault(key[1], {}).setdefault(c.cluster, {})[bundle.bundle] = (
                        c.state
                    )
        for namespace in self.config.namespaces:
            if any(k[1] == namespace and k[0] not in _OWN_STATUS for k in self._applied):
                await self._cluster_pass(namespace, per_cluster.get(namespace, {}))

    async def _gitrepo_pass(self, key: Key) -> None:
        _, namespace, name = key
        try:
            status = await self.control.gitrepo_status(namespace, name)
        except FlotillaError:
            return  # not started yet
        view = GitRepoView.of(status)
        await self._write_status(
            key, fleetapi.gitrepo_status(view, self._extra.get(key, []), _now())
        )
        await self._bundles_pass(key, status.bundles, status.commit)

    async def _bundles_pass(self, key: Key, lines: Sequence[BundleLine], version: str) -> None:
        """Write the Bundles (and BundleDeployments) of a GitRepo's or HelmOp's bundles whose
        line in its status changed (``version``: the commit or chart version it shows)."""
        _, namespace, _ = key
        seen = self._seen.setdefault(key, _Seen())
        current = {b.name: (b.state, b.ready, b.desired, b.message, version) for b in lines}
        read_errors = {b.name for b in lines if b.error}
        for bundle, line in current.items():
            if seen.lines.get(bundle) == line:
                continue
            try:
                bundle_status = await self.control.bundle_status(namespace, bundle, clusters=True)
            except FlotillaError:
                continue
            await self._write_bundle(key, bundle_status)
            await self._delete_untargeted(namespace, seen.bundles.get(bundle), bundle_status)
            seen.bundles[bundle] = bundle_status
            if bundle in read_errors and not bundle_status.source_error:
                # The GitRepo has a read error for it that the bundle has not been told of
                # yet (its refresh is on the way): read it again next pass.
                continue
            seen.lines[bundle] = line
        for gone in set(seen.lines) - set(current):
            seen.lines.pop(gone, None)
            self._drop_children(namespace, seen.bundles.pop(gone, None))
            await self._delete_bundle(namespace, gone)

    async def _helmop_pass(self, key: Key) -> None:
        _, namespace, name = key
        try:
            status = await self.control.helmop_status(namespace, name)
        except FlotillaError:
            return  # not started yet
        await self._write_status(
            key, fleetapi.helmop_status(status, self._extra.get(key, []), _now())
        )
        await self._bundles_pass(key, status.bundles, status.version)

    async def _write_bundle(self, owner: Key, status: BundleStatus) -> None:
        kind, namespace, name = owner
        deployments = [DeploymentView.of(c) for c in status.clusters]
        labels = {_OWNER_LABELS[kind]: name}
        await self._child(
            "Bundle",
            namespace=namespace,
            name=status.bundle,
            labels=labels,
            spec={"commit": status.commit},
            status=fleetapi.bundle_status(
                status.ready, status.desired, status.state, status.message, deployments
            ),
        )
        for d in deployments:
            await self._child(
                "BundleDeployment",
                namespace=namespace,
                name=fleetapi.bundledeployment_name(status.bundle, d.cluster),
                labels={
                    **labels,
                    BUNDLE_LABEL: status.bundle,
                    CLUSTER_LABEL: d.cluster,
                },
                spec={"deploymentID": d.deployment_id},
                status=fleetapi.bundledeployment_status(d),
            )

    async def _child(
        self,
        kind: str,
        *,
        namespace: str,
        name: str,
        labels: dict[str, str],
        spec: dict[str, Any],
        status: dict[str, Any],
    ) -> None:
        """Create a Bundle or BundleDeployment once, then write its spec (the commit, the
        deployment ID) and its status when they change; one deleted by hand is created
        again when it is next written."""
        ident = (kind, namespace, name)
        what = f"{kind.lower()} {namespace}/{name}"
        for _ in range(2):  # a second time only when it was found deleted
            if ident not in self._children:
                body = {
                    "apiVersion": FLEET_API,
                    "kind": kind,
                    "metadata": {"name": name, "namespace": namespace, "labels": labels},
                    "spec": spec,
                }
                try:
                    await self._call("POST", _path(kind, namespace), what=what, body=body)
                    self._child_specs[ident] = spec
                except ConflictError:  # there since an earlier run, with a spec of its time
                    self._child_specs.pop(ident, None)
                self._children.add(ident)
                self.objects[ident] = {"status": None}
            if self._child_specs.get(ident) != spec:
                try:
                    await self._patch(_path(kind, namespace, name), {"spec": spec}, what=what)
                    self._child_specs[ident] = spec
                except NotFoundError:
                    self._children.discard(ident)
                    continue
            await self._write_status(ident, status)
            if ident in self._children:  # else deleted by hand: _write_status forgot it
                return

    def _drop_children(self, namespace: str, bundle: BundleStatus | None) -> None:
        if bundle is None:
            return
        idents = [("Bundle", namespace, bundle.bundle)] + [
            (
                "BundleDeployment",
                namespace,
                fleetapi.bundledeployment_name(bundle.bundle, c.cluster),
            )
            for c in bundle.clusters
        ]
        for ident in idents:
            self._children.discard(ident)
            self._child_specs.pop(ident, None)
            self.objects.pop(ident, None)

    async def _delete_untargeted(
        self, namespace: str, previous: BundleStatus | None, current: BundleStatus
    ) -> None:
        """Delete the BundleDeployments of clusters the bundle no longer deploys to (a label
        change, a cluster gone): those of its last status written, or, the first time this
        controller writes the bundle, those it finds labelled with it."""
        targeted = {c.cluster for c in current.clusters}
        if previous is not None:
            before = {c.cluster for c in previous.clusters}
        else:
            listed = await self._call(
                "GET",
                _path("BundleDeployment", namespace),
                what=f"bundledeployments of bundle {namespace}/{current.bundle}",
                query=[("labelSelector", f"{BUNDLE_LABEL}={current.bundle}")],
            )
            before = {
                str(item.get("metadata", {}).get("labels", {}).get(CLUSTER_LABEL, ""))
                for item in listed.get("items", [])
            }
        for cluster in sorted(before - targeted - {""}):
            name = fleetapi.bundledeployment_name(current.bundle, cluster)
            with contextlib.suppress(NotFoundError):
                await self._call(
                    "DELETE",
                    _path("BundleDeployment", namespace, name),
                    what=f"bundledeployment {namespace}/{name}",
                )
            ident = ("BundleDeployment", namespace, name)
            self._children.discard(ident)
            self._child_specs.pop(ident, None)
            self.objects.pop(ident, None)

    async def _delete_bundle(self, namespace: str, bundle: str) -> None:
        await self._call(
            "DELETE",
            _path("BundleDeployment", namespace),
            what=f"bundledeployments of bundle {namespace}/{bundle}",
            query=[("labelSelector", f"{BUNDLE_LABEL}={bundle}")],
        )
        with contextlib.suppress(NotFoundError):
            await self._call("DELETE", _path("Bundle", namespace, bundle), what=bundle)

    async def _cluster_pass(
        self, namespace: str, deployments: Mapping[str, Mapping[str, str]]
    ) -> None:
        registry = await self.control.registry(namespace)
        records = {c.name: c for c in registry.clusters}
        for key in [k for k in self._applied if k[1] == namespace and k[0] == "Cluster"]:
            record = records.get(key[2])
            if record is None:
                continue
            status = fleetapi.cluster_status(
                deployments.get(key[2], {}), record.unreachable, record.last_seen
            )
            status["conditions"] = [*status["conditions"], *self._extra.get(key, [])]
            await self._write_status(key, status)
        for key in [k for k in self._applied if k[1] == namespace and k[0] == "ClusterGroup"]:
            obj = self.objects.get(key)
            if obj is None:
                continue
            model, _ = fleetapi.read_object(obj)
            assert isinstance(model, ClusterGroup)
            members = {
                name: dict(deployments.get(name, {}))
                for name, record in records.items()
                if match_selector(model.spec.selector, record.labels)
            }
            status = fleetapi.clustergroup_status(members)
            status["conditions"] = [*status["conditions"], *self._extra.get(key, [])]
            await self._write_status(key, status)


def _intent(obj: Mapping[str, Any]) -> tuple[object, ...]:
    """What, changed, needs a reconcile (a status write alone does not)."""
    meta = obj.get("metadata") or {}
    return (
        fleetapi.applied_digest(obj),
        bool(meta.get("deletionTimestamp")),
        tuple(meta.get("finalizers") or ()),
    )


def _accepted(warnings: list[str]) -> list[dict[str, Any]]:
    return fleetapi.accepted_conditions(warnings)


__all__ = ["BundleState", "Controller", "ControllerConfig", "ControllerRefused"]
