"""Deploys whose charts come from private repositories, and whose files are SOPS-encrypted.

The credentials' secret names travel in the DeployRequest; the activity reads the secrets
from the store, and nothing secret comes back in a result, an error or a log line.
"""

from __future__ import annotations

import base64
import logging
import re

import pytest
import yaml
from temporalio.exceptions import ApplicationError

from devenv.registry import BASIC_PASSWORD, BASIC_USER
from flotilla.credentials import SOPS_AGE_SECRET, RenderSecretRefs
from tests.activities.conftest import CLUSTER_NAMESPACE, Engine
from tests.activities.test_deploy import CHART_FILES
from tests.charts import AgeKey, ChartServer, sops_encrypt
from tests.conftest import CHART_PASSWORD, CHART_USER, locate

SECRET = "helm-creds"
API_TOKEN = "api-token-Rw52m"


def helm_secret(regex: str) -> RenderSecretRefs:
    return RenderSecretRefs(
        namespace=CLUSTER_NAMESPACE, helm_secret_name=SECRET, helm_repo_url_regex=regex
    )


def test_chart_from_a_private_repository_is_deployed(
    engine: Engine, private_chart_server: ChartServer
) -> None:
    engine.secrets.put(
        CLUSTER_NAMESPACE, SECRET, {"username": CHART_USER, "password": CHART_PASSWORD}
    )
    helm = {"repo": private_chart_server.url, "chart": "private", "version": "1.0.0"}
    bundle = engine.bundle({}, fleet={"helm": {**helm, "releaseName": "private"}})

    result = engine.deploy(
        bundle, "p1", render_secrets=helm_secret(re.escape(private_chart_server.url))
    )

    assert result.changed and result.release.revision == 1
    (listed,) = engine.releases()
    assert listed["chart"] == "private-1.0.0"
    assert engine.get("ConfigMap", "private-info") is not None


def test_chart_from_a_private_oci_registry_is_deployed_and_a_bad_password_is_one_line(
    engine: Engine, private_oci_registry: str
) -> None:
    engine.secrets.put(
        CLUSTER_NAMESPACE, SECRET, {"username": BASIC_USER, "password": "bad-pw-0815"}
    )
    helm = {"chart": f"{private_oci_registry}/private", "version": "1.0.0"}
    bundle = engine.bundle({}, fleet={"helm": {**helm, "releaseName": "private"}})

    with pytest.raises(ApplicationError) as failed:
        engine.deploy(bundle, "o1", render_secrets=helm_secret("oci://"))
    assert failed.value.type == "InvalidBundle" and failed.value.non_retryable
    assert "helm registry login 127.0.0.1:" in failed.value.message
    assert failed.value.message.endswith(f"(credentials from secret {CLUSTER_NAMESPACE}/{SECRET})")
    assert "bad-pw-0815" not in failed.value.message

    engine.secrets.put(
        CLUSTER_NAMESPACE, SECRET, {"username": BASIC_USER, "password": BASIC_PASSWORD}
    )
    result = engine.deploy(bundle, "o1", render_secrets=helm_secret("oci://"))

    assert result.changed
    assert engine.get("ConfigMap", "private-info") is not None


def test_sops_files_are_decrypted_for_the_deploy_and_never_shown(
    engine: Engine, age_key: AgeKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sops = locate("sops")
    # The key lives in the GitRepo's namespace; without render_secrets that is the cluster's.
    engine.secrets.put(CLUSTER_NAMESPACE, SOPS_AGE_SECRET, {"age.agekey": age_key.identity})
    values = sops_encrypt(sops, yaml.safe_dump({"token": API_TOKEN}), age_key.recipient)
    secret_template = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\n"
        "data:\n  token: {{ .Values.token | b64enc }}\n"
    )
    fleet = {"helm": {"valuesFiles": ["secrets.yaml"]}}
    good = engine.bundle(
        {**CHART_FILES, "templates/secret.yaml": secret_template, "secrets.yaml": values},
        fleet=fleet,
    )
    # A chart that fails with the decrypted value in helm's message.
    failing = '{{ fail (printf "bad token %s" .Values.token) }}\n'
    bad = engine.bundle(
        {**CHART_FILES, "templates/bad.yaml": failing, "secrets.yaml": values}, fleet=fleet
    )

    engine.deploy(good, "s1")
    with pytest.raises(ApplicationError) as failed:
        engine.deploy(bad, "s2")

    live = engine.get("Secret", "api")
    assert live is not None and base64.b64decode(live["data"]["token"]).decode() == API_TOKEN
    assert "bad token [redacted]" in failed.value.message
    assert caplog.records, "the activities log at all"
    assert API_TOKEN not in caplog.text + failed.value.message
