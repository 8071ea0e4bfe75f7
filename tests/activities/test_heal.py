"""The five ways Helm's record of a running release gets lost or stuck, each healed without
taking the workload down: the Deployment keeps its uid and never has fewer ready pods."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from activities.deploy_models import DeployResult, ReleaseRef
from flotilla.bundles import Bundle
from flotilla.helmhistory import HistoryAction
from tests.activities.conftest import UNSCHEDULABLE, Engine, configmap, deployment, dump
from tests.activities.test_history import RELEASE, record_stuck_revision, stop_when


class Sampler:
    """Reads the Deployment every 100 ms while a recovery runs: its uids and ready counts."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.uids: set[str] = set()
        self.ready: list[int] = []
        self.missing = 0
        self._stop = threading.Event()

    def run(self) -> None:
        with self.engine.kube() as kube:
            while not self._stop.wait(0.1):
                live = kube.get("apps/v1", "Deployment", self.engine.namespace, self.name)
                if live is None:
                    self.missing += 1
                    continue
                self.uids.add(live["metadata"]["uid"])
                self.ready.append(int((live.get("status") or {}).get("readyReplicas") or 0))

    @contextmanager
    def sampling(self) -> Iterator[Sampler]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=10)


def app(engine: Engine, data: str) -> Bundle:
    return engine.bundle(
        {"app.yaml": dump(deployment("web"), configmap("cfg", {"a": data}))},
    )


def secret_names(engine: Engine) -> list[str]:
    with engine.kube() as kube:
        items = kube.list_metadata(
            "v1", "Secret", engine.namespace, label_selector=f"owner=helm,name={RELEASE}"
        )
    return sorted(item["metadata"]["name"] for item in items)


def delete_records(engine: Engine, revisions: list[int]) -> None:
    with engine.kube() as kube:
        for revision in revisions:
            name = f"sh.helm.release.v1.{RELEASE}.v{revision}"
            assert kube.delete("v1", "Secret", engine.namespace, name)


def older_deleted(engine: Engine) -> None:
    delete_records(engine, [1])


def all_deleted(engine: Engine) -> None:
    delete_records(engine, [1, 2])


def deployed_deleted(engine: Engine) -> None:
    delete_records(engine, [2])


def newest_pending_upgrade(engine: Engine) -> None:
    record_stuck_revision(engine, 2, 3, "pending-upgrade")


def helm_killed_mid_upgrade(engine: Engine) -> None:
    stuck = deployment("web", pod=UNSCHEDULABLE)
    chart = engine.chart_dir(RELEASE, [stuck, configmap("cfg", {"a": "stuck"})], "9.9.9")
    proc = engine.helm_popen(
        "upgrade", RELEASE, str(chart), "-n", engine.namespace, "--wait", "--timeout", "120s"
    )
    stop_when(engine, proc, 3, "pending-upgrade")


TRAPS: dict[str, tuple[Callable[[Engine], None], HistoryAction, str]] = {
    "older-records-deleted": (older_deleted, HistoryAction.UPGRADE, "upgrading from revision 2"),
    "all-records-deleted": (
        all_deleted,
        HistoryAction.ADOPT,
        "Helm's record of revision 2 is gone; recreating the release and adopting",
    ),
    "deployed-record-deleted": (
        deployed_deleted,
        HistoryAction.ADOPT,
        "revision 1 is superseded and none is deployed; recreating the release and adopting",
    ),
    "newest-pending-upgrade": (
        newest_pending_upgrade,
        HistoryAction.ROLLBACK_THEN_UPGRADE,
        "revision 3 is pending-upgrade (stuck); rolling back to deployed revision 2",
    ),
    "helm-killed-mid-upgrade": (
        helm_killed_mid_upgrade,
        HistoryAction.ROLLBACK_THEN_UPGRADE,
        "revision 3 is pending-upgrade (stuck); rolling back to deployed revision 2",
    ),
}


@pytest.mark.parametrize("trap", sorted(TRAPS))
def test_lost_or_stuck_record_heals_without_downtime(engine: Engine, trap: str) -> None:
    make_trap, action, reason = TRAPS[trap]
    engine.deploy(app(engine, "1"), "v1", wait_ready_seconds=60)
    second = engine.deploy(app(engine, "2"), "v2", wait_ready_seconds=60)
    assert second.status is not None and second.status.ready
    before = engine.get("Deployment", "web")
    assert before is not None
    ready_before = before["status"]["readyReplicas"]
    make_trap(engine)

    with Sampler(engine, "web").sampling() as sampler:
        result: DeployResult = engine.deploy(
            app(engine, "3"),
            "v3",
            previous=ReleaseRef(name=RELEASE, namespace=engine.namespace, revision=2),
            wait_ready_seconds=60,
        )

    assert result.action is action, result.reason
    assert reason in result.reason
    assert result.status is not None and result.status.ready
    after = engine.get("Deployment", "web")
    assert after is not None
    assert sampler.uids == {before["metadata"]["uid"]} == {after["metadata"]["uid"]}
    assert sampler.missing == 0 and sampler.ready and min(sampler.ready) >= ready_before
    cfg = engine.get("ConfigMap", "cfg")
    assert cfg is not None and cfg["data"] == {"a": "3"}
    assert engine.history(RELEASE)[-1]["status"] == "deployed"
    assert engine.deploy(app(engine, "3"), "v3").action is HistoryAction.ALREADY_DEPLOYED
