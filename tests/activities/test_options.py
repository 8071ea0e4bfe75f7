"""fleet.yaml helm switches reach helm: flags as such, then each behaviour on the real cluster."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.helm import UpgradeFlags
from tests.activities.conftest import UNSCHEDULABLE, Engine, configmap, deployment, dump
from tests.activities.test_deploy import CHART_FILES

STRICT_SCHEMA = '{"type": "object", "properties": {"replicas": {"type": "integer", "minimum": 1}}}'


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            UpgradeFlags(),
            ["--history-max", "2", "--server-side=true", "--force-conflicts", "--enable-dns"],
        ),
        (
            UpgradeFlags(timeout_seconds=30, wait_for_jobs=True, enable_dns=False),
            [
                "--history-max",
                "2",
                "--server-side=true",
                "--force-conflicts",
                "--timeout",
                "30s",
                "--wait=watcher",
                "--wait-for-jobs",
            ],
        ),
        # Without a timeout helm does not wait (as in Fleet), so waitForJobs has no effect.
        (
            UpgradeFlags(wait_for_jobs=True, enable_dns=False, server_side=False),
            ["--history-max", "2", "--server-side=false"],
        ),
        (
            UpgradeFlags(
                max_history=5,
                atomic=True,
                force=True,
                take_ownership=True,
                skip_schema_validation=True,
                enable_dns=False,
            ),
            [
                "--history-max",
                "5",
                "--server-side=false",
                "--rollback-on-failure",
                "--force-replace",
                "--take-ownership",
                "--skip-schema-validation",
            ],
        ),
    ],
)
def test_switches_become_helm_flags(flags: UpgradeFlags, expected: list[str]) -> None:
    assert flags.args() == expected


def test_timeout_makes_the_deploy_wait_for_readiness(engine: Engine) -> None:
    bundle = engine.bundle(
        {"web.yaml": dump(deployment("web"))}, fleet={"helm": {"timeoutSeconds": 60}}
    )

    engine.deploy(bundle, "v1")

    live = engine.get("Deployment", "web")
    assert live is not None and live["status"].get("readyReplicas") == 2


def test_atomic_rolls_back_a_release_that_does_not_become_ready(engine: Engine) -> None:
    good = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})
    engine.deploy(good, "v1")
    stuck = engine.bundle(
        {"web.yaml": dump(deployment("web", pod=UNSCHEDULABLE))},
        fleet={"helm": {"atomic": True, "timeoutSeconds": 3}},
    )

    with pytest.raises(ApplicationError) as failed:
        engine.deploy(stuck, "v2")

    assert failed.value.type == "WaitTimeout" and failed.value.non_retryable
    assert "rolled back" in failed.value.message
    statuses = [entry["status"] for entry in engine.history("t-app")]
    assert statuses[-1] == "deployed" and "failed" in statuses
    assert engine.get("Deployment", "web") is None
    assert engine.get("ConfigMap", "cfg") is not None


def test_take_ownership_adopts_objects_helm_did_not_create(engine: Engine) -> None:
    engine.cluster.request(
        "POST", f"/api/v1/namespaces/{engine.namespace}/configmaps", configmap("cfg", {"a": "0"})
    )
    files = {"cfg.yaml": dump(configmap("cfg", {"a": "1"}))}

    with pytest.raises(ApplicationError) as refused:
        engine.deploy(engine.bundle(files), "v1")
    adopted = engine.deploy(engine.bundle(files, fleet={"helm": {"takeOwnership": True}}), "v2")

    assert refused.value.non_retryable and "invalid ownership metadata" in refused.value.message
    assert adopted.changed
    live = engine.get("ConfigMap", "cfg")
    assert live is not None and live["data"] == {"a": "1"}


def test_skip_schema_validation_lets_values_past_the_charts_schema(engine: Engine) -> None:
    files = {**CHART_FILES, "values.schema.json": STRICT_SCHEMA}
    values = {"replicas": 0}

    with pytest.raises(ApplicationError) as refused:
        engine.deploy(engine.bundle(files, fleet={"helm": {"values": values}}), "v1")
    skipped = engine.bundle(files, fleet={"helm": {"values": values, "skipSchemaValidation": True}})
    engine.deploy(skipped, "v2")

    assert refused.value.non_retryable and "schema" in refused.value.message
    live = engine.get("Deployment", "t-app-web")
    assert live is not None and live["spec"]["replicas"] == 0


def test_wait_for_jobs_returns_once_the_job_has_completed(engine: Engine) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "migrate", "image": "registry.local/migrate:1"}],
                }
            }
        },
    }
    bundle = engine.bundle(
        {"job.yaml": dump(job)}, fleet={"helm": {"timeoutSeconds": 60, "waitForJobs": True}}
    )

    engine.deploy(bundle, "v1")

    with engine.kube() as kube:
        live = kube.get("batch/v1", "Job", engine.namespace, "migrate")
    assert live is not None and live["status"].get("succeeded") == 1
