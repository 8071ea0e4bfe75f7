"""Fleet's API as data: CRDs, reading objects, digests, statuses, leases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flotilla import fleetapi
from flotilla.errors import SpecError
from flotilla.fleetapi import DeploymentView, GitRepoView
from flotilla.models import Cluster, GitRepo, GitRepoRestriction, HelmOp, Policy
from flotilla.status import BundleLine, BundleState, Condition, RepoState
from workflows.helmop_models import HelmOpStatus

NOW = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)


def _crd(kind: str) -> dict[str, Any]:
    return next(c for c in fleetapi.crd_documents() if c["spec"]["names"]["kind"] == kind)


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("GitRepo", ["Repo", "Commit", "BundleDeployments-Ready", "Status"]),
        ("HelmOp", ["Repo", "Chart", "Version", "BundleDeployments-Ready", "Status"]),
        ("Bundle", ["BundleDeployments-Ready", "Status"]),
        ("BundleDeployment", ["Deployed", "Monitored", "Status"]),
        ("Cluster", ["Bundles-Ready", "Last-Seen", "Status"]),
        ("ClusterGroup", ["Clusters-Ready", "Bundles-Ready", "Status"]),
        ("Schedule", ["Schedule", "Duration", "Active", "NextStart"]),
        ("GitRepoRestriction", ["Default-ServiceAccount", "Allowed-ServiceAccounts"]),
        ("Policy", []),
    ],
)
def test_printer_columns_are_fleets(kind: str, columns: list[str]) -> None:
    version = _crd(kind)["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == columns
    assert version["subresources"] == {"status": {}}


def _walk(node: Any) -> list[dict[str, Any]]:
    out = [node] if isinstance(node, dict) else []
    if isinstance(node, dict):
        for value in node.values():
            out += _walk(value)
    elif isinstance(node, list):
        for value in node:
            out += _walk(value)
    return out


@pytest.mark.parametrize("kind", [k.kind for k in fleetapi.KINDS])
def test_crd_schemas_are_structural(kind: str) -> None:
    schema = _crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = json.dumps(schema)
    assert "$ref" not in text and "anyOf" not in text and "title" not in text
    # Policy and GitRepoRestriction keep their fields beside metadata, as Fleet's do.
    user = schema if fleetapi.KIND_BY_NAME[kind].top_level else schema["properties"]["spec"]
    for node in _walk(user):
        if "properties" in node or "items" in node:
            assert node.get("type") in ("object", "array"), node
    # Unknown fields reach the controller (reported), status is the controller's.
    assert user["x-kubernetes-preserve-unknown-fields"] is True


def test_restriction_crds_take_fleets_top_level_fields() -> None:
    policy = _crd("Policy")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert "spec" not in policy
    assert policy["requireServiceAccount"]["type"] == "boolean"
    assert policy["gitRepo"]["properties"]["allowedRepoPatterns"]["items"] == {"type": "string"}
    grr = _crd("GitRepoRestriction")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    selector = grr["properties"]["allowedTargetNamespaceSelector"]
    assert "matchLabels" in selector["properties"]
    assert _crd("Policy")["spec"]["names"]["plural"] == "policies"


def _restriction(kind: str, **fields: object) -> dict[str, Any]:
    return {
        "apiVersion": "fleet.cattle.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "team", "namespace": "team-a", "uid": "1", "generation": 3},
        **fields,
        "status": {"appliedDigest": "x"},
    }


def test_read_restrictions_as_apply_reads_them() -> None:
    model, warnings = fleetapi.read_object(
        _restriction("Policy", requireServiceAccount=True, gitRepo={"defaultServiceAccount": "d"})
    )
    assert isinstance(model, Policy) and warnings == []
    assert model.require_service_account and model.git_repo is not None
    assert model.metadata.namespace == "team-a"
    model, _ = fleetapi.read_object(
        _restriction(
            "GitRepoRestriction", allowedTargetNamespaceSelector={"matchLabels": {"a": "b"}}
        )
    )
    assert isinstance(model, GitRepoRestriction)
    assert model.allowed_target_namespace_selector is not None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"allowedServiceAcounts": ["x"]},
            "policy team-a/team: allowedServiceAcounts: unknown field; did you mean "
            "'allowedServiceAccounts'?",
        ),
        (
            {"gitRepo": {"allowedRepoPatterns": ["(x"]}},
            "policy team-a/team: gitRepo.allowedRepoPatterns",
        ),
    ],
)
def test_a_bad_restriction_is_one_line_naming_object_and_field(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as err:
        fleetapi.read_object(_restriction("Policy", **fields))
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_a_restrictions_digest_follows_its_fields() -> None:
    one = fleetapi.applied_digest(_restriction("Policy", allowedServiceAccounts=["a"]))
    two = fleetapi.applied_digest(_restriction("Policy", allowedServiceAccounts=["b"]))
    again = _restriction("Policy", allowedServiceAccounts=["a"])
    again["metadata"]["resourceVersion"] = "99"
    again["status"] = {"conditions": []}
    assert one != two and fleetapi.applied_digest(again) == one


def test_gitrepo_schema_comes_from_the_model() -> None:
    spec = _crd("GitRepo")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    props = spec["spec"]["properties"]
    assert props["repo"]["type"] == "string"
    assert props["paths"] == {"type": "array", "items": {"type": "string"}}
    assert props["revision"]["nullable"] is True
    assert spec["spec"]["required"] == ["repo"]


def _gitrepo(**spec: object) -> dict[str, Any]:
    return {
        "apiVersion": "fleet.cattle.io/v1alpha1",
        "kind": "GitRepo",
        "metadata": {
            "name": "web",
            "namespace": "fleet-default",
            "uid": "1234",
            "resourceVersion": "9",
            "generation": 2,
            "managedFields": [{"manager": "kubectl"}],
            "finalizers": ["flotilla.dev/controller"],
        },
        "spec": {"repo": "https://example.com/r.git", **spec},
        "status": {"commit": "abc"},
    }


def test_read_object_ignores_server_metadata() -> None:
    model, warnings = fleetapi.read_object(_gitrepo(paths=["app"]))
    assert isinstance(model, GitRepo)
    assert model.spec.paths == ["app"]
    assert warnings == []


def test_read_object_reports_unknown_fields_with_a_hint() -> None:
    _, warnings = fleetapi.read_object(_gitrepo(branchh="main"))
    assert warnings == [
        "gitrepo fleet-default/web: spec.branchh: unknown field, ignored; did you mean 'branch'?"
    ]


def test_read_object_names_object_field_and_value() -> None:
    with pytest.raises(SpecError) as err:
        fleetapi.read_object(_gitrepo(paths="app"))
    assert str(err.value).startswith("gitrepo fleet-default/web: spec.paths")
    assert "\n" not in str(err.value)


def _helmop(**helm: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fleet.cattle.io/v1alpha1",
        "kind": "HelmOp",
        "metadata": {"name": "web", "namespace": "fleet-default", "generation": 2},
        "spec": {
            "helm": {"repo": "https://charts.example.com", "chart": "app", **helm},
            "downstreamResources": [{"kind": "Secret", "name": "creds"}],
        },
    }


def test_read_helmop_as_apply_reads_it() -> None:
    model, warnings = fleetapi.read_object(_helmop(version="^1.0"))
    assert isinstance(model, HelmOp)
    assert model.spec.helm is not None and model.spec.helm.version == "^1.0"
    assert model.spec.downstream_resources is not None
    assert warnings == []


def test_a_helmop_in_the_api_has_no_values_files() -> None:
    with pytest.raises(SpecError) as err:
        fleetapi.read_object(_helmop(valuesFiles=["prod.yaml"]))
    assert str(err.value) == (
        "helmop fleet-default/web: spec.helm.valuesFiles: ['prod.yaml']: an object in the API "
        "has no files beside it; put the values in spec.helm.values"
    )


def test_helmop_status_is_fleets_with_the_version() -> None:
    query = HelmOpStatus(
        namespace="fleet-default",
        name="web",
        repo="https://charts.example.com",
        chart="app",
        wanted="^9",
        version="1.2.0",
        ready_clusters=1,
        desired_ready_clusters=2,
        ready_bundle_deployments="1/2",
        state=RepoState.CHART_ERROR,
        message="no version of chart 'app' matches '^9'",
        conditions=[Condition(type="Ready", status=False, reason="ChartError")],
        bundles=[_line("web", BundleState.NOT_READY)],
    )
    status = fleetapi.helmop_status(query, [{"type": "Accepted"}], NOW)
    assert status["version"] == "1.2.0"
    assert "commit" not in status
    assert status["display"] == {
        "readyBundleDeployments": "1/2",
        "state": "ChartError",
        "message": "no version of chart 'app' matches '^9'",
        "error": True,
    }
    assert status["readyClusters"] == 1 and status["desiredReadyClusters"] == 2
    assert status["summary"]["nonReadyResources"][0]["name"] == "web"
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Accepted"]


def test_read_cluster() -> None:
    obj = {
        "kind": "Cluster",
        "metadata": {"name": "one", "namespace": "ns", "labels": {"env": "prod"}},
        "spec": {"kubeConfigSecret": "one-kc"},
    }
    model, _ = fleetapi.read_object(obj)
    assert isinstance(model, Cluster)
    assert model.metadata.labels == {"env": "prod"}


@pytest.mark.parametrize(
    ("change", "same"),
    [
        (lambda o: o["metadata"].update(resourceVersion="10"), True),
        (lambda o: o.update(status={"commit": "def"}), True),
        (lambda o: o["metadata"].update(finalizers=[]), True),
        (lambda o: o["spec"].update(branch="dev"), False),
        (lambda o: o["metadata"].update(labels={"env": "dev"}), False),
    ],
)
def test_applied_digest_follows_spec_and_labels_only(change: Any, same: bool) -> None:
    before = _gitrepo()
    after = _gitrepo()
    change(after)
    assert (fleetapi.applied_digest(before) == fleetapi.applied_digest(after)) is same


def _line(name: str, state: BundleState) -> BundleLine:
    return BundleLine(name=name, path=name, state=state, ready=0, desired=1, message=f"{name} x")


def test_gitrepo_status_is_bounded_at_500_bundles() -> None:
    lines = tuple(_line(f"b{i}", BundleState.ERR_APPLIED) for i in range(500))
    view = GitRepoView(
        commit="c" * 40,
        ready_clusters=0,
        desired_ready_clusters=500,
        ready_bundle_deployments="0/500",
        state="ErrApplied",
        message="b0: failed",
        conditions=(
            Condition(type="Ready", status=False, reason="ErrApplied", last_transition=NOW),
        ),
        bundles=lines,
    )
    status = fleetapi.gitrepo_status(view, [], NOW)
    assert status["summary"]["errApplied"] == 500
    assert len(status["summary"]["nonReadyResources"]) == fleetapi.MAX_STATUS_ITEMS
    assert status["display"] == {
        "readyBundleDeployments": "0/500",
        "state": "ErrApplied",
        "message": "b0: failed",
        "error": True,
    }
    assert status["conditions"][0]["lastUpdateTime"] == "2026-12-03T22:00:00Z"
    assert len(json.dumps(status)) < 4000


def test_bundle_status_counts_every_cluster_and_names_ten() -> None:
    deployments = [
        DeploymentView(f"c{i}", "Ready" if i % 2 else "NotReady", "waiting", "d1", "d1")
        for i in range(500)
    ]
    status = fleetapi.bundle_status(250, 500, "NotReady", "c0: waiting", deployments)
    assert status["display"]["readyClusters"] == "250/500"
    assert status["summary"]["notReady"] == 250
    assert len(status["summary"]["nonReadyResources"]) == 10
    assert status["conditions"][0]["status"] == "False"
    assert len(json.dumps(status)) < 3000


def test_a_state_no_deployment_is_in_any_more_is_null_so_a_merge_patch_removes_it() -> None:
    status = fleetapi.bundle_status(2, 2, "Ready", "", [DeploymentView("c", "Ready", "", "d", "d")])
    counts = {k: v for k, v in status["summary"].items() if k not in ("desiredReady", "ready")}
    assert counts.pop("nonReadyResources") == []
    assert counts and set(counts.values()) == {None}
    assert {"waitApplied", "errApplied", "notReady", "modified"} <= set(counts)


@pytest.mark.parametrize(("applied", "deployed"), [("d1", "Yes"), ("d0", "No"), ("", "No")])
def test_bundledeployment_deployed_column(applied: str, deployed: str) -> None:
    status = fleetapi.bundledeployment_status(DeploymentView("c", "Ready", "", "d1", applied))
    assert status["display"]["deployed"] == deployed


@pytest.mark.parametrize(
    ("states", "offline", "ready", "shown"),
    [
        ({"a": "Ready", "b": "Ready"}, "", "True", "2/2"),
        ({"a": "Ready", "b": "ErrApplied"}, "", "False", "1/2"),
        ({"a": "Ready"}, "connection refused", "False", "1/1"),
        ({}, "", "True", "0/0"),
    ],
)
def test_cluster_status(states: dict[str, str], offline: str, ready: str, shown: str) -> None:
    status = fleetapi.cluster_status(states, offline, NOW + timedelta(seconds=42))
    assert status["display"]["readyBundles"] == shown
    assert status["conditions"][0]["status"] == ready
    assert status["agent"]["lastSeen"] == "2026-12-03T22:00:00Z"


def test_clustergroup_status() -> None:
    status = fleetapi.clustergroup_status(
        {"one": {"a": "Ready"}, "two": {"a": "NotReady", "b": "Ready"}}
    )
    assert status["display"] == {"readyClusters": "1/2", "readyBundles": "2/3"}
    assert status["nonReadyClusters"] == ["two"]


def test_rejected_status_is_one_line() -> None:
    status = fleetapi.rejected_status(_gitrepo(), "bad\nvalue", ["w"])
    types = [c["type"] for c in status["conditions"]]
    assert types == ["Accepted", "Ready", "Warning"]
    assert status["conditions"][1]["message"] == "bad value"
    assert status["observedGeneration"] == 2


def _lease(holder: str, renewed: datetime, seconds: int = 30) -> dict[str, Any]:
    return {
        "metadata": {"name": fleetapi.LEASE_NAME, "namespace": "ns"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": seconds,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }


@pytest.mark.parametrize(
    ("holder", "age", "other"),
    [
        ("b", 5, "b"),
        ("b", 31, ""),  # expired: free to take
        ("a", 5, ""),  # ours (a restart of this controller)
        ("", 5, ""),
    ],
)
def test_lease_holder(holder: str, age: int, other: str) -> None:
    lease = _lease(holder, NOW - timedelta(seconds=age))
    assert fleetapi.lease_holder(lease, "a", NOW) == other


def test_fleet_controller_lease_is_found_when_live() -> None:
    live = _lease("fleet-pod", NOW - timedelta(seconds=5))
    live["metadata"] = {"name": "fleet-controller-leader-election-shard", "namespace": "cfs"}
    stale = _lease("fleet-pod", NOW - timedelta(hours=1))
    stale["metadata"] = {"name": "fleet-gitops-leader-election-shard", "namespace": "cfs"}
    other = _lease("x", NOW)
    assert fleetapi.fleet_controller_lease([other, stale, live], NOW) == (
        "cfs/fleet-controller-leader-election-shard"
    )
    assert fleetapi.fleet_controller_lease([other, stale], NOW) == ""


@pytest.mark.parametrize(("bundle", "cluster"), [("web-app", "one"), ("b" * 50, "c" * 40)])
def test_bundledeployment_name_is_a_dns_label(bundle: str, cluster: str) -> None:
    name = fleetapi.bundledeployment_name(bundle, cluster)
    assert len(name) <= 63
    assert name.startswith(bundle[:20])
    assert fleetapi.bundledeployment_name(bundle, cluster + "x") != name


def test_gitrepo_summary_counts_bundle_deployments_when_the_worker_gives_them() -> None:
    view = GitRepoView(
        commit="c" * 40,
        ready_clusters=1,
        desired_ready_clusters=500,
        ready_bundle_deployments="998/1000",
        state="ErrApplied",
        message="b0: c7: failed",
        conditions=(),
        bundles=(_line("b0", BundleState.ERR_APPLIED), _line("b1", BundleState.READY)),
        deployment_counts={"Ready": 998, "ErrApplied": 2},
    )
    summary = fleetapi.gitrepo_status(view, [], NOW)["summary"]
    # Fleet's GitRepo summary counts bundle deployments, not bundles.
    assert (summary["desiredReady"], summary["ready"], summary["errApplied"]) == (1000, 998, 2)
    assert [r["name"] for r in summary["nonReadyResources"]] == ["b0"]
