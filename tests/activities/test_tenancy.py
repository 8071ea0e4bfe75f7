"""A team's deployments on a real API server with RBAC, through the deploy activities: the
workspace's allowedTargetNamespaceSelector is matched against the target Namespace's labels,
allowNamespaceCreation lets an impersonated install create its namespace, removal runs as the
ServiceAccount the release was deployed as, and the object watcher watches a team's release
as that account."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.kube import Kube, parse_kubeconfig
from activities.objectwatch import ClusterWatch
from flotilla.bundles import Bundle
from flotilla.impersonation import impersonating, service_account_user
from flotilla.models import LabelSelector
from tests.activities.conftest import CLUSTER_NAMESPACE, Engine, configmap, dump
from tests.e2e.harness import TEAM_RULES, grant_namespaced_role

# Everything with ConfigMaps but deleting them (and Helm's records: Secrets), no list/watch.
NO_DELETE: list[dict[str, object]] = [
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "verbs": ["get", "create", "update", "patch"],
    },
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]},
]


def refused(engine: Engine, bundle: Bundle, **payload: Any) -> str:
    with pytest.raises(ApplicationError) as err:
        engine.deploy(bundle, "v1", **payload)
    message = str(err.value)
    assert "\n" not in message
    return message


def namespace(engine: Engine, labels: dict[str, str] | None = None) -> str:
    name = f"{engine.namespace}-{uuid.uuid4().hex[:4]}"
    engine.cluster.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}},
    )
    return name


def test_target_namespace_must_match_the_workspace_selector(engine: Engine) -> None:
    team = LabelSelector.model_validate({"matchLabels": {"team": "a"}})
    labelled, other = namespace(engine, {"team": "a"}), namespace(engine, {"team": "b"})
    missing = f"{engine.namespace}-missing"
    try:
        cm = {"cm.yaml": dump(configmap("cfg", {"k": "v"}))}
        ok = engine.bundle(cm, fleet={"namespace": labelled})
        assert engine.deploy(ok, "v1", namespace_selector=team).changed
        assert engine.get("ConfigMap", "cfg", labelled) is not None

        wrong = engine.bundle(cm, fleet={"namespace": other})
        assert (
            f"cluster {CLUSTER_NAMESPACE}/local: target namespace {other} does not match "
            "allowedTargetNamespaceSelector team=a (its labels: "
            f"kubernetes.io/metadata.name={other}, team=b)"
        ) in refused(engine, wrong, namespace_selector=team)
        assert engine.get("ConfigMap", "cfg", other) is None

        absent = engine.bundle(cm, fleet={"namespace": missing})
        assert f"target namespace {missing} does not exist;" in refused(
            engine, absent, namespace_selector=team
        )
        assert engine.get("Namespace", missing) is None, "the namespace must not be created"
        # Without the selector the same bundle deploys there (the check is the selector's).
        assert engine.deploy(wrong, "v1").changed
    finally:
        for name in (labelled, other):
            engine.cluster.request("DELETE", f"/api/v1/namespaces/{name}")


def test_allow_namespace_creation_lets_the_account_create_its_namespace(engine: Engine) -> None:
    grant_namespaced_role(engine.cluster, engine.namespace, "deployer")
    cm = {"cm.yaml": dump(configmap("cfg", {"k": "v"}))}
    bundle = engine.bundle(cm, fleet={"serviceAccount": "deployer"})
    user = service_account_user(engine.namespace, "deployer")
    # Allowed, Helm makes the namespace as the account, which may not: Helm 4 applies the
    # Namespace server-side (a patch of the one that exists; Helm 3 created it).
    message = refused(engine, bundle, allow_namespace_creation=True)
    assert re.search(rf"forbidden: {re.escape(user)} cannot (create|patch) namespaces", message), (
        message
    )
    # Not allowed (the default), the install leaves namespaces alone and deploys.
    assert engine.deploy(bundle, "v1").changed
    assert engine.get("ConfigMap", "cfg") is not None


def test_removal_runs_as_the_account_the_release_was_deployed_as(engine: Engine) -> None:
    grant_namespaced_role(engine.cluster, engine.namespace, "deployer", TEAM_RULES)
    grant_namespaced_role(engine.cluster, engine.namespace, "limited", NO_DELETE)
    releases = {}
    for account in ("deployer", "limited"):
        bundle = engine.bundle(
            {"cm.yaml": dump(configmap(account, {"k": "v"}))},
            fleet={"serviceAccount": account, "helm": {"releaseName": account}},
        )
        engine.deploy(bundle, "v1")
        releases[account] = engine.release(bundle)
    # An account that may not delete ConfigMaps leaves them (the cluster's own credentials
    # would not), and the refusal names it.
    with pytest.raises(ApplicationError) as err:
        engine.remove(releases["limited"])
    user = service_account_user(engine.namespace, "limited")
    assert f"{user} cannot delete configmaps in namespace {engine.namespace}" in str(err.value)
    assert "\n" not in str(err.value)
    assert engine.get("ConfigMap", "limited") is not None
    # One that may, removes its release.
    engine.remove(releases["deployer"])
    engine.wait_for("the ConfigMap removed", lambda: engine.get("ConfigMap", "deployer") is None)
    assert engine.get("ConfigMap", "limited") is not None


def test_the_object_watcher_watches_a_teams_release_as_its_account(engine: Engine) -> None:
    grant_namespaced_role(engine.cluster, engine.namespace, "deployer", NO_DELETE)
    bundle = engine.bundle(
        {"cm.yaml": dump(configmap("cfg", {"k": "v"}))}, fleet={"serviceAccount": "deployer"}
    )
    engine.deploy(bundle, "v1")
    user = service_account_user(engine.namespace, "deployer")
    kubeconfig = parse_kubeconfig(engine.cluster.kubeconfig.read_text())
    messages: list[str] = []
    acted: list[str] = []
    with engine.kube() as kube:

        def act_as(who: str) -> Kube:
            acted.append(who)
            return Kube.from_kubeconfig(impersonating(kubeconfig, who))

        watch = ClusterWatch(kube, messages.append, act_as)
        try:
            watch.start()
            # The account may not list or watch ConfigMaps: its watch is refused, by name.
            engine.wait_for(
                "the account's watch refused",
                lambda: any(
                    f"forbidden: {user} cannot list configmaps in namespace {engine.namespace}" in m
                    for m in messages
                ),
            )
            assert f"v1/ConfigMap as {user} in {engine.namespace}" in watch.kinds()
            assert user in acted
            grant_namespaced_role(
                engine.cluster,
                engine.namespace,
                "deployer",
                [*NO_DELETE, {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}],
            )
            time.sleep(1.0)
            engine.wait_for(
                "the account's watch open", lambda: _edit_seen(engine, watch, bundle.name), 90
            )
        finally:
            watch.stop()


def _edit_seen(engine: Engine, watch: ClusterWatch, bundle: str) -> bool:
    """Edit the ConfigMap by hand and look for the watch's report of it."""
    path = f"/api/v1/namespaces/{engine.namespace}/configmaps/cfg"
    cfg = engine.cluster.request("GET", path)
    cfg["data"] = {"k": f"by hand {time.monotonic()}"}
    engine.cluster.request("PUT", path, cfg)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        changed = watch.take_changes().get(bundle, [])
        if f"ConfigMap/{engine.namespace}/cfg changed" in changed:
            return True
        time.sleep(0.2)
    return False
