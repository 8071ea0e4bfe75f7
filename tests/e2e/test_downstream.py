"""downstreamResources: a Secret and a ConfigMap of the workspace reach two clusters before the
bundle deploys (its valuesFrom reads them there), a changed ConfigMap re-deploys only the
bundle that uses it, a missing one is that bundle's one-line error, and removal deletes the
copies. No secret value enters workflow history."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from tests.e2e.harness import Flotilla, gitrepo_yaml, helm_history, history_text

CHART = "apiVersion: v2\nname: {name}\nversion: 0.1.0\n"
TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: out}
data:
  greeting: {{ .Values.greeting | default "none" | quote }}
  token: {{ .Values.token | default "none" | quote }}
"""
TOKEN = "s3cr3t-downstream-token"
CLUSTERS = ("east", "west")


def _fleet_yaml(prefix: str, bundle: str, resources: list[tuple[str, str]]) -> str:
    lines = ["downstreamResources:"]
    lines += [f"  - {{kind: {kind}, name: {name}}}" for kind, name in resources]
    lines += ["helm:", "  valuesFrom:"]
    for kind, name in resources:
        ref = "configMapKeyRef" if kind == "ConfigMap" else "secretKeyRef"
        lines.append(f"    - {ref}: {{name: {name}, key: values.yaml}}")
    lines.append("targetCustomizations:")
    for cluster in CLUSTERS:
        lines += [f"  - clusterName: {cluster}", f"    namespace: {prefix}-{bundle}-{cluster}"]
    return "\n".join(lines) + "\n"


def _revisions(cluster: LocalCluster, release: str, namespace: str) -> int:
    return len(helm_history(cluster.kubeconfig, release, namespace))


async def test_downstream_resources_are_copied_kept_in_sync_and_removed(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    ns = flotilla.namespace
    store = flotilla.control.secrets
    store.put(ns, "creds", {"values.yaml": f"token: {TOKEN}\n"})
    store.put_config_map(ns, "settings", {"values.yaml": "greeting: hello\n"})
    files: dict[str, str | bytes] = {}
    bundles = {
        "app": [("Secret", "creds"), ("ConfigMap", "settings")],
        "other": [("Secret", "creds")],
        "broken": [("ConfigMap", "nowhere")],
    }
    for bundle, resources in bundles.items():
        files[f"{bundle}/Chart.yaml"] = CHART.format(name=bundle)
        files[f"{bundle}/templates/out.yaml"] = TEMPLATE
        files[f"{bundle}/fleet.yaml"] = _fleet_yaml(prefix, bundle, resources)
    url = git_daemon.create_repo(repo_name, files)
    kubeconfig = local_cluster.kubeconfig.read_text()

    def get(path: str) -> dict[str, Any]:
        found: dict[str, Any] = local_cluster.request("GET", f"/api/v1/namespaces/{path}")
        return found

    def gone(path: str) -> bool:
        try:
            get(path)
        except Exception:
            return True
        return False

    try:
        for cluster in CLUSTERS:
            await flotilla.control.add_cluster(ns, cluster, kubeconfig)
        await flotilla.worker.refresh_clusters()
        await flotilla.control.apply_text(
            gitrepo_yaml(ns, "dsr", url, targets=[{"clusterSelector": {}}]), file="g.yaml"
        )
        status = await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "dsr"),
            lambda s: (
                s.ready_bundle_deployments == "4/6"
                and any(b.name == "dsr-broken" and b.state == "ErrApplied" for b in s.bundles)
            ),
            timeout=240,
        )
        broken = next(b for b in status.bundles if b.name == "dsr-broken")
        print("broken bundle:", broken)
        assert f"ConfigMap {ns}/nowhere does not exist in the secret store" in status.message
        for cluster in CLUSTERS:
            app = f"{prefix}-app-{cluster}"
            out = get(f"{app}/configmaps/out")["data"]
            assert out == {"greeting": "hello", "token": TOKEN}
            copied = get(f"{app}/configmaps/settings")
            assert copied["data"] == {"values.yaml": "greeting: hello\n"}
            labels = copied["metadata"]["labels"]
            assert labels["flotilla.io/downstream-bundle"] == "dsr-app"
            assert get(f"{app}/secrets/creds")["type"] == "Opaque"
            other = f"{prefix}-other-{cluster}"
            assert get(f"{other}/configmaps/out")["data"] == {"greeting": "none", "token": TOKEN}
            assert gone(f"{other}/configmaps/settings")
        before = {
            (bundle, cluster): _revisions(
                local_cluster, f"dsr-{bundle}", f"{prefix}-{bundle}-{cluster}"
            )
            for bundle in ("app", "other")
            for cluster in CLUSTERS
        }
        assert set(before.values()) == {1}

        # A changed ConfigMap reaches both clusters without a commit; only "app" uses it.
        store.put_config_map(ns, "settings", {"values.yaml": "greeting: bonjour\n"})
        for cluster in CLUSTERS:
            await flotilla.eventually(
                _probe(get, f"{prefix}-app-{cluster}/configmaps/out"),
                lambda out: out.get("greeting") == "bonjour",
                timeout=180,
            )
            assert get(f"{prefix}-app-{cluster}/configmaps/settings")["data"] == {
                "values.yaml": "greeting: bonjour\n"
            }
        for cluster in CLUSTERS:
            assert _revisions(local_cluster, "dsr-app", f"{prefix}-app-{cluster}") == 2
            assert _revisions(local_cluster, "dsr-other", f"{prefix}-other-{cluster}") == 1

        # Creating the missing ConfigMap lets the broken bundle deploy.
        store.put_config_map(ns, "nowhere", {"values.yaml": "greeting: found\n"})
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "dsr"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "6/6",
            timeout=180,
        )

        texts = []
        async for wf in flotilla.client.list_workflows(f"WorkflowId STARTS_WITH 'bundle/{ns}/'"):
            handle = flotilla.client.get_workflow_handle(wf.id, run_id=wf.run_id)
            texts.append(history_text(await handle.fetch_history()))
        assert texts and not any(TOKEN in text or "bonjour" in text for text in texts)

        # Removing the bundles removes their copies (the workspace's objects stay).
        await flotilla.control.delete_gitrepo(ns, "dsr")
        for cluster in CLUSTERS:
            for bundle, resources in bundles.items():
                for kind, name in resources:
                    plural = "configmaps" if kind == "ConfigMap" else "secrets"
                    assert gone(f"{prefix}-{bundle}-{cluster}/{plural}/{name}")
        assert store.get_config_map(ns, "settings") == {"values.yaml": "greeting: bonjour\n"}
    finally:
        for bundle in bundles:
            for cluster in CLUSTERS:
                with contextlib.suppress(Exception):
                    local_cluster.request(
                        "DELETE", f"/api/v1/namespaces/{prefix}-{bundle}-{cluster}"
                    )


def _probe(
    get: Callable[[str], dict[str, Any]], path: str
) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def probe() -> dict[str, Any]:
        data: dict[str, Any] = get(path)["data"]
        return data

    return probe
