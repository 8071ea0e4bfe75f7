"""Helm history traps made for real on the cluster, and recovered by the next deploy."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import threading
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError, CancelledError

from activities.deploy_models import DeployRequest, ReleaseRef
from flotilla.helmhistory import HistoryAction
from tests.activities.conftest import (
    CLUSTER_NAMESPACE,
    UNSCHEDULABLE,
    Engine,
    configmap,
    deployment,
    dump,
)

RELEASE = "t-app"


def stop_when(engine: Engine, proc: subprocess.Popen[bytes], revision: int, status: str) -> None:
    """Kill helm (as a crash would) once it has recorded ``revision`` as ``status``."""

    def recorded() -> bool:
        secret = engine.get("Secret", f"sh.helm.release.v1.{RELEASE}.v{revision}")
        return secret is not None and secret["metadata"]["labels"].get("status") == status

    try:
        engine.wait_for(f"revision {revision} {status}", recorded)
    finally:
        proc.kill()
        proc.wait()
    assert engine.history(RELEASE)[-1]["status"] == status


def never_ready_chart(engine: Engine) -> str:
    return str(engine.chart_dir(RELEASE, [deployment("web", pod=UNSCHEDULABLE)], "9.9.9"))


def stuck_upgrade(engine: Engine, *flags: str) -> None:
    """Revision 2: an upgrade to a never-Ready chart whose helm died waiting (pending)."""
    proc = engine.helm_popen(
        "upgrade",
        RELEASE,
        never_ready_chart(engine),
        "-n",
        engine.namespace,
        *flags,
        "--wait",
        "--timeout",
        "120s",
    )
    stop_when(engine, proc, 2, "pending-upgrade")


def statuses(engine: Engine) -> list[str]:
    return [entry["status"] for entry in engine.history(RELEASE)]


def test_stuck_pending_install_is_adopted_and_its_leftovers_deleted(engine: Engine) -> None:
    proc = engine.helm_popen(
        "install",
        RELEASE,
        never_ready_chart(engine),
        "-n",
        engine.namespace,
        "--wait",
        "--timeout",
        "120s",
    )
    stop_when(engine, proc, 1, "pending-install")
    bundle = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})

    result = engine.deploy(bundle, "v1")

    assert result.action is HistoryAction.ADOPT and result.recovered
    assert "revision 1 is pending-install" in result.reason
    assert statuses(engine) == ["deployed"]
    assert engine.get("Deployment", "web") is None


def test_stuck_pending_upgrade_is_rolled_back_then_upgraded(engine: Engine) -> None:
    bundle = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})
    engine.deploy(bundle, "v1")
    stuck_upgrade(engine)

    result = engine.deploy(bundle, "v2")

    assert result.action is HistoryAction.ROLLBACK_THEN_UPGRADE and result.recovered
    assert (
        "revision 2 is pending-upgrade (stuck); rolling back to deployed revision 1"
        in result.reason
    )
    assert result.release.revision == 4
    # Whether helm died before or after applying decides how the rollback went (see
    # test_operation_that_died_before_applying_anything_is_recovered); either way:
    assert statuses(engine)[-1] == "deployed"
    assert not [status for status in statuses(engine) if status.startswith("pending")]
    assert engine.deploy(bundle, "v2").action is HistoryAction.ALREADY_DEPLOYED


def test_an_upgrade_to_the_same_version_left_pending_is_continued_as_its_revision(
    engine: Engine,
) -> None:
    # A worker killed together with its helm: helm had recorded the upgrade to "v2" (with
    # flotilla's deployment-id label) and was waiting for readiness when it died.
    bundle = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})
    engine.deploy(bundle, "v1")
    stuck_upgrade(engine, "--labels", "flotilla.dev/deployment-id=v2")

    result = engine.deploy(bundle, "v2")

    assert result.action is HistoryAction.CONTINUE_PENDING and result.recovered
    assert result.reason.startswith(
        "revision 2 is pending-upgrade (left by a helm that stopped); upgrading again as "
        "revision 2 over deployed revision 1"
    )
    # No extra revisions: the upgrade took the stuck one's number.
    assert result.release.revision == 2
    assert statuses(engine) == ["superseded", "deployed"]
    assert engine.get("ConfigMap", "cfg") is not None
    # What the stopped helm applied beyond the new version (here a Deployment; in a real
    # crash the same content) is not left behind.
    assert engine.get("Deployment", "web") is None
    assert engine.deploy(bundle, "v2").action is HistoryAction.ALREADY_DEPLOYED


def test_stuck_pending_rollback_is_rolled_back_then_upgraded(engine: Engine) -> None:
    never_ready = engine.bundle({"web.yaml": dump(deployment("web", pod=UNSCHEDULABLE))})
    engine.deploy(never_ready, "v1")
    good = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})
    engine.deploy(good, "v2")
    proc = engine.helm_popen(
        "rollback", RELEASE, "1", "-n", engine.namespace, "--wait", "--timeout", "120s"
    )
    stop_when(engine, proc, 3, "pending-rollback")

    result = engine.deploy(good, "v3")

    assert result.action is HistoryAction.ROLLBACK_THEN_UPGRADE and result.recovered
    assert (
        "revision 3 is pending-rollback (stuck); rolling back to deployed revision 2"
        in result.reason
    )
    assert statuses(engine)[-1] == "deployed"
    assert "pending-rollback" not in statuses(engine)
    assert engine.get("ConfigMap", "cfg") is not None


def test_pruned_recorded_revision_is_not_a_dead_end(engine: Engine) -> None:
    bundle = engine.bundle(
        {"cfg.yaml": dump(configmap("cfg", {"a": "1"}))}, fleet={"helm": {"maxHistory": 1}}
    )
    for version in ("v1", "v2", "v3"):
        engine.deploy(bundle, version)
    # Helm keeps the deployed revision it upgrades from beyond maxHistory.
    assert [entry["revision"] for entry in engine.history(RELEASE)] == [2, 3]

    result = engine.deploy(
        bundle, "v4", previous=ReleaseRef(name=RELEASE, namespace=engine.namespace, revision=1)
    )

    assert result.action is HistoryAction.UPGRADE
    assert "recorded revision 1 is no longer in the history" in result.reason
    assert result.release.revision == 4
    assert [entry["revision"] for entry in engine.history(RELEASE)] == [3, 4]


def test_failed_last_revision_is_upgraded_over(engine: Engine) -> None:
    good = engine.bundle({"web.yaml": dump(deployment("web"))})
    engine.deploy(good, "v1")
    moved = deployment("web")
    moved["spec"]["selector"] = {"matchLabels": {"app": "moved"}}
    moved["spec"]["template"]["metadata"]["labels"] = {"app": "moved"}
    broken = engine.bundle({"web.yaml": dump(moved)})

    with pytest.raises(ApplicationError) as failed:
        engine.deploy(broken, "v2")

    # The API server's own reason, shortened to one line; a resend would fail the same way.
    assert failed.value.non_retryable and failed.value.type == "InvalidManifest"
    assert "field is immutable" in failed.value.message and "\n" not in failed.value.message
    assert statuses(engine) == ["deployed", "failed"]

    result = engine.deploy(good, "v3")

    assert result.action is HistoryAction.UPGRADE
    assert result.reason == "revision 2 is failed; upgrading over deployed revision 1"
    assert result.release.revision == 3 and statuses(engine)[-1] == "deployed"


def helm_processes_under(path: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "helm" in cmdline and str(path) in cmdline:
            found.append(int(proc.name))
    return found


def test_cancelled_deploy_kills_helm_and_the_next_deploy_recovers(engine: Engine) -> None:
    stuck = engine.bundle(
        {"web.yaml": dump(deployment("web", pod=UNSCHEDULABLE))},
        fleet={"helm": {"timeoutSeconds": 120}},
    )
    request = DeployRequest(
        gitrepo="t",
        bundle_name=stuck.name,
        cluster_namespace=CLUSTER_NAMESPACE,
        cluster_name=engine.cluster_name,
        deployment_id="v1",
        bundle_digest=engine.content.put_bundle(stuck),
        options_digest=engine.options_digest(stuck),
    )
    env = engine.env()
    outcome: list[BaseException] = []

    def deploy() -> None:
        try:
            env.run(engine.activities.deploy_bundle, request)
        except BaseException as err:
            outcome.append(err)

    thread = threading.Thread(target=deploy)
    thread.start()
    # The first heartbeat comes from inside the helm wait.
    engine.wait_for("a heartbeat while helm waits", lambda: bool(engine.heartbeats), timeout=60)
    env.cancel()
    thread.join(timeout=30)

    assert not thread.is_alive() and isinstance(outcome[0], CancelledError)
    assert helm_processes_under(engine.root / "work") == []
    assert statuses(engine) == ["pending-install"]
    good = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})
    assert engine.deploy(good, "v2").action is HistoryAction.ADOPT
    assert statuses(engine) == ["deployed"]


def record_stuck_revision(engine: Engine, source: int, revision: int, status: str) -> None:
    """Write Helm's record of ``revision`` as a stuck copy of ``source``, touching no object:
    the state helm leaves when it dies right after recording an operation's start."""
    secret = engine.get("Secret", f"sh.helm.release.v1.{RELEASE}.v{source}")
    assert secret is not None
    raw = base64.b64decode(base64.b64decode(secret["data"]["release"]))
    record = json.loads(gzip.decompress(raw))
    record["version"] = revision
    record["info"]["status"] = status
    encoded = base64.b64encode(gzip.compress(json.dumps(record).encode())).decode()
    labels = {**secret["metadata"]["labels"], "status": status, "version": str(revision)}
    engine.cluster.request(
        "POST",
        f"/api/v1/namespaces/{engine.namespace}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "helm.sh/release.v1",
            "metadata": {"name": f"sh.helm.release.v1.{RELEASE}.v{revision}", "labels": labels},
            "data": {"release": base64.b64encode(encoded.encode()).decode()},
        },
    )


