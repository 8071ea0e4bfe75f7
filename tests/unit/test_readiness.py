"""Readiness rules per kind, ignore.conditions, and the non-ready summary."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla.readiness import (
    _READY_WHEN_PRESENT,
    IgnoreCondition,
    Readiness,
    assess,
    ready_when_present,
    summarize_not_ready,
)


def deployment(
    replicas: int | None = 3, generation: int = 2, total: int | None = None, **status: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {} if replicas is None else {"replicas": replicas}
    want = 1 if replicas is None else replicas
    full = {
        "observedGeneration": 2,
        "replicas": want if total is None else total,
        "updatedReplicas": want,
        "availableReplicas": want,
        "readyReplicas": want,
    }
    full.update(status)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "app", "generation": generation},
        "spec": spec,
        "status": {k: v for k, v in full.items() if v is not None},
    }


@pytest.mark.parametrize(
    ("obj", "ready", "fragment"),
    [
        (deployment(), True, ""),
        (deployment(replicas=None), True, ""),
        (deployment(replicas=0), True, ""),
        (deployment(generation=3), False, "observed generation 2 of 3"),
        (deployment(observedGeneration=None), False, "not observed"),
        (deployment(updatedReplicas=2), False, "updated replicas 2 of 3"),
        (deployment(availableReplicas=1), False, "available replicas 1 of 3"),
        (deployment(readyReplicas=None), False, "ready replicas 0 of 3"),
        (
            deployment(
                replicas=4, total=3, updatedReplicas=3, availableReplicas=3, readyReplicas=3
            ),
            False,
            "updated replicas 3 of 4",
        ),
        (deployment(total=4), False, "1 old replicas pending termination"),
    ],
)
def test_deployment_rules(obj: dict[str, Any], ready: bool, fragment: str) -> None:
    result = assess(obj)
    assert result.ready is ready
    assert fragment in result.message


def test_deployment_progress_deadline_exceeded_is_not_ready_with_its_message() -> None:
    obj = deployment(
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "web-5d" has timed out progressing.',
            }
        ]
    )
    result = assess(obj)
    assert not result.ready
    assert result.message == (
        'ProgressDeadlineExceeded: ReplicaSet "web-5d" has timed out progressing.'
    )


def statefulset(strategy: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    full = {
        "observedGeneration": 1,
        "replicas": 2,
        "readyReplicas": 2,
        "updatedReplicas": 2,
        "currentRevision": "db-1",
        "updateRevision": "db-1",
    }
    full.update(status)
    spec: dict[str, Any] = {"replicas": 2}
    if strategy is not None:
        spec["updateStrategy"] = strategy
    return {
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "app", "generation": 1},
        "spec": spec,
        "status": full,
    }


@pytest.mark.parametrize(
    ("obj", "ready", "fragment"),
    [
        (statefulset(), True, ""),
        (statefulset(readyReplicas=1), False, "ready replicas 1 of 2"),
        (statefulset(observedGeneration=0), False, "observed generation 0 of 1"),
        (statefulset(updatedReplicas=1), False, "updated replicas 1 of 2"),
        (statefulset(updateRevision="db-2"), False, "db-2 is still rolling out"),
        (statefulset({"type": "OnDelete"}, updateRevision="db-2", updatedReplicas=0), True, ""),
        (
            statefulset(
                {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
                updateRevision="db-2",
                updatedReplicas=1,
            ),
            True,
            "",
        ),
    ],
)
def test_statefulset_rules(obj: dict[str, Any], ready: bool, fragment: str) -> None:
    result = assess(obj)
    assert result.ready is ready
    assert fragment in result.message


def daemonset(**status: Any) -> dict[str, Any]:
    full = {
        "observedGeneration": 4,
        "desiredNumberScheduled": 3,
        "numberReady": 3,
        "updatedNumberScheduled": 3,
        "numberAvailable": 3,
    }
    full.update(status)
    return {
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "kube-system", "generation": 4},
        "status": full,
    }


@pytest.mark.parametrize(
    ("obj", "ready", "fragment"),
    [
        (daemonset(), True, ""),
        (daemonset(numberReady=2), False, "ready pods 2 of 3"),
        (daemonset(updatedNumberScheduled=1), False, "updated pods 1 of 3"),
        (daemonset(numberAvailable=0), False, "available pods 0 of 3"),
        (daemonset(observedGeneration=3), False, "observed generation 3 of 4"),
        (
            daemonset(
                desiredNumberScheduled=0,
                numberReady=0,
                updatedNumberScheduled=0,
                numberAvailable=0,
            ),
            True,
            "",
        ),
    ],
)
def test_daemonset_rules(obj: dict[str, Any], ready: bool, fragment: str) -> None:
    result = assess(obj)
    assert result.ready is ready
    assert fragment in result.message


@pytest.mark.parametrize(
    ("status", "ready"),
    [
        ({"readyReplicas": 2, "availableReplicas": 2}, True),
        ({"readyReplicas": 1, "availableReplicas": 1}, False),
        ({"readyReplicas": 2}, False),
    ],
)
def test_replicaset_counts_ready_and_available(status: dict[str, Any], ready: bool) -> None:
    obj = {"kind": "ReplicaSet", "metadata": {"name": "rs"}, "spec": {"replicas": 2}}
    obj["status"] = status
    assert assess(obj).ready is ready


def job(*conditions: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "Job",
        "metadata": {"name": "migrate", "namespace": "app"},
        "status": {"conditions": list(conditions), "succeeded": 0},
    }


@pytest.mark.parametrize(
    ("obj", "ready", "message"),
    [
        (job({"type": "Complete", "status": "True"}), True, ""),
        (job(), False, "job running: 0 succeeded"),
        (
            job({"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}),
            False,
            "job failed: BackoffLimitExceeded",
        ),
        (job({"type": "Complete", "status": "False"}), False, "job running: 0 succeeded"),
    ],
)
def test_job_rules(obj: dict[str, Any], ready: bool, message: str) -> None:
    assert assess(obj) == Readiness(ready=ready, message=message)


@pytest.mark.parametrize(
    ("conditions", "ready", "fragment"),
    [
        ([{"type": "Established", "status": "True"}], True, ""),
        ([], False, "not established"),
        (
            [{"type": "NamesAccepted", "status": "False", "message": "plural name taken"}],
            False,
            "NamesAccepted=False: plural name taken",
        ),
    ],
)
def test_crd_needs_established(
    conditions: list[dict[str, str]], ready: bool, fragment: str
) -> None:
    obj = {
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "status": {"conditions": conditions},
    }
    result = assess(obj)
    assert result.ready is ready
    assert fragment in result.message


@pytest.mark.parametrize(
    ("spec", "status", "ready"),
    [
        ({"type": "ClusterIP"}, {}, True),
        ({}, {}, True),
        ({"type": "NodePort"}, {}, True),
        ({"type": "LoadBalancer"}, {"loadBalancer": {}}, False),
        ({"type": "LoadBalancer"}, {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}]}}, True),
    ],
)
def test_service_needs_ingress_only_for_load_balancers(
    spec: dict[str, Any], status: dict[str, Any], ready: bool
) -> None:
    obj = {"kind": "Service", "metadata": {"name": "web"}, "spec": spec, "status": status}
    assert assess(obj).ready is ready


@pytest.mark.parametrize(
    ("kind", "phase", "ready"),
    [
        ("PersistentVolumeClaim", "Bound", True),
        ("PersistentVolumeClaim", "Pending", False),
        ("PersistentVolumeClaim", None, False),
        ("Namespace", "Active", True),
        ("Namespace", "Terminating", False),
    ],
)
def test_phase_kinds(kind: str, phase: str | None, ready: bool) -> None:
    obj: dict[str, Any] = {"kind": kind, "metadata": {"name": "x"}}
    if phase:
        obj["status"] = {"phase": phase}
    result = assess(obj)
    assert result.ready is ready
    assert ready or "phase is" in result.message


@pytest.mark.parametrize(
    ("status", "ready"),
    [
        ({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}, True),
        ({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}, False),
        ({"phase": "Succeeded"}, True),
        ({"phase": "Failed", "reason": "Evicted"}, False),
        ({"phase": "Pending"}, False),
    ],
)
def test_pod_rules(status: dict[str, Any], ready: bool) -> None:
    obj = {"kind": "Pod", "metadata": {"name": "p"}, "status": status}
    assert assess(obj).ready is ready


@pytest.mark.parametrize(
    ("obj", "ready", "fragment"),
    [
        ({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}, True, ""),
        ({"kind": "Secret", "metadata": {"name": "s"}}, True, ""),
        (
            {
                "kind": "Widget",
                "metadata": {"name": "w", "generation": 2},
                "status": {"observedGeneration": 1},
            },
            False,
            "observed generation 1 of 2",
        ),
        (
            {
                "kind": "Widget",
                "metadata": {"name": "w"},
                "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Boom"}]},
            },
            False,
            "Ready=False: Boom",
        ),
        (
            {
                "kind": "Widget",
                "metadata": {"name": "w"},
                "status": {"conditions": [{"type": "Available", "status": "False"}]},
            },
            False,
            "Available=False",
        ),
        (
            {
                "kind": "Widget",
                "metadata": {"name": "w"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            },
            True,
            "",
        ),
    ],
)
def test_generic_rule(obj: dict[str, Any], ready: bool, fragment: str) -> None:
    result = assess(obj)
    assert result.ready is ready
    assert fragment in result.message


@pytest.mark.parametrize(
    ("condition", "ready", "message"),
    [
        (
            {"type": "Stalled", "status": "True", "message": "bad spec"},
            False,
            "Stalled=True: bad spec",
        ),
        ({"type": "Stalled", "status": "False"}, True, ""),
        (
            {"type": "Reconciling", "status": "True", "reason": "Progressing"},
            False,
            "Reconciling=True: Progressing",
        ),
        ({"type": "Reconciling", "status": "False"}, True, ""),
    ],
)
def test_generic_rule_honours_kstatus_conditions(
    condition: dict[str, str], ready: bool, message: str
) -> None:
    obj = {"kind": "Widget", "metadata": {"name": "w"}, "status": {"conditions": [condition]}}
    assert assess(obj) == Readiness(ready=ready, message=message)


def test_an_object_being_deleted_is_not_ready() -> None:
    obj = {
        "kind": "ConfigMap",
        "metadata": {"name": "c", "deletionTimestamp": "2026-01-01T00:00:00Z"},
    }
    assert assess(obj) == Readiness(ready=False, message="object is being deleted")


WIDGET_NOT_READY = {
    "kind": "Widget",
    "metadata": {"name": "w"},
    "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Syncing"}]},
}


@pytest.mark.parametrize(
    ("ignore", "ready"),
    [
        ([IgnoreCondition({"type": "Ready", "status": "False"})], True),
        ([IgnoreCondition({"type": "Ready"})], True),
        ([IgnoreCondition({"type": "Ready", "status": "True"})], False),
        ([IgnoreCondition({"type": "Ready", "reason": "Other"})], False),
        ([IgnoreCondition({"type": "Available"})], False),
        ([], False),
        (None, False),
    ],
)
def test_ignore_conditions_drop_matching_conditions(
    ignore: list[IgnoreCondition] | None, ready: bool
) -> None:
    assert assess(WIDGET_NOT_READY, ignore).ready is ready


def test_ignore_conditions_parse_from_fleet_yaml_shape() -> None:
    entries = [IgnoreCondition.model_validate(e) for e in [{"type": "Ready", "status": "False"}]]
    assert assess(WIDGET_NOT_READY, entries).ready


def test_ignore_conditions_apply_to_job_failure() -> None:
    failed = job({"type": "Failed", "status": "True"}, {"type": "Complete", "status": "True"})
    assert not assess(failed).ready
    assert assess(failed, [IgnoreCondition({"type": "Failed"})]).ready


def test_summarize_lists_only_non_ready_sorted_with_scope() -> None:
    items = [
        ({"kind": "Service", "metadata": {"name": "b", "namespace": "app"}}, Readiness(ready=True)),
        (
            {"kind": "Deployment", "metadata": {"name": "web", "namespace": "app"}},
            Readiness(ready=False, message="ready replicas 0 of 1"),
        ),
        (
            {"kind": "CustomResourceDefinition", "metadata": {"name": "w.example.com"}},
            Readiness(ready=False, message="CRD is not established yet"),
        ),
    ]
    assert summarize_not_ready(items) == [
        "CustomResourceDefinition/w.example.com: CRD is not established yet",
        "Deployment/app/web: ready replicas 0 of 1",
    ]


def test_summarize_keeps_at_most_ten_and_is_stable() -> None:
    items = [
        (
            {"kind": "Pod", "metadata": {"name": f"p{i:02}", "namespace": "n"}},
            Readiness(ready=False, message="x"),
        )
        for i in range(25)
    ]
    first = summarize_not_ready(items)
    assert len(first) == 10
    assert first == summarize_not_ready(reversed(items))
    assert first[0] == "Pod/n/p00: x"


@pytest.mark.parametrize(
    ("api_version", "kind", "expected"),
    [
        ("v1", "ConfigMap", True),
        ("v1", "Secret", True),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", True),
        ("v1", "Service", False),  # a LoadBalancer waits for its address
        ("apps/v1", "Deployment", False),
        ("example.com/v1", "ConfigMap", False),  # a custom resource that reuses the name
    ],
)
def test_ready_when_present_only_for_builtin_kinds_without_status(
    api_version: str, kind: str, expected: bool
) -> None:
    assert ready_when_present(api_version, kind) is expected


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [(a, k) for a, k in sorted(_READY_WHEN_PRESENT)],
)
def test_every_kind_ready_when_present_is_judged_ready_by_assess(
    api_version: str, kind: str
) -> None:
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}
    assert assess(obj).ready
