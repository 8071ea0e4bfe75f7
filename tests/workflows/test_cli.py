"""The control commands end to end through ``flotilla``'s own parser, against real Temporal."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest

from activities.secrets import FileSecretStore
from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from flotilla.ids import registry_workflow_id
from starters.cli import main
from starters.get import table_from_visibility
from starters.tables import bundle_table, gitrepo_table
from tests.e2e.harness import Flotilla, gitrepo_yaml

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: s3cr3t-token-never-in-history}}]
contexts:
  - {name: main, context: {cluster: c, user: u}}
  - {name: other, context: {cluster: c, user: u}}
current-context: main
"""


async def test_control_commands(
    flotilla: Flotilla,
    git_daemon: GitDaemon,
    repo_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = flotilla.namespace
    monkeypatch.setenv("TEMPORAL_ADDRESS", flotilla.client.service_client.config.target_host)
    monkeypatch.setenv("FLOTILLA_SECRETS_DIR", str(flotilla.settings.secrets_dir))
    common = ["-n", ns, "--task-queue", flotilla.config.task_queue]

    async def flotilla_cli(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    code, out, _ = await flotilla_cli(
        "cluster",
        "add",
        "one",
        "--kubeconfig",
        str(kubeconfig),
        "--context",
        "other",
        "-l",
        "env=test",
        *common,
    )
    assert (code, out.strip()) == (0, "cluster one added")
    code, _, err = await flotilla_cli(
        "cluster", "add", "Bad_Name", "--kubeconfig", str(kubeconfig), *common
    )
    assert code == 1 and err.count("\n") == 1 and "not a valid DNS-1123 label" in err
    code, _, err = await flotilla_cli(
        "cluster", "add", "two", "--kubeconfig", str(kubeconfig), "--context", "nope", *common
    )
    assert code == 1 and err.count("\n") == 1 and "--context: 'nope'" in err
    code, out, _ = await flotilla_cli("cluster", "label", "one", "tier=a", "env-", *common)
    assert code == 0
    code, out, _ = await flotilla_cli("cluster", "list", "-o", "json", *common)
    listed = json.loads(out)
    assert [(c["name"], c["labels"]) for c in listed["clusters"]] == [("one", {"tier": "a"})]
    # The kubeconfig went to the secret store; the registry's history holds only its name.
    history = await flotilla.client.get_workflow_handle(registry_workflow_id(ns)).fetch_history()
    assert "s3cr3t-token" not in json.dumps(history.to_json_dict())
    stored = FileSecretStore(flotilla.settings.secrets_dir).get(ns, "one-kubeconfig")
    assert "current-context: other" in stored["value"]

    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepos\nmetadata: {name: x}\n")
    code, _, err = await flotilla_cli("apply", "-f", str(bad))
    assert code == 1 and err.count("\n") == 1 and "did you mean 'GitRepo'" in err

    url = git_daemon.create_repo(
        repo_name, {"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"}
    )
    good = tmp_path / "gitrepo.yaml"
    good.write_text(gitrepo_yaml(ns, "demo", url))
    code, out, _ = await flotilla_cli(
        "apply", "-f", str(good), "--task-queue", flotilla.config.task_queue
    )
    assert (code, out.strip()) == (0, f"gitrepo {ns}/demo applied")
    await flotilla.eventually(
        lambda: flotilla.control.list_bundles(ns), lambda bundles: len(bundles) == 1
    )
    code, out, _ = await flotilla_cli("get", "gitrepos", *common)
    header, row = out.strip().splitlines()
    assert header.split() == ["NAME", "REPO", "COMMIT", "BUNDLEDEPLOYMENTS-READY", "STATUS"]
    assert row.split()[:2] == ["demo", url]
    code, out, _ = await flotilla_cli("describe", "gitrepo", "demo", *common)
    assert "Bundles:" in out and "demo" in out
    assert "Conditions:" in out and "GitPolling   True" in out and "LAST-TRANSITION" in out
    code, out, _ = await flotilla_cli("describe", "cluster", "one", *common)
    assert code == 0 and out.startswith("Name:        one") and "Reachable" in out, out
    code, _, err = await flotilla_cli("describe", "cluster", "nope", *common)
    assert code == 1 and err.count("\n") == 1 and "'nope' is not registered" in err
    code, out, _ = await flotilla_cli("get", "bundles", "-o", "yaml", *common)
    assert "bundle: demo\n" in out
    code, out, _ = await flotilla_cli("sync", "gitrepo", "demo", *common)
    assert code == 0 and "synced at commit" in out
    code, out, _ = await flotilla_cli("pause", "bundle", "demo", *common)
    assert out.strip() == f"bundle {ns}/demo paused"
    await flotilla.eventually(
        lambda: flotilla.control.bundle_status(ns, "demo"), lambda b: b.paused
    )
    code, out, _ = await flotilla_cli("describe", "bundle", "demo", *common)
    assert "Paused:      true" in out
    code, out, _ = await flotilla_cli("resume", "bundle", "demo", *common)
    assert out.strip() == f"bundle {ns}/demo resumed"
    code, _, err = await flotilla_cli("describe", "bundle", "nope", *common)
    assert code == 1 and err.strip() == f"error: bundle {ns}/nope not found"
    code, out, _ = await flotilla_cli("delete", "gitrepo", "demo", *common)
    assert code == 0 and "deleted" in out
    code, out, _ = await flotilla_cli("cluster", "remove", "one", *common)
    assert (code, out.strip()) == (0, "cluster one removed")

    group = tmp_path / "group.yaml"
    group.write_text(
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: ClusterGroup\n"
        f"metadata: {{name: prod, namespace: {ns}}}\n"
        "spec: {selector: {matchLabels: {env: prod}}}\n"
    )
    code, out, _ = await flotilla_cli("apply", "-f", str(group))
    assert code == 0, out
    code, out, _ = await flotilla_cli("delete", "clustergroup", "prod", *common)
    assert (code, out.strip()) == (0, "cluster group prod removed")
    code, _, err = await flotilla_cli("delete", "clustergroup", "prod", *common)
    assert code == 1 and err.count("\n") == 1 and "prod" in err


async def test_get_tables_from_search_attributes_match_the_status_queries(
    flotilla: Flotilla,
    git_daemon: GitDaemon,
    repo_name: str,
    temporal_server: TemporalDevServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`get gitrepos|bundles` read over Temporal's HTTP API show what the queries answer.

    A cluster that cannot be reached gives the bundle a state with a message, so the message
    column is compared too. Visibility follows the workflows shortly after, hence eventually.
    """
    ns = flotilla.namespace
    monkeypatch.setenv("TEMPORAL_ADDRESS", flotilla.client.service_client.config.target_host)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    await flotilla.control.add_cluster(ns, "one", KUBECONFIG, labels={})
    url = git_daemon.create_repo(
        repo_name, {"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"}
    )
    await flotilla.control.apply_text(
        gitrepo_yaml(ns, "demo", url, targets=[{"clusterName": "one"}]), file="gitrepo.yaml"
    )

    def args(kind: str) -> argparse.Namespace:
        return argparse.Namespace(kind=kind, namespace=ns, output="table")

    async def both(kind: str) -> tuple[str | None, str]:
        repos = await flotilla.control.list_gitrepos(ns)
        bundles = await flotilla.control.list_bundles(ns)
        queried = gitrepo_table(repos) if kind == "gitrepos" else bundle_table(bundles)
        monkeypatch.setenv("TEMPORAL_HTTP_ADDRESS", temporal_server.http_address)
        fast = await asyncio.to_thread(table_from_visibility, args(kind))
        return fast, queried

    for kind in ("gitrepos", "bundles"):
        fast, queried = await flotilla.eventually(
            lambda kind=kind: both(kind),  # type: ignore[misc]
            lambda pair: pair[0] is not None and pair[0] == pair[1] and ": " in pair[1],
            timeout=60,
        )
        assert fast == queried
        # The state's reason reached the table (the cluster at 127.0.0.1:1 cannot be reached).
        assert "demo" in (fast or "") and ": " in (fast or "").splitlines()[1]

    # No HTTP API at that address: the table comes through the queries instead.
    monkeypatch.setenv("TEMPORAL_HTTP_ADDRESS", "127.0.0.1:1")
    assert await asyncio.to_thread(table_from_visibility, args("gitrepos")) is None
