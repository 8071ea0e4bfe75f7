"""Drift between rendered and live objects: no noise after a clean deploy, real edits found."""

from __future__ import annotations

import base64
import copy
from fractions import Fraction
from typing import Any

import pytest

from flotilla.drift import (
    CompiledComparePatch,
    DriftEntry,
    DriftKind,
    ObjectKey,
    describe_pointers,
    diff_objects,
    find_differences,
    find_hpa_targets,
    object_key,
    parse_quantity,
)

DESIRED_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}, "creationTimestamp": None},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "nginx:1.27",
                        "ports": [{"containerPort": 80}],
                        "env": [{"name": "MODE", "value": "prod"}],
                        "resources": {
                            "requests": {"cpu": 0.1, "memory": "1Gi"},
                            "limits": {"cpu": "1000m", "memory": "1024Mi"},
                        },
                        "volumeMounts": [
                            {"name": "conf", "mountPath": "/etc/web", "readOnly": False}
                        ],
                    },
                    {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "infinity"]},
                ],
                "volumes": [{"name": "conf", "configMap": {"name": "web-conf"}}],
                "securityContext": {},
            },
        },
    },
    "status": {},
}

# What the API server returns for DESIRED_DEPLOYMENT after `helm install` and a rollout.
LIVE_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "app",
        "uid": "7c1bd1c2-6f58-4c3e-9a3f-0b7f1a0f4b11",
        "resourceVersion": "48213",
        "generation": 1,
        "creationTimestamp": "2026-11-21T09:00:00Z",
        "labels": {"app": "web", "app.kubernetes.io/managed-by": "Helm"},
        "annotations": {
            "deployment.kubernetes.io/revision": "1",
            "meta.helm.sh/release-name": "web",
            "meta.helm.sh/release-namespace": "app",
        },
        "managedFields": [{"manager": "helm", "operation": "Update", "apiVersion": "apps/v1"}],
    },
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}, "creationTimestamp": None},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "nginx:1.27",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "env": [{"name": "MODE", "value": "prod"}],
                        "resources": {
                            "limits": {"cpu": "1", "memory": "1Gi"},
                            "requests": {"cpu": "100m", "memory": "1Gi"},
                        },
                        "volumeMounts": [{"name": "conf", "mountPath": "/etc/web"}],
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "imagePullPolicy": "IfNotPresent",
                    },
                    {
                        "name": "sidecar",
                        "image": "busybox:1.36",
                        "args": ["sleep", "infinity"],
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "imagePullPolicy": "IfNotPresent",
                    },
                ],
                "volumes": [
                    {"name": "conf", "configMap": {"name": "web-conf", "defaultMode": 420}}
                ],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "securityContext": {},
                "schedulerName": "default-scheduler",
            },
        },
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
        },
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    },
    "status": {
        "observedGeneration": 1,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "conditions": [{"type": "Available", "status": "True"}],
    },
}

DESIRED_SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "app"},
    "spec": {
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}],
    },
}

LIVE_SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "web",
        "namespace": "app",
        "uid": "0b8c",
        "resourceVersion": "48190",
        "creationTimestamp": "2026-11-21T09:00:00Z",
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": "web"},
    },
    "spec": {
        "ports": [
            {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53},
            {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80},
        ],
        "selector": {"app": "web"},
        "clusterIP": "10.96.12.7",
        "clusterIPs": ["10.96.12.7"],
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
    },
    "status": {"loadBalancer": {}},
}

DESIRED_CONFIGMAP: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "web-conf", "annotations": None},
    "data": {"nginx.conf": "server {}\n"},
}
LIVE_CONFIGMAP: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {
        "name": "web-conf",
        "namespace": "app",
        "uid": "1",
        "resourceVersion": "2",
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    },
    "data": {"nginx.conf": "server {}\n"},
}

DESIRED_SECRET: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "creds"},
    "stringData": {"password": "hunter2"},
    "data": {"user": base64.b64encode(b"admin").decode()},
}
LIVE_SECRET: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "creds", "namespace": "app", "uid": "3"},
    "type": "Opaque",
    "data": {
        "user": base64.b64encode(b"admin").decode(),
        "password": base64.b64encode(b"hunter2").decode(),
    },
}

