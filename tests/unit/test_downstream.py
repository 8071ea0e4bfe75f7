"""downstreamResources: parsing of fleet.yaml, the content digest, and the copies' shapes."""

from __future__ import annotations

import base64

import pytest

from flotilla.downstream import (
    BUNDLE_LABEL,
    WORKSPACE_LABEL,
    ResolvedResource,
    check_copy_labels,
    copy_object,
    copy_selector,
    resources_digest,
    stale_copies,
    unreadable_digest,
)
from flotilla.errors import SpecError
from flotilla.models import DownstreamResource, HelmOp, load_fleet_yaml, parse_spec


def test_fleet_yaml_lists_configmaps_and_secrets() -> None:
    options, warnings = load_fleet_yaml(
        "downstreamResources:\n- {kind: Secret, name: db-creds}\n- {kind: ConfigMap, name: app}\n"
    )
    assert warnings == []
    assert options.downstream_resources == [
        DownstreamResource(kind="Secret", name="db-creds"),
        DownstreamResource(kind="ConfigMap", name="app"),
    ]
    assert options.to_fleet()["downstreamResources"] == [
        {"kind": "Secret", "name": "db-creds"},
        {"kind": "ConfigMap", "name": "app"},
    ]


def test_a_helmop_lists_them_too() -> None:
    helmop, _ = parse_spec(
        HelmOp,
        {
            "metadata": {"name": "op"},
            "spec": {
                "helm": {"chart": "c", "repo": "https://charts.example.com"},
                "downstreamResources": [{"kind": "ConfigMap", "name": "settings"}],
            },
        },
        file="op.yaml",
    )
    assert helmop.spec.downstream_resources == [
        DownstreamResource(kind="ConfigMap", name="settings")
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "downstreamResources: [{kind: Deployment, name: x}]",
            "fleet.yaml: downstreamResources[0].kind: Input should be 'ConfigMap' or 'Secret' "
            "('Deployment')",
        ),
        (
            "downstreamResources: [{kind: Secret, name: Bad_Name}]",
            "fleet.yaml: downstreamResources[0].name: 'Bad_Name' is not a valid Kubernetes "
            "object name (DNS-1123)",
        ),
        (
            "downstreamResources: [{kind: ConfigMap}]",
            "fleet.yaml: downstreamResources[0].name: required field is missing",
        ),
        (
            "downstreamResources: [{kind: Secret, name: a}, {kind: Secret, name: a}]",
            "fleet.yaml: downstreamResources: Secret 'a' is listed twice",
        ),
    ],
)
def test_bad_entries_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_fleet_yaml(text)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_a_configmap_and_a_secret_of_one_name_are_two_entries() -> None:
    options, _ = load_fleet_yaml(
        "downstreamResources: [{kind: Secret, name: a}, {kind: ConfigMap, name: a}]"
    )
    assert len(options.downstream_resources or []) == 2


def _secret(data: dict[str, str] | None, type: str = "Opaque") -> ResolvedResource:
    return ResolvedResource(kind="Secret", name="creds", type=type, data=data)


def _config_map(data: dict[str, str] | None) -> ResolvedResource:
    return ResolvedResource(kind="ConfigMap", name="app", data=data)


def test_the_digest_follows_content_not_key_order() -> None:
    base = resources_digest([_secret({"a": "1", "b": "2"}), _config_map({"x": "y"})])
    assert base == resources_digest([_secret({"b": "2", "a": "1"}), _config_map({"x": "y"})])
    assert len(base) == 64
    changed = {
        resources_digest([_secret({"a": "1", "b": "3"}), _config_map({"x": "y"})]),
        resources_digest([_secret({"a": "1", "b": "2"}), _config_map({"x": "z"})]),
        resources_digest(
            [
                _secret({"a": "1", "b": "2"}, type="kubernetes.io/basic-auth"),
                _config_map({"x": "y"}),
            ]
        ),
        resources_digest([_secret({"a": "1", "b": "2"})]),
        resources_digest([_secret({"a": "1", "b": "2"}), _config_map(None)]),
        resources_digest([_secret({"a": "1", "b": "2"}), _config_map({})]),
    }
    assert base not in changed
    assert len(changed) == 6


def test_the_digest_does_not_show_the_values() -> None:
    digest = resources_digest([_secret({"password": "hunter2-secret"})])
    assert "hunter2" not in digest
    assert "hunter2" not in repr(_secret({"password": "hunter2-secret"}))
    assert "hunter2" not in str(_secret({"password": "hunter2-secret"}))


def test_a_secret_copy_keeps_its_type_and_encodes_its_data() -> None:
    obj = copy_object(
        _secret({"values.yaml": "a: 1\n"}, type="kubernetes.io/dockerconfigjson"),
        "shop",
        workspace="fleet-default",
        bundle="web",
    )
    assert obj["kind"] == "Secret"
    assert obj["type"] == "kubernetes.io/dockerconfigjson"
    assert obj["metadata"]["namespace"] == "shop"
    assert obj["metadata"]["labels"][BUNDLE_LABEL] == "web"
    assert obj["metadata"]["labels"][WORKSPACE_LABEL] == "fleet-default"
    assert base64.b64decode(obj["data"]["values.yaml"]).decode() == "a: 1\n"


def test_a_configmap_copy_has_its_data_as_text() -> None:
    obj = copy_object(_config_map({"k": "v"}), "shop", workspace="ws", bundle="web")
    assert obj == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "app",
            "namespace": "shop",
            "labels": {
                "app.kubernetes.io/managed-by": "flotilla",
                BUNDLE_LABEL: "web",
                WORKSPACE_LABEL: "ws",
            },
        },
        "data": {"k": "v"},
    }


def test_a_missing_resource_has_no_copy() -> None:
    with pytest.raises(ValueError, match="missing"):
        copy_object(_config_map(None), "shop", workspace="ws", bundle="web")


def test_copies_no_longer_listed_are_stale() -> None:
    wanted = [DownstreamResource(kind="Secret", name="a")]
    live = [("Secret", "a"), ("ConfigMap", "a"), ("Secret", "b")]
    assert stale_copies(live, wanted) == [("ConfigMap", "a"), ("Secret", "b")]
    assert stale_copies(live, []) == sorted(live)


def test_selector_and_label_limits() -> None:
    assert copy_selector("ws", "web") == (
        f"app.kubernetes.io/managed-by=flotilla,{BUNDLE_LABEL}=web,{WORKSPACE_LABEL}=ws"
    )
    assert check_copy_labels("ws", "web") == ""
    assert "'" + "n" * 64 + "'" in check_copy_labels("n" * 64, "web")


def test_an_unreadable_store_has_a_digest_no_content_has() -> None:
    entries = [DownstreamResource(kind="Secret", name="creds")]
    unreadable = unreadable_digest(entries)
    assert unreadable == unreadable_digest(list(entries))
    assert unreadable not in {
        resources_digest([_secret(None)]),
        resources_digest([_secret({})]),
        unreadable_digest([DownstreamResource(kind="ConfigMap", name="creds")]),
    }
