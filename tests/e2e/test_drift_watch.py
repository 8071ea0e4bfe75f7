"""Drift seen in seconds by the object watcher (the periodic check stays at 5 minutes), put
back by correctDrift within seconds; a deploy that restores objects clears Modified at once;
a lost Helm record is healed by adoption with no commit; deleting the GitRepo then leaves
nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from activities.kube import Kube
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from tests.e2e.harness import Flotilla, gitrepo_yaml, releases
from workflows.bundle_models import BundleStatus

# Generous bounds for a loaded test machine; bench/bench_drift.py measures exactly.
MODIFIED_WITHIN = 30.0
CORRECTED_WITHIN = 40.0
# A lost record is healed by a redeploy (helm adopts), slower than a correction under load.
HEALED_WITHIN = 60.0

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: registry.local/web:1}]}
"""
CM = """apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, labels: {tier: front}}
data: {color: COLOR}
"""
SVC = """apiVersion: v1
kind: Service
metadata: {name: svc}
spec: {selector: {app: web}, ports: [{port: 80}]}
"""


def files(target: str, color: str, fleet: str = "") -> dict[str, str | bytes]:
    return {
        "app/fleet.yaml": f"namespace: {target}\n{fleet}",
        "app/web.yaml": DEPLOY,
        "app/cm.yaml": CM.replace("COLOR", color),
        "app/svc.yaml": SVC,
    }


class Objects:
    """The bundle's objects on the cluster, read and changed as someone else would."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.ns = namespace

    async def get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return self.kube.get(api_version, kind, self.ns, name)

    def patch(self, api_version: str, kind: str, name: str, patch: dict[str, Any]) -> None:
        self.kube.merge_patch(api_version, kind, self.ns, name, patch)

    def patch_as(
        self, manager: str, kind: str, plural: str, name: str, patch: dict[str, Any]
    ) -> None:
        """A server-side apply by another controller (its own field manager, not flotilla's)."""
        body = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, **patch}}
        self.kube.request(
            "PATCH",
            f"/api/v1/namespaces/{self.ns}/{plural}/{name}",
            what=f"{kind} {name}",
            body=body,
            query=[("fieldManager", manager), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )

    def delete_records(self) -> None:
        for item in self.kube.list_metadata("v1", "Secret", self.ns, label_selector="owner=helm"):
            self.kube.delete("v1", "Secret", self.ns, item["metadata"]["name"])

    async def uid(self) -> str:
        live = await self.get("apps/v1", "Deployment", "web")
        assert live is not None
        return str(live["metadata"]["uid"])

    async def restored(self) -> bool:
        cfg = await self.get("v1", "ConfigMap", "cfg")
        svc = await self.get("v1", "Service", "svc")
        web = await self.get("apps/v1", "Deployment", "web")
        return bool(
            cfg
            and svc
            and web
            and web["spec"]["replicas"] == 2
            and cfg["data"] == {"color": "green"}
            and cfg["metadata"]["labels"].get("tier") == "front"
        )


def drifts(objects: Objects) -> list[tuple[Callable[[], object], str]]:
    """A scale, an edit, a label change by another controller and a deletion, each with what
    the Modified message then names."""
    return [
        (
            lambda: objects.patch("apps/v1", "Deployment", "web", {"spec": {"replicas": 3}}),
            "/spec/replicas",
        ),
        (
            lambda: objects.patch("v1", "ConfigMap", "cfg", {"data": {"color": "red"}}),
            "/data/color",
        ),
        (
            lambda: objects.patch_as(
                "other-controller", "ConfigMap", "configmaps", "cfg", {"labels": {"tier": "back"}}
            ),
            "/metadata/labels/tier",
        ),
        (lambda: objects.kube.delete("v1", "Service", objects.ns, "svc"), "svc: missing"),
    ]


@contextlib.asynccontextmanager
async def deployed(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    name: str,
    color: str,
    fleet: str = "",
) -> AsyncIterator[Objects]:
    """GitRepo ``name`` deploying the app to cluster ``one``, Ready; its objects."""
    ns = flotilla.namespace
    target = f"t{uuid.uuid4().hex[:6]}-{name}"
    url = git_daemon.create_repo(repo_name, files(target, color, fleet))
    kube = Kube.from_kubeconfig(local_cluster.kubeconfig.read_text())
    try:
        await flotilla.control.add_cluster(ns, "one", local_cluster.kubeconfig.read_text())
        await flotilla.worker.refresh_clusters()
        await flotilla.control.apply_text(
            gitrepo_yaml(ns, name, url, targets=[{"clusterName": "one"}]), file="g.yaml"
        )
        await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, f"{name}-app"),
            lambda s: s.state == "Ready" and s.desired == 1,
        )
        yield Objects(kube, target)
    finally:
        with contextlib.suppress(Exception):
            kube.delete("v1", "Namespace", "", target)
        kube.close()