DESIRED_NAMESPACE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {"name": "extra", "labels": {"team": "a"}},
}
LIVE_NAMESPACE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {
        "name": "extra",
        "uid": "4",
        "labels": {"team": "a", "kubernetes.io/metadata.name": "extra"},
    },
    "spec": {"finalizers": ["kubernetes"]},
    "status": {"phase": "Active"},
}

DESIRED_STATEFULSET: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "StatefulSet",
    "metadata": {"name": "db"},
    "spec": {
        "serviceName": "db",
        "selector": {"matchLabels": {"app": "db"}},
        "template": {
            "metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres:17"}]},
        },
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        ],
    },
}
LIVE_STATEFULSET: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "StatefulSet",
    "metadata": {"name": "db", "namespace": "app", "generation": 1},
    "spec": {
        "replicas": 1,
        "serviceName": "db",
        "selector": {"matchLabels": {"app": "db"}},
        "podManagementPolicy": "OrderedReady",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "revisionHistoryLimit": 10,
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "template": {
            "metadata": {"labels": {"app": "db"}, "creationTimestamp": None},
            "spec": {
                "containers": [
                    {
                        "name": "db",
                        "image": "postgres:17",
                        "imagePullPolicy": "IfNotPresent",
                        "resources": {},
                    }
                ],
                "restartPolicy": "Always",
                "dnsPolicy": "ClusterFirst",
            },
        },
        "volumeClaimTemplates": [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "creationTimestamp": None},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1024Mi"}},
                    "volumeMode": "Filesystem",
                },
                "status": {"phase": "Pending"},
            }
        ],
    },
}

DESIRED_AGGREGATED_ROLE: dict[str, Any] = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": "monitoring"},
    "aggregationRule": {
        "clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/agg": "true"}}]
    },
    "rules": [],
}
LIVE_AGGREGATED_ROLE: dict[str, Any] = {
    **DESIRED_AGGREGATED_ROLE,
    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
}

PAIRS = [
    (DESIRED_DEPLOYMENT, LIVE_DEPLOYMENT),
    (DESIRED_SERVICE, LIVE_SERVICE),
    (DESIRED_CONFIGMAP, LIVE_CONFIGMAP),
    (DESIRED_SECRET, LIVE_SECRET),
    (DESIRED_NAMESPACE, LIVE_NAMESPACE),
    (DESIRED_STATEFULSET, LIVE_STATEFULSET),
    (DESIRED_AGGREGATED_ROLE, LIVE_AGGREGATED_ROLE),
]


def live_by_key(*objs: dict[str, Any]) -> dict[ObjectKey, dict[str, Any] | None]:
    return {object_key(obj, "app"): obj for obj in objs}


def diff(
    desired: list[dict[str, Any]],
    live: dict[ObjectKey, dict[str, Any] | None],
    patches: list[CompiledComparePatch] | None = None,
    hpa: set[ObjectKey] | None = None,
) -> list[DriftEntry]:
    return diff_objects(desired, live, patches or [], hpa or set(), namespace="app")


@pytest.mark.parametrize(("desired", "live"), PAIRS, ids=[d["kind"] for d, _ in PAIRS])
def test_no_drift_right_after_a_clean_deploy(desired: dict[str, Any], live: dict[str, Any]) -> None:
    assert diff([desired], live_by_key(live)) == []


def test_no_drift_for_the_whole_release_at_once() -> None:
    assert diff([d for d, _ in PAIRS], live_by_key(*(live for _, live in PAIRS))) == []


def test_diff_does_not_change_its_inputs() -> None:
    desired, live = copy.deepcopy(DESIRED_SECRET), copy.deepcopy(LIVE_SECRET)
    diff([desired], live_by_key(live))
    assert desired == DESIRED_SECRET
    assert live == LIVE_SECRET


