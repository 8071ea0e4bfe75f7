"""A GitRepo with Helm credentials and SOPS files, end to end: the secret names travel from the
GitRepo to the deploy, the secrets themselves are read there and never enter history."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import uuid

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.credentials import SOPS_AGE_SECRET
from flotilla.ids import bundle_workflow_id
from tests.charts import AgeKey, ChartServer, sops_encrypt
from tests.conftest import CHART_PASSWORD, CHART_USER, locate
from tests.e2e.harness import Flotilla, activity_calls, gitrepo_yaml

TOKEN = "sealed-token-Vb38"


async def test_private_chart_and_sops_file_from_a_gitrepo(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    private_chart_server: ChartServer,
    age_key: AgeKey,
) -> None:
    ns = flotilla.namespace
    target = f"t{uuid.uuid4().hex[:6]}"
    secret = (
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: sealed}}\n"
        f"stringData: {{token: {TOKEN}}}\n"
    )
    url = git_daemon.create_repo(
        repo_name,
        {
            "private/fleet.yaml": f"namespace: {target}\nhelm:\n  repo: {private_chart_server.url}"
            "\n  chart: private\n  version: 1.0.0\n  releaseName: private\n",
            "sealed/fleet.yaml": f"namespace: {target}\n",
            "sealed/secret.yaml": sops_encrypt(
                locate("sops"), secret, age_key.recipient, encrypted_regex="^stringData$"
            ),
        },
    )
    flotilla.control.secrets.put(
        ns, "helm-creds", {"username": CHART_USER, "password": CHART_PASSWORD}
    )
    flotilla.control.secrets.put(ns, SOPS_AGE_SECRET, {"age.agekey": age_key.identity})
    try:
        await flotilla.control.add_cluster(ns, "one", local_cluster.kubeconfig.read_text())
        await flotilla.worker.refresh_clusters()
        await flotilla.control.apply_text(
            gitrepo_yaml(
                ns,
                "priv",
                url,
                paths=["private", "sealed"],
                targets=[{"clusterSelector": {}}],
                helmSecretName="helm-creds",
                helmRepoURLRegex=re.escape(private_chart_server.url),
            ),
            file="g.yaml",
        )
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "priv"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "2/2",
        )
        info = local_cluster.request("GET", f"/api/v1/namespaces/{target}/configmaps/private-info")
        assert info["data"]["chartVersion"] == "1.0.0"
        sealed = local_cluster.request("GET", f"/api/v1/namespaces/{target}/secrets/sealed")
        assert base64.b64decode(sealed["data"]["token"]).decode() == TOKEN

        calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "priv-private"))
        (deploy,) = [c for c in calls if c.name == "deploy_bundle"]
        assert deploy.input["render_secrets"] == {
            "namespace": ns,
            "helm_secret_name": "helm-creds",
            "helm_secret_name_for_paths": None,
            "helm_repo_url_regex": re.escape(private_chart_server.url),
            "insecure_skip_tls_verify": False,
        }
        for bundle in ("priv-private", "priv-sealed"):
            calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, bundle))
            history = json.dumps([(c.input, c.result) for c in calls])
            assert CHART_PASSWORD not in history and TOKEN not in history
    finally:
        with contextlib.suppress(Exception):
            local_cluster.request("DELETE", f"/api/v1/namespaces/{target}")