async def test_drift_is_seen_in_seconds_a_commit_clears_it_and_a_lost_record_heals(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    ns = flotilla.namespace

    def status() -> Awaitable[BundleStatus]:
        return flotilla.control.bundle_status(ns, "watch-app")

    async with deployed(flotilla, local_cluster, git_daemon, repo_name, "watch", "blue") as objects:
        uid = await objects.uid()
        await asyncio.sleep(3)  # the watcher has seen the deploy

        # Each change shows in the Modified message within seconds, not at the 5-minute
        # periodic check.
        for change, shown in drifts(objects):
            edited = time.monotonic()
            change()
            await flotilla.eventually(
                status,
                lambda s, shown=shown: s.state == "Modified" and shown in s.clusters[0].message,
                timeout=MODIFIED_WITHIN,
            )
            print(f"{shown}: Modified after {time.monotonic() - edited:.1f}s")
            assert time.monotonic() - edited < MODIFIED_WITHIN

        # A commit while Modified restores the objects and shows Ready in the same step.
        work = git_daemon.working_copy(repo_name)
        git_daemon.commit(work, files(objects.ns, "green"), message="green")
        await flotilla.eventually(objects.restored, lambda ok: ok)
        restored = time.monotonic()
        await flotilla.eventually(status, lambda s: s.state == "Ready", timeout=15)
        assert time.monotonic() - restored < 15
        assert await objects.uid() == uid

        # Every Helm record deleted, no commit: healed by adoption, the same Deployment.
        deleted = time.monotonic()
        objects.delete_records()
        await flotilla.eventually(
            lambda: asyncio.to_thread(releases, local_cluster.kubeconfig, objects.ns),
            lambda found: found == ["watch-app"],
            timeout=HEALED_WITHIN,
        )
        print(f"lost record: released again after {time.monotonic() - deleted:.1f}s")
        assert time.monotonic() - deleted < HEALED_WITHIN
        healed = await flotilla.eventually(
            status, lambda s: s.state == "Ready" and "adopt" in s.clusters[0].last_action
        )
        assert "(recovered)" in healed.clusters[0].last_action
        assert await objects.uid() == uid

        # The record gone again, then the GitRepo deleted: nothing is left behind.
        await flotilla.control.pause_bundle(ns, "watch-app", paused=True)
        objects.delete_records()
        await flotilla.control.delete_gitrepo(ns, "watch")
        assert await objects.get("v1", "ConfigMap", "cfg") is None
        assert await objects.get("v1", "Service", "svc") is None
        left = await objects.get("apps/v1", "Deployment", "web")
        assert left is None or "deletionTimestamp" in left["metadata"]


async def test_correct_drift_puts_back_each_change_within_seconds(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    fleet = "correctDrift: {enabled: true}\n"
    async with deployed(
        flotilla, local_cluster, git_daemon, repo_name, "fix", "green", fleet
    ) as objects:
        uid = await objects.uid()
        await asyncio.sleep(3)  # the watcher has seen the deploy
        # Each waits out the back-off of corrections in a row (10 s, 20 s, 40 s) before the next.
        for (change, shown), backoff in zip(drifts(objects), (10, 20, 40, 0), strict=True):
            edited = time.monotonic()
            change()
            await asyncio.sleep(0.2)
            await flotilla.eventually(objects.restored, lambda ok: ok, timeout=CORRECTED_WITHIN)
            print(f"{shown}: corrected after {time.monotonic() - edited:.1f}s")
            assert time.monotonic() - edited < CORRECTED_WITHIN
            await asyncio.sleep(backoff + 2 if backoff else 0)
        assert await objects.uid() == uid


async def test_sync_redeploys_a_lost_record_without_the_watch(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    """The backstop path: no object watcher (as with ``--no-object-watch``), every Helm record
    deleted, then ``flotilla sync gitrepo`` re-checks the deployment and adopts the live
    objects at once instead of answering "synced" and waiting for the periodic check."""
    ns = flotilla.namespace
    flotilla.config.watch_objects = False
    async with deployed(flotilla, local_cluster, git_daemon, repo_name, "sync", "blue") as objects:
        uid = await objects.uid()
        objects.delete_records()
        await asyncio.sleep(3)
        # Nothing watches: the release stays lost until someone asks.
        assert releases(local_cluster.kubeconfig, objects.ns) == []
        synced = time.monotonic()
        assert "synced" in await flotilla.control.sync_gitrepo(ns, "sync")
        status = await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "sync-app"),
            lambda s: s.state == "Ready" and "adopt" in s.clusters[0].last_action,
            timeout=HEALED_WITHIN,
        )
        assert time.monotonic() - synced < HEALED_WITHIN
        assert "(recovered)" in status.clusters[0].last_action
        assert releases(local_cluster.kubeconfig, objects.ns) == ["sync-app"]
        assert await objects.uid() == uid