def edited(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Return a copy of obj with the value at a slash path replaced (value None deletes)."""
    result = copy.deepcopy(obj)
    *parents, last = path.strip("/").split("/")
    node: Any = result
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list) and value is None:
        del node[int(last)]
    elif isinstance(node, list):
        node[int(last)] = value
    elif value is None:
        del node[last]
    else:
        node[last] = value
    return result


@pytest.mark.parametrize(
    ("desired", "live", "pointer"),
    [
        (DESIRED_DEPLOYMENT, edited(LIVE_DEPLOYMENT, "/spec/replicas", 5), "/spec/replicas"),
        (
            DESIRED_DEPLOYMENT,
            edited(LIVE_DEPLOYMENT, "/spec/template/spec/containers/0/image", "nginx:1.28"),
            "/spec/template/spec/containers/0/image",
        ),
        (
            DESIRED_DEPLOYMENT,
            edited(LIVE_DEPLOYMENT, "/metadata/labels/app", "other"),
            "/metadata/labels/app",
        ),
        (
            DESIRED_DEPLOYMENT,
            edited(LIVE_DEPLOYMENT, "/spec/template/spec/containers/0/env/0/value", "dev"),
            "/spec/template/spec/containers/0/env/0/value",
        ),
        (
            DESIRED_DEPLOYMENT,
            edited(
                LIVE_DEPLOYMENT,
                "/spec/template/spec/containers/0/resources/limits/memory",
                "2Gi",
            ),
            "/spec/template/spec/containers/0/resources/limits/memory",
        ),
        (
            DESIRED_DEPLOYMENT,
            edited(LIVE_DEPLOYMENT, "/spec/template/spec/containers/1", None),
            "/spec/template/spec/containers/1",
        ),
        (
            DESIRED_DEPLOYMENT,
            edited(
                LIVE_DEPLOYMENT,
                "/spec/template/spec/containers/0/volumeMounts/0",
                {"name": "conf", "mountPath": "/etc/web", "readOnly": True},
            ),
            "/spec/template/spec/containers/0/volumeMounts/0/readOnly",
        ),
        (
            DESIRED_SERVICE,
            edited(
                LIVE_SERVICE,
                "/spec/ports/1",
                {"name": "http", "protocol": "TCP", "port": 8080, "targetPort": 80},
            ),
            "/spec/ports/0",
        ),
        (
            DESIRED_CONFIGMAP,
            edited(LIVE_CONFIGMAP, "/data/nginx.conf", "server { listen 81; }\n"),
            "/data/nginx.conf",
        ),
        (
            DESIRED_SECRET,
            edited(LIVE_SECRET, "/data/password", base64.b64encode(b"changed").decode()),
            "/data/password",
        ),
        (
            DESIRED_STATEFULSET,
            edited(
                LIVE_STATEFULSET,
                "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
                "2Gi",
            ),
            "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
        ),
    ],
)
def test_edits_are_drift(desired: dict[str, Any], live: dict[str, Any], pointer: str) -> None:
    entries = diff([desired], live_by_key(live))
    assert len(entries) == 1
    assert entries[0].drift is DriftKind.MODIFIED
    assert pointer in entries[0].pointers
    assert pointer in entries[0].message


def test_a_container_added_live_is_drift() -> None:
    live = copy.deepcopy(LIVE_DEPLOYMENT)
    live["spec"]["template"]["spec"]["containers"].append({"name": "intruder", "image": "x"})
    [entry] = diff([DESIRED_DEPLOYMENT], live_by_key(live))
    assert entry.pointers == ["/spec/template/spec/containers/2"]


def test_reordered_containers_still_line_up_by_name() -> None:
    live = copy.deepcopy(LIVE_DEPLOYMENT)
    live["spec"]["template"]["spec"]["containers"].reverse()
    assert diff([DESIRED_DEPLOYMENT], live_by_key(live)) == []


def test_deleted_object_is_missing() -> None:
    entries = diff([DESIRED_DEPLOYMENT, DESIRED_SERVICE], live_by_key(LIVE_SERVICE))
    assert entries == [
        DriftEntry(
            key=ObjectKey(api_version="apps/v1", kind="Deployment", namespace="app", name="web"),
            drift=DriftKind.MISSING,
            message="missing",
        )
    ]


def test_live_none_counts_as_missing() -> None:
    key = object_key(DESIRED_SERVICE, "app")
    [entry] = diff([DESIRED_SERVICE], {key: None})
    assert entry.drift is DriftKind.MISSING


def test_secret_drift_names_pointers_never_values() -> None:
    live = edited(LIVE_SECRET, "/data/password", base64.b64encode(b"s3cr3t-value").decode())
    [entry] = diff([DESIRED_SECRET], live_by_key(live))
    text = entry.model_dump_json()
    for secret in ("hunter2", "s3cr3t-value", base64.b64encode(b"s3cr3t-value").decode()):
        assert secret not in text
    assert entry.message == "differs at /data/password"


def test_replicas_under_an_hpa_are_not_drift() -> None:
    live = edited(LIVE_DEPLOYMENT, "/spec/replicas", 7)
    key = object_key(DESIRED_DEPLOYMENT, "app")
    assert diff([DESIRED_DEPLOYMENT], live_by_key(live), hpa={key}) == []
    assert diff([DESIRED_DEPLOYMENT], live_by_key(live), hpa=set()) != []


def test_hpa_still_sees_other_edits() -> None:
    live = edited(LIVE_DEPLOYMENT, "/spec/template/spec/containers/0/image", "evil")
    key = object_key(DESIRED_DEPLOYMENT, "app")
    [entry] = diff([DESIRED_DEPLOYMENT], live_by_key(live), hpa={key})
    assert entry.pointers == ["/spec/template/spec/containers/0/image"]


def test_find_hpa_targets_reads_scale_target_refs() -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "app"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
    }
    assert find_hpa_targets([hpa, LIVE_SERVICE]) == {object_key(DESIRED_DEPLOYMENT, "app")}


IGNORE_JOB = CompiledComparePatch.model_validate(
    {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "namespace": "app",
        "name": "acl-init",
        "operations": [{"op": "ignore"}],
    }
)
JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "acl-init"}}


@pytest.mark.parametrize(
    ("patch", "name", "ignored"),
    [
        (IGNORE_JOB, "acl-init", True),
        (IGNORE_JOB, "other", False),
        (IGNORE_JOB.model_copy(update={"name": ".*init"}), "acl-init", True),
        (IGNORE_JOB.model_copy(update={"name": "acl"}), "acl-init", True),
        (IGNORE_JOB.model_copy(update={"name": "("}), "acl-init", False),
        (IGNORE_JOB.model_copy(update={"name": ""}), "anything", True),
        (IGNORE_JOB.model_copy(update={"namespace": "elsewhere"}), "acl-init", False),
        (IGNORE_JOB.model_copy(update={"kind": "CronJob"}), "acl-init", False),
        (IGNORE_JOB.model_copy(update={"api_version": "apps/v1"}), "acl-init", False),
    ],
)
def test_ignore_operation_removes_whole_objects(
    patch: CompiledComparePatch, name: str, ignored: bool
) -> None:
    job = edited(JOB, "/metadata/name", name)
    assert (diff([job], {}, [patch]) == []) is ignored


def test_ignore_operation_also_hides_modifications() -> None:
    live = {**JOB, "metadata": {"name": "acl-init", "namespace": "app", "labels": {"x": "y"}}}
    desired = {**JOB, "metadata": {"name": "acl-init", "labels": {"x": "z"}}}
    assert diff([desired], live_by_key(live)) != []
    assert diff([desired], live_by_key(live), [IGNORE_JOB]) == []


def test_name_regex_applies_only_to_ignore() -> None:
    patch = CompiledComparePatch.model_validate(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "we",
            "operations": [{"op": "remove", "path": "/spec/replicas"}],
        }
    )
    assert not patch.matches(object_key(DESIRED_DEPLOYMENT, "app"))


WEBHOOK_DESIRED: dict[str, Any] = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingWebhookConfiguration",
    "metadata": {"name": "gatekeeper"},
    "webhooks": [{"name": "v.gatekeeper.sh", "clientConfig": {"caBundle": ""}, "rules": []}],
}
WEBHOOK_LIVE: dict[str, Any] = {
    **WEBHOOK_DESIRED,
    "webhooks": [
        {
            "name": "v.gatekeeper.sh",
            "clientConfig": {"caBundle": "Cg=="},
            "rules": [{"apiGroups": ["*"]}],
        }
    ],
}


@pytest.mark.parametrize(
    ("patch", "drift"),
    [
        ({}, True),
        (
            {
                "operations": [
                    {"op": "remove", "path": "/webhooks/0/clientConfig/caBundle"},
                    {"op": "remove", "path": "/webhooks/0/rules"},
                ]
            },
            False,
        ),
        ({"jsonPointers": ["/webhooks/0/clientConfig/caBundle", "/webhooks/0/rules"]}, False),
        ({"operations": [{"op": "remove", "path": "/webhooks/0/rules"}]}, True),
        (
            {
                "operations": [
                    {"op": "remove", "path": "/does/not/exist"},
                    {"op": "bogus", "path": "/webhooks"},
                    {"op": "remove", "path": "/webhooks/0/clientConfig/caBundle"},
                    {"op": "remove", "path": "/webhooks/0/rules"},
                ]
            },
            False,
        ),
        (
            {
                "operations": [
                    {"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": "x"},
                    {"op": "replace", "path": "/webhooks/0/rules", "value": []},
                ]
            },
            False,
        ),
    ],
)
def test_compare_patches_remove_pointers(patch: dict[str, Any], drift: bool) -> None:
    entry = CompiledComparePatch.model_validate(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "name": "gatekeeper",
            **patch,
        }
    )
    assert bool(diff([WEBHOOK_DESIRED], live_by_key(WEBHOOK_LIVE), [entry])) is drift


def test_compare_patch_for_another_object_changes_nothing() -> None:
    other = CompiledComparePatch.model_validate(
        {"kind": "ValidatingWebhookConfiguration", "name": "other", "jsonPointers": ["/webhooks"]}
    )
    assert diff([WEBHOOK_DESIRED], live_by_key(WEBHOOK_LIVE), [other]) != []


@pytest.mark.parametrize(
    ("want", "have", "pointers"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, []),
        ({"a": 1}, {"a": 2}, ["/a"]),
        ({"a": None}, {"a": 2}, []),
        ({"a": {}}, {}, []),
        ({"a": []}, {}, []),
        ({"a": False}, {}, []),
        ({"a": 0}, {}, []),
        ({"a": ""}, {}, []),
        ({"a": True}, {}, ["/a"]),
        ({"a": True}, {"a": 1}, ["/a"]),
        ({"a": 1}, {"a": "1"}, ["/a"]),
        ({"a": {"b": 1}}, {}, ["/a"]),
        ({"a": {"b": 1}}, {"a": "x"}, ["/a"]),
        ({"a": [1, 2]}, {"a": [1, 2, 3]}, ["/a"]),
        ({"a": [1, 2]}, {"a": [2, 1]}, ["/a/0", "/a/1"]),
        ({"a/b": 1, "c~d": 1}, {"a/b": 2, "c~d": 2}, ["/a~1b", "/c~0d"]),
        (
            {"env": [{"name": "A", "value": "1"}]},
            {"env": [{"name": "B", "value": "1"}]},
            ["/env/0", "/env/0"],
        ),
        (
            {"ports": [{"port": 53, "protocol": "UDP"}]},
            {"ports": [{"port": 53, "protocol": "TCP"}]},
            ["/ports/0", "/ports/0"],
        ),
        ({"resources": {"limits": {"cpu": "500m"}}}, {"resources": {"limits": {"cpu": 0.5}}}, []),
        (
            {"resources": {"limits": {"cpu": "1"}}},
            {"resources": {"limits": {"cpu": "1001m"}}},
            ["/resources/limits/cpu"],
        ),
        ({"value": "1000m"}, {"value": "1"}, ["/value"]),
    ],
)
def test_find_differences(want: Any, have: Any, pointers: list[str]) -> None:
    assert list(find_differences(want, have)) == pointers


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("1", Fraction(1)),
        ("1000m", Fraction(1)),
        ("100m", Fraction(1, 10)),
        (0.1, Fraction(1, 10)),
        (2, Fraction(2)),
        ("1Gi", Fraction(2**30)),
        ("1024Mi", Fraction(2**30)),
        ("1G", Fraction(10**9)),
        ("1e3", Fraction(1000)),
        ("1.5k", Fraction(1500)),
        ("2E", Fraction(2 * 10**18)),
        ("500n", Fraction(1, 2 * 10**6)),
        ("abc", None),
        ("1Qi", None),
        (True, None),
        (None, None),
    ],
)
def test_parse_quantity(text: Any, amount: Fraction | None) -> None:
    assert parse_quantity(text) == amount


@pytest.mark.parametrize(
    ("obj", "default", "key"),
    [
        (
            DESIRED_DEPLOYMENT,
            "app",
            ObjectKey(api_version="apps/v1", kind="Deployment", namespace="app", name="web"),
        ),
        (
            LIVE_DEPLOYMENT,
            "other",
            ObjectKey(api_version="apps/v1", kind="Deployment", namespace="app", name="web"),
        ),
        (DESIRED_NAMESPACE, "app", ObjectKey(api_version="v1", kind="Namespace", name="extra")),
        (
            DESIRED_AGGREGATED_ROLE,
            "app",
            ObjectKey(
                api_version="rbac.authorization.k8s.io/v1", kind="ClusterRole", name="monitoring"
            ),
        ),
    ],
)
def test_object_key(obj: dict[str, Any], default: str, key: ObjectKey) -> None:
    assert object_key(obj, default) == key


def test_object_key_with_custom_cluster_scoped_kinds() -> None:
    widget = {"apiVersion": "example.com/v1", "kind": "ClusterWidget", "metadata": {"name": "w"}}
    assert object_key(widget, "app").namespace == "app"
    assert object_key(widget, "app", frozenset({"ClusterWidget"})).namespace == ""


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (
            ObjectKey(api_version="apps/v1", kind="Deployment", namespace="app", name="web"),
            "apps/v1/Deployment/app/web",
        ),
        (ObjectKey(api_version="v1", kind="Namespace", name="extra"), "v1/Namespace/extra"),
    ],
)
def test_object_key_text(key: ObjectKey, text: str) -> None:
    assert str(key) == text


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (1, "differs at /p0"),
        (5, "differs at /p0, /p1, /p2, /p3, /p4"),
        (7, "differs at /p0, /p1, /p2, /p3, /p4 (+2 more)"),
    ],
)
def test_describe_pointers_keeps_messages_short(count: int, message: str) -> None:
    assert describe_pointers([f"/p{i}" for i in range(count)]) == message


def test_many_differences_keep_only_the_first_pointers() -> None:
    desired = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {f"k{i}": "a" for i in range(9)},
    }
    live = {
        **desired,
        "metadata": {"name": "c", "namespace": "app"},
        "data": {f"k{i}": "b" for i in range(9)},
    }
    [entry] = diff([desired], live_by_key(live))
    assert len(entry.pointers) == 5
    assert entry.message.endswith("(+4 more)")


def test_webhooks_and_crd_versions_line_up_by_name() -> None:
    want = {"webhooks": [{"name": "a", "sideEffects": "None"}, {"name": "b"}]}
    have = {"webhooks": [{"name": "b", "timeoutSeconds": 10}, {"name": "a", "sideEffects": "None"}]}
    assert list(find_differences(want, have)) == []
    versions = {"versions": [{"name": "v1", "served": True}, {"name": "v2", "served": True}]}
    reordered = {"versions": list(reversed(versions["versions"]))}
    assert list(find_differences(versions, reordered)) == []
