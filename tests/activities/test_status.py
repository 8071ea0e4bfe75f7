"""Status checks honour fleet.yaml: diff.comparePatches, HPA-owned replicas, ignore.conditions."""

from __future__ import annotations

import uuid
from typing import Any

from activities.helm import read_release_manifest
from activities.kube import NotFoundError
from tests.activities.conftest import Engine, deployment, dump
from tests.activities.test_deploy import CHART_FILES


def scale(engine: Engine, replicas: int) -> None:
    with engine.kube() as kube:
        kube.merge_patch(
            "apps/v1", "Deployment", engine.namespace, "web", {"spec": {"replicas": replicas}}
        )


def test_compare_patches_leave_fields_out_of_drift(engine: Engine) -> None:
    files = {"web.yaml": dump(deployment("web"))}
    engine.deploy(engine.bundle(files), "v1")
    scale(engine, 3)
    patch = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    ignoring = engine.bundle(
        files, fleet={"diff": {"comparePatches": [{**patch, "jsonPointers": ["/spec/replicas"]}]}}
    )

    assert engine.check(engine.bundle(files), "v1").drift == [
        f"Deployment/{engine.namespace}/web: differs at /spec/replicas"
    ]
    assert engine.check(ignoring, "v1").drift == []


def test_replicas_of_an_hpa_target_are_not_drift(engine: Engine) -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 5,
        },
    }
    bundle = engine.bundle({"web.yaml": dump(deployment("web"), hpa)})
    engine.deploy(bundle, "v1")
    scale(engine, 4)

    assert engine.check(bundle, "v1").drift == []


def widget_crd(group: str) -> dict[str, Any]:
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def test_ignored_conditions_do_not_make_an_object_not_ready(engine: Engine) -> None:
    group = f"g{uuid.uuid4().hex[:8]}.flotilla.dev"
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with engine.kube() as kube:
        kube.apply(widget_crd(group))

        def served() -> bool:
            try:
                kube.resource_info(f"{group}/v1", "Widget")
            except NotFoundError:
                return False
            return True

        engine.wait_for("the CRD to be served", served)
    try:
        bundle = engine.bundle({"widget.yaml": dump(widget)})
        engine.deploy(bundle, "v1")
        condition = {"type": "Ready", "status": "False", "reason": "Waiting", "message": "later"}
        path = f"/apis/{group}/v1/namespaces/{engine.namespace}/widgets/w/status"
        live = engine.cluster.request("GET", path)
        engine.cluster.request("PUT", path, {**live, "status": {"conditions": [condition]}})
        ignoring = engine.bundle(
            {"widget.yaml": dump(widget)},
            fleet={"ignore": {"conditions": [{"type": "Ready", "status": "False"}]}},
        )

        judged = engine.check(bundle, "v1")
        ignored = engine.check(ignoring, "v1")

        assert judged.non_ready == [f"Widget/{engine.namespace}/w: Ready=False: later"]
        assert ignored.ready and ignored.non_ready == [] and ignored.drift == []
    finally:
        engine.cluster.request(
            "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}"
        )


def test_the_manifest_read_from_helms_record_is_what_helm_prints(engine: Engine) -> None:
    bundle = engine.bundle(CHART_FILES, fleet={"helm": {"values": {"greeting": "hi {{ x }}"}}})
    result = engine.deploy(bundle, "v1")

    with engine.kube() as kube:
        ours = read_release_manifest(kube, "t-app", engine.namespace, result.release.revision)

    printed = engine.helm("get", "manifest", "t-app", "-n", engine.namespace).stdout
    # helm adds one newline when it prints.
    assert ours + "\n" == printed
    assert 'greeting: "hi {{ x }}"' in ours