@pytest.mark.parametrize("stuck", ["pending-rollback", "pending-upgrade"])
def test_operation_that_died_before_applying_anything_is_recovered(
    engine: Engine, stuck: str
) -> None:
    # Helm 3 could not roll back from such a record (objects of revision 2 are live but
    # absent from the stuck revision's manifest) and the deploy got past it by upgrading from
    # the deployed revision; Helm 4 rolls back with its three-way merge.
    engine.deploy(engine.bundle({"web.yaml": dump(deployment("web", pod=UNSCHEDULABLE))}), "v1")
    good = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})
    engine.deploy(good, "v2")
    record_stuck_revision(engine, 1, 3, stuck)
    assert statuses(engine)[-2:] == ["deployed", stuck]

    result = engine.deploy(good, "v3")

    assert result.recovered and result.action is HistoryAction.ROLLBACK_THEN_UPGRADE
    assert result.reason == (
        f"revision 3 is {stuck} (stuck); rolling back to deployed revision 2, then upgrading"
    )
    assert result.release.revision == 5  # 4 is the rollback
    assert statuses(engine)[-1] == "deployed"
    assert stuck not in statuses(engine)
    assert engine.get("ConfigMap", "cfg") is not None
    assert engine.deploy(good, "v3").action is HistoryAction.ALREADY_DEPLOYED
