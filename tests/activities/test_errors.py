"""Failures reach Temporal as one-line errors, retryable only when waiting can help; no secrets."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import uuid

import pytest
from temporalio.exceptions import ApplicationError, CancelledError

from activities.deploy_models import DeployRequest
from activities.secrets import kubeconfig_secret_name
from tests.activities.conftest import (
    CLUSTER_NAMESPACE,
    UNSCHEDULABLE,
    Engine,
    configmap,
    deployment,
    dump,
)
from tests.activities.test_deploy import CHART_FILES

BAD_TEMPLATE = '{{ fail (printf "refusing password %s" .Values.password) }}\n'
SECRET_TEMPLATE = """\
apiVersion: v1
kind: Secret
metadata:
  name: app-credentials
data:
  password: {{ .Values.password | b64enc }}
"""


def use_kubeconfig(engine: Engine, name: str, kubeconfig: dict[str, object]) -> None:
    engine.secrets.put(
        CLUSTER_NAMESPACE, kubeconfig_secret_name(name), {"value": json.dumps(kubeconfig)}
    )
    engine.cluster_name = name


def test_invalid_manifest_is_permanent_with_the_api_servers_message(engine: Engine) -> None:
    bundle = engine.bundle({"cfg.yaml": dump(configmap("Not_Valid", {"a": "1"}))})

    with pytest.raises(ApplicationError) as failed:
        engine.deploy(bundle, "v1")

    assert failed.value.non_retryable and failed.value.type == "InvalidManifest"
    assert 'metadata.name: Invalid value: "Not_Valid"' in failed.value.message
    assert "\n" not in failed.value.message and len(failed.value.message) <= 400


@pytest.mark.parametrize(
    ("objects", "named"),
    [
        ([{**configmap("extra", {"a": "1"}), "bogusField": 1}], ".bogusField"),
        ([deployment("web", replicas="three")], ".spec.replicas"),  # type: ignore[arg-type]
    ],
    ids=["unknown-field", "wrong-type"],
)
def test_fields_the_api_server_refuses_fail_permanently_naming_the_field(
    engine: Engine, objects: list[dict[str, object]], named: str
) -> None:
    # helm runs without its client-side OpenAPI pass (activities/helm.py): the API server's
    # field validation must still refuse these, as an InvalidManifest naming the field.
    bundle = engine.bundle({"app.yaml": dump(configmap("first", {"a": "1"}), *objects)})

    with pytest.raises(ApplicationError) as failed:
        engine.deploy(bundle, "v1")

    assert failed.value.non_retryable and failed.value.type == "InvalidManifest", failed.value
    assert named in failed.value.message
    assert "\n" not in failed.value.message and len(failed.value.message) <= 400


def test_forbidden_names_the_verb_and_resource(engine: Engine) -> None:
    ns = engine.namespace
    request = engine.cluster.request
    request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "deployer"}})
    # Enough for Helm's own records and nothing else.
    request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        {
            "metadata": {"name": "helm-records"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}],
        },
    )
    request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "deployer"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "helm-records",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}],
        },
    )
    token = request(
        "POST",
        f"/api/v1/namespaces/{ns}/serviceaccounts/deployer/token",
        {"spec": {"audiences": ["https://kubernetes.default.svc.cluster.local"]}},
    )["status"]["token"]
    kubeconfig = json.loads(engine.cluster.kubeconfig.read_text())
    kubeconfig["users"][0]["user"] = {"token": token}
    use_kubeconfig(engine, "restricted", kubeconfig)
    bundle = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})

    with pytest.raises(ApplicationError) as failed:
        engine.deploy(bundle, "v1")

    assert failed.value.non_retryable and failed.value.type == "Forbidden"
    # Kubernetes' refusal, kept to verb, resource, scope and account (flotilla.impersonation).
    assert (
        f"forbidden: system:serviceaccount:{ns}:deployer cannot get configmaps in namespace {ns}"
        in failed.value.message
    )
    assert token not in failed.value.message


def test_unreachable_cluster_is_retryable(engine: Engine) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    kubeconfig = json.loads(engine.cluster.kubeconfig.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{closed_port}"
    use_kubeconfig(engine, "away", kubeconfig)
    bundle = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})

    with pytest.raises(ApplicationError) as failed:
        engine.deploy(bundle, "v1")

    assert not failed.value.non_retryable and failed.value.type == "ClusterUnreachable"
    assert failed.value.message.startswith(
        f"cluster unreachable at https://127.0.0.1:{closed_port}"
    )
    assert engine.cluster.token not in failed.value.message


def test_chart_that_does_not_render_is_permanent_with_helms_message(engine: Engine) -> None:
    files = {**CHART_FILES, "templates/broken.yaml": "{{ .Values.missing.field }}\n"}
    bundle = engine.bundle(files)

    with pytest.raises(ApplicationError) as failed:
        engine.deploy(bundle, "v1")

    assert failed.value.non_retryable and failed.value.type == "ChartRenderFailed"
    assert "templates/broken.yaml" in failed.value.message
    assert "nil pointer evaluating interface {}.field" in failed.value.message
    assert engine.releases() == []


def test_wait_ready_times_out_as_not_ready_and_honours_cancellation(engine: Engine) -> None:
    bundle = engine.bundle({"web.yaml": dump(deployment("web", pod=UNSCHEDULABLE))})
    engine.deploy(bundle, "v1")

    timed_out = engine.wait_ready(bundle, "v1", timeout=1.5)

    assert not timed_out.ready and timed_out.non_ready
    env = engine.env()
    outcome: list[BaseException] = []

    def watch() -> None:
        try:
            env.run(engine.activities.wait_ready, engine.wait_request(bundle, "v1", 600))
        except BaseException as err:
            outcome.append(err)

    engine.heartbeats.clear()
    thread = threading.Thread(target=watch)
    thread.start()
    engine.wait_for("a heartbeat", lambda: bool(engine.heartbeats), timeout=30)
    env.cancel()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], CancelledError)


def test_no_secret_reaches_logs_or_errors(
    engine: Engine, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    password = f"pw-{uuid.uuid4().hex}"
    ns = engine.namespace
    engine.cluster.request(
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "app-values"},
            "data": {"values.yaml": base64.b64encode(f"password: {password}\n".encode()).decode()},
        },
    )
    values_from = {"helm": {"valuesFrom": [{"secretKeyRef": {"name": "app-values"}}]}}
    good = engine.bundle(
        {**CHART_FILES, "templates/secret.yaml": SECRET_TEMPLATE}, fleet=values_from
    )
    bad = engine.bundle({**CHART_FILES, "templates/bad.yaml": BAD_TEMPLATE}, fleet=values_from)

    engine.deploy(good, "v1")
    status = engine.check(good, "v1")
    with pytest.raises(ApplicationError) as failed:
        engine.deploy(bad, "v2")

    live = engine.get("Secret", "app-credentials")
    assert live is not None and base64.b64decode(live["data"]["password"]).decode() == password
    assert status.drift == []
    # Helm put the password in its error; it is scrubbed before anyone sees it.
    assert "refusing password [redacted]" in failed.value.message
    captured = capfd.readouterr()
    seen = "\n".join(
        [
            caplog.text,
            captured.out,
            captured.err,
            failed.value.message,
            str(failed.value),
            repr(status),
        ]
    )
    assert caplog.records, "the activities log at all"
    for secret in (password, base64.b64encode(password.encode()).decode(), engine.cluster.token):
        assert secret not in seen


def test_a_bad_options_payload_is_permanent_and_not_echoed(engine: Engine) -> None:
    bundle = engine.bundle({"cfg.yaml": dump(configmap("cfg", {"a": "1"}))})
    bad = engine.content.put(b'{"options": {"helm": {"values": "pw-do-not-echo"}}, "cluster": 5}')
    request = DeployRequest(
        gitrepo="t",
        bundle_name=bundle.name,
        cluster_namespace=CLUSTER_NAMESPACE,
        cluster_name=engine.cluster_name,
        deployment_id="v1",
        bundle_digest=engine.content.put_bundle(bundle),
        options_digest=bad,
    )

    with pytest.raises(ApplicationError) as failed:
        engine.env().run(engine.activities.deploy_bundle, request)

    assert failed.value.non_retryable and failed.value.type == "DeployFailed"
    assert failed.value.message == (
        f"deployment options {bad[:12]} are not a DeploymentOptions payload (2 errors)"
    )


def test_a_missing_values_from_source_names_it_and_is_permanent(engine: Engine) -> None:
    values_from = [{"configMapKeyRef": {"name": "absent", "key": "v.yaml"}}]
    bundle = engine.bundle(CHART_FILES, fleet={"helm": {"valuesFrom": values_from}})

    with pytest.raises(ApplicationError) as failed:
        engine.deploy(bundle, "v1")

    assert failed.value.non_retryable and failed.value.type == "DeployFailed"
    where = f"helm.valuesFrom: ConfigMap {engine.namespace}/absent key 'v.yaml'"
    assert failed.value.message == f"{where}: not found on the cluster"
    assert engine.releases() == []
