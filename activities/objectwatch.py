"""Watch what flotilla deployed on one cluster and tell the bundles whose objects changed.

One long-running, heartbeating activity per cluster (started by ``workflows/objectwatch.py``;
run by the central worker for a push-mode cluster, by its agent for an agent-mode one), shared
by every bundle on the cluster. It watches Helm's release records (Secrets ``owner=helm``) and,
in every namespace, each kind the releases' manifests use, narrowed to
``app.kubernetes.io/managed-by=Helm``. An object names its release in Helm's annotations; the
release's record names its bundle (``BUNDLE_LABEL``). A release deployed as a bundle's
ServiceAccount (``SERVICE_ACCOUNT_LABEL`` on its record) has its kinds watched as that account,
in the namespaces its objects live in: a team's watch sees what the team may see, and a Role
without list/watch shows in the log, with the periodic check still finding drift. Release
records are read with the cluster's credentials, as Helm's own bookkeeping. A change signals that
bundle's workflow (``objects_changed``), debounced, which checks drift at once: the check,
not the watch, decides what is drift. Status-only changes and flotilla's own writes
(``flotilla.objectwatch``) are not reported. A watch that breaks is re-established from its
last resource version; one whose version is too old lists again and reports what differs.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import activity

from activities.deploy import DeployActivities
from activities.failures import to_application_error
from activities.helm import (
    RELEASE_NAME_ANNOTATION,
    RELEASE_NAMESPACE_ANNOTATION,
    read_release_manifest,
)
from activities.kube import (
    GoneError,
    Kube,
    ResourceInfo,
    list_everywhere,
    watch_everywhere,
)
from activities.objectwatch_models import (
    BUNDLE_LABEL,
    WATCH_OBJECTS,
    ObjectsChanged,
    WatchObjectsRequest,
    WatchObjectsResult,
)
from flotilla.deployment import Redactor
from flotilla.errors import FlotillaError
from flotilla.ids import bundle_workflow_id
from flotilla.impersonation import (
    SERVICE_ACCOUNT_LABEL,
    impersonating,
    rbac_denial,
    service_account_user,
)
from flotilla.manifests import parse_manifests
from flotilla.objectwatch import changed_by_flotilla, fingerprint

# The server ends each watch after this long; the thread then watches again from where it
# was, and notices a stop request.
_WATCH_SECONDS = 20
_RETRY_SECONDS = 2.0
_MAX_RETRY_SECONDS = 60.0
_HELM_SELECTOR = "app.kubernetes.io/managed-by=Helm"
_RECORDS = ResourceInfo(api_version="v1", kind="Secret", plural="secrets", namespaced=True)
# Pruned history (superseded revisions) goes away on every deploy; that is not drift.
_PRUNED = ("superseded",)
_NAMED = 5

Signal = Callable[[str, ObjectsChanged], Awaitable[None]]
# A client acting as the named user (a bundle's ServiceAccount).
ActAs = Callable[[str], Kube]


def _describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return "/".join(p for p in (obj.get("kind", ""), meta.get("namespace", ""), meta["name"]) if p)


class ClusterWatch:
    """The watches of one cluster, each in a thread; changes collect per bundle."""

    def __init__(self, kube: Kube, log: Callable[[str], None], act_as: ActAs | None = None) -> None:
        self.kube = kube
        self.log = log
        self.act_as = act_as
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # (namespace, release) -> bundle, and the deployed revision whose kinds are known.
        self._bundles: dict[tuple[str, str], str] = {}
        self._revisions: dict[tuple[str, str], str] = {}
        # (apiVersion, kind) watched with the cluster's credentials everywhere, or
        # (apiVersion, kind, user, namespace) watched as a ServiceAccount.
        self._threads: dict[tuple[str, ...], threading.Thread] = {}
        self._changed: dict[str, list[str]] = {}

    # -- what the activity reads -----------------------------------------------------------

    def take_changes(self) -> dict[str, list[str]]:
        with self._lock:
            changed, self._changed = self._changed, {}
        return changed

    def kinds(self) -> list[str]:
        with self._lock:
            return sorted(
                f"{key[0]}/{key[1]}" + (f" as {key[2]} in {key[3] or 'all'}" if key[2:] else "")
                for key in self._threads
            )

    def start(self) -> None:
        self._spawn(("v1", "Secret/records"), self._watch_records)

    def stop(self) -> None:
        self._stop.set()

    # -- plumbing --------------------------------------------------------------------------

    def _spawn(self, key: tuple[str, ...], target: Callable[[], None]) -> None:
        with self._lock:
            if key in self._threads or self._stop.is_set():
                return
            thread = threading.Thread(target=target, name=f"watch-{key[1]}", daemon=True)
            self._threads[key] = thread
        thread.start()

    def _note(self, bundle: str, what: str) -> None:
        with self._lock:
            named = self._changed.setdefault(bundle, [])
            if len(named) < _NAMED and what not in named:
                named.append(what)

    def _follow(
        self,
        info: ResourceInfo,
        selector: str,
        on_event: Callable[[str, dict[str, Any], bool], None],
        *,
        metadata_only: bool,
        kube: Kube | None = None,
        namespace: str = "",
    ) -> None:
        """List, then watch from the list's version until stopped; ``on_event(type, obj,
        replay)`` sees every object (replay: from a list, not a live event)."""
        kube = kube or self.kube
        version = ""
        seen: dict[str, dict[str, Any]] = {}
        failures = 0
        while not self._stop.is_set():
            try:
                if not version:
                    items, version = list_everywhere(
                        kube,
                        info,
                        label_selector=selector,
                        metadata_only=metadata_only,
                        namespace=namespace,
                    )
                    listed = {item["metadata"]["uid"]: item for item in items}
                    # After a break: what went while nobody watched is a deletion.
                    for uid, gone in seen.items():
                        if uid not in listed:
                            on_event("DELETED", gone, False)
                    for item in items:
                        on_event("ADDED", item, True)
                    seen = listed
                for kind, obj in watch_everywhere(
                    kube,
                    info,
                    resource_version=version,
                    label_selector=selector,
                    timeout_seconds=_WATCH_SECONDS,
                    metadata_only=metadata_only,
                    namespace=namespace,
                ):
                    meta = obj.get("metadata") or {}
                    version = str(meta.get("resourceVersion") or version)
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        seen.pop(meta.get("uid", ""), None)
                    else:
                        seen[meta.get("uid", "")] = obj
                    on_event(kind, obj, False)
                    failures = 0
                    if self._stop.is_set():
                        return
            except GoneError:
                version = ""
            except (FlotillaError, ValueError) as err:
                # A cluster away (or a watch it forbids) is tried again ever less often.
                wait = min(_RETRY_SECONDS * 2**failures, _MAX_RETRY_SECONDS)
                failures = min(failures + 1, 8)
                # An account's refusal in short: the verb, resource and account say it all.
                reason = rbac_denial(str(err)) or err
                self.log(f"watch of {info.kind} broke ({reason}); again in {wait:.0f}s")
                self._stop.wait(wait)

    # -- release records -------------------------------------------------------------------

    def _watch_records(self) -> None:
        self._follow(_RECORDS, "owner=helm", self._on_record, metadata_only=True)

    def _on_record(self, kind: str, obj: dict[str, Any], replay: bool) -> None:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        bundle = labels.get(BUNDLE_LABEL)
        if not bundle or "name" not in labels:
            return  # not a release flotilla made (or made before records named bundles)
        release = (str(meta.get("namespace", "")), str(labels["name"]))
        status = labels.get("status", "")
        if kind == "DELETED":
            if status not in _PRUNED:
                record = f"{release[0]}/{meta.get('name', '')}"
                self._note(bundle, f"Helm record {record} ({status}) deleted")
            return
        with self._lock:
            self._bundles[release] = bundle
            known = self._revisions.get(release)
        version = str(labels.get("version", ""))
        if status != "deployed" or known == version:
            return
        try:
            manifest = read_release_manifest(self.kube, release[1], release[0], int(version))
            objects = parse_manifests(manifest, file=f"release {release[1]}")
        except (FlotillaError, ValueError) as err:
            self.log(f"release {release[0]}/{release[1]} v{version} not read: {err}")
            return
        with self._lock:
            self._revisions[release] = version
        account = labels.get(SERVICE_ACCOUNT_LABEL, "")
        user = service_account_user(release[0], account) if account else ""
        for desired in objects:
            key: tuple[str, ...] = (
                str(desired.get("apiVersion", "")),
                str(desired.get("kind", "")),
            )
            if not (key[0] and key[1]):
                continue
            if user and self.act_as is not None:
                namespace = (desired.get("metadata") or {}).get("namespace") or release[0]
                key = (*key, user, str(namespace))
            self._spawn(key, functools.partial(self._watch_kind, *key))

    # -- deployed objects ------------------------------------------------------------------

    def _watch_kind(self, api_version: str, kind: str, user: str = "", namespace: str = "") -> None:
        try:
            info = self.kube.resource_info(api_version, kind)
            kube = self.act_as(user) if user and self.act_as is not None else self.kube
        except FlotillaError as err:
            self.log(f"{kind} ({api_version}) not watched: {err}")
            return
        prints: dict[str, str] = {}

        def on_event(event: str, obj: dict[str, Any], replay: bool) -> None:
            meta = obj.get("metadata") or {}
            uid = str(meta.get("uid", ""))
            if event == "DELETED":
                prints.pop(uid, None)
                self._report(obj, "deleted")
                return
            digest = fingerprint(obj)
            before = prints.get(uid)
            prints[uid] = digest
            if before == digest or (before is None and replay):
                return  # status-only, or known already
            if not changed_by_flotilla(obj):
                self._report(obj, "changed" if before else "appeared")

        self._follow(
            info, _HELM_SELECTOR, on_event, metadata_only=False, kube=kube, namespace=namespace
        )

    def _report(self, obj: dict[str, Any], what: str) -> None:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        release = (
            str(annotations.get(RELEASE_NAMESPACE_ANNOTATION, "")),
            str(annotations.get(RELEASE_NAME_ANNOTATION, "")),
        )
        with self._lock:
            bundle = self._bundles.get(release)
        if bundle:
            self._note(bundle, f"{_describe(obj)} {what}")


class ObjectWatchActivities:
    """The watcher activity; signals go out through ``signal`` (the worker's client)."""

    def __init__(self, deploy: DeployActivities, signal: Signal) -> None:
        self.deploy = deploy
        self.signal = signal

    @activity.defn(name=WATCH_OBJECTS)
    async def watch_objects(self, request: WatchObjectsRequest) -> WatchObjectsResult:
        """Watch the cluster for ``run_seconds`` (heartbeating), signalling changed bundles."""
        where = f"{request.cluster_namespace}/{request.cluster_name}"
        redact = Redactor()
        try:
            kubeconfig = self.deploy.cluster_kubeconfig(
                request.cluster_namespace, request.cluster_name, redact
            )
        except FlotillaError as err:
            raise to_application_error(err, redact=redact) from None

        def log(message: str) -> None:
            activity.logger.info("object watch of cluster %s: %s", where, redact(message))

        # Clients of its own: each watch holds a connection for as long as it runs.
        kube = Kube.from_kubeconfig(kubeconfig)
        acting: dict[str, Kube] = {}
        acting_lock = threading.Lock()

        def act_as(user: str) -> Kube:
            with acting_lock:
                if user not in acting:
                    acting[user] = Kube.from_kubeconfig(impersonating(kubeconfig, user))
                return acting[user]

        watch = ClusterWatch(kube, log, act_as)
        watch.start()
        signals = 0
        deadline = time.monotonic() + request.run_seconds
        try:
            # A worker or agent that stops returns the watch early: its workflow schedules the
            # next one, which waits on the queue for whoever serves the cluster then.
            while time.monotonic() < deadline and not activity.is_worker_shutdown():
                await asyncio.sleep(request.debounce_seconds)
                activity.heartbeat(f"{signals} signals")
                for bundle, objects in sorted(watch.take_changes().items()):
                    workflow_id = bundle_workflow_id(request.cluster_namespace, bundle)
                    try:
                        await self.signal(
                            workflow_id,
                            ObjectsChanged(cluster=request.cluster_name, objects=objects),
                        )
                        signals += 1
                    except Exception as err:  # a bundle that is gone needs no news
                        log(f"bundle {bundle} not told: {type(err).__name__}")
        finally:
            watch.stop()
            kube.close()
            for client in acting.values():
                client.close()
        return WatchObjectsResult(signals=signals, kinds=watch.kinds())
