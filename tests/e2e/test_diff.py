"""``flotilla diff`` against a real cluster: a changed ConfigMap, a new object, a removed
object, a Secret shown without its value, and a bundle with no change; nothing is deployed."""

from __future__ import annotations

import io
import uuid

import pytest

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.errors import FlotillaError
from flotilla.livediff import Change
from starters.diff import EXIT_CHANGES, EXIT_ERROR, EXIT_SAME, print_report, run_diff
from tests.e2e.harness import Flotilla, helm_history, history_text

OLD_SECRET = "first-password-1d4e"
NEW_SECRET = "second-password-8f2a"


def configmap(name: str, namespace: str, **data: str) -> str:
    pairs = ", ".join(f"{k}: {v!r}" for k, v in data.items())
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
        f"data: {{{pairs}}}\n"
    )


def secret(namespace: str, password: str) -> str:
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: {namespace}}}\n"
        f"stringData: {{password: {password}}}\n"
    )


async def test_diff_shows_what_a_commit_would_change(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    ns = flotilla.namespace
    target = f"d{uuid.uuid4().hex[:6]}"
    url = git_daemon.create_repo(
        repo_name,
        {
            "app/settings.yaml": configmap("settings", target, level="1"),
            "app/old.yaml": configmap("old", target, key="1"),
            "app/creds.yaml": secret(target, OLD_SECRET),
            "app/fleet.yaml": f"defaultNamespace: {target}\n",
            "other/other.yaml": configmap("other", target, key="1"),
            "other/fleet.yaml": f"defaultNamespace: {target}\n",
        },
    )
    try:
        await flotilla.serve_gitrepo(
            url, {"local": local_cluster.kubeconfig.read_text()}, name="d", ready="2/2"
        )
        same = await run_diff(flotilla.control, "gitrepo", ns, "d")
        out = io.StringIO()
        assert print_report(same, out) == EXIT_SAME, out.getvalue()
        assert f"cluster {ns}/local: no change (2 bundles at" in out.getvalue()

        # The next commit goes to another branch, so the GitRepo (on main) never deploys it.
        work = git_daemon.working_copy(repo_name)
        (work / "app" / "old.yaml").unlink()
        next_commit = git_daemon.commit(
            work,
            {
                "app/settings.yaml": configmap("settings", target, level="2"),
                "app/fresh.yaml": configmap("fresh", target, key="1"),
                "app/creds.yaml": secret(target, NEW_SECRET),
            },
            message="next",
            branch="next",
        )

        report = await run_diff(flotilla.control, "gitrepo", ns, "d", commit="next")
        out = io.StringIO()
        code = print_report(report, out)
        text = out.getvalue()

        assert code == EXIT_CHANGES, text
        assert report.commit == next_commit and report.errors == []
        by_bundle = {d.bundle: d for d in report.deployments}
        assert by_bundle["d-other"].changes == [] and by_bundle["d-other"].unchanged == 1
        changes = {(c.change, c.object): c.diff for c in by_bundle["d-app"].changes}
        assert set(changes) == {
            (Change.CHANGED, f"ConfigMap {target}/settings"),
            (Change.CREATED, f"ConfigMap {target}/fresh"),
            (Change.DELETED, f"ConfigMap {target}/old"),
            (Change.CHANGED, f"Secret {target}/creds"),
        }
        diff = changes[(Change.CHANGED, f"ConfigMap {target}/settings")]
        assert "-  level: '1'" in diff and "+  level: '2'" in diff, diff
        assert changes[(Change.CHANGED, f"Secret {target}/creds")] == ""
        assert f"changed Secret {target}/creds (Secret: values not shown)" in text
        # Neither password reaches the output or the diff workflow's history.
        diffs = [
            w async for w in flotilla.client.list_workflows(f"WorkflowId STARTS_WITH 'diff/{ns}/'")
        ]
        assert len(diffs) == 2
        for wf in diffs:
            history = await flotilla.client.get_workflow_handle(wf.id).fetch_history()
            recorded = history_text(history)
            assert OLD_SECRET not in recorded and NEW_SECRET not in recorded
        for secret_value in (OLD_SECRET, NEW_SECRET):
            assert secret_value not in text

        one = await run_diff(
            flotilla.control, "bundle", ns, "d-other", commit="next", cluster="local"
        )
        assert [d.bundle for d in one.deployments] == ["d-other"]
        assert print_report(one, io.StringIO()) == EXIT_SAME
        # Nothing was deployed: the release is still at its first revision.
        kubeconfig = local_cluster.kubeconfig
        assert [h["revision"] for h in helm_history(kubeconfig, "d-app", target)] == [1]
        live = local_cluster.request("GET", f"/api/v1/namespaces/{target}/configmaps/settings")
        assert live["data"] == {"level": "1"}

        with pytest.raises(FlotillaError, match="not found"):
            await run_diff(flotilla.control, "gitrepo", ns, "nope")
        with pytest.raises(FlotillaError, match=f"cluster {ns}/nowhere not found"):
            await run_diff(flotilla.control, "gitrepo", ns, "d", cluster="nowhere")
        # A GitRepo is not a HelmOp (diff helmop: tests/e2e/test_helmops.py).
        with pytest.raises(FlotillaError, match=f"helmop {ns}/d not found"):
            await run_diff(flotilla.control, "helmop", ns, "d")
        broken = await run_diff(flotilla.control, "gitrepo", ns, "d", commit="no-such-ref")
        assert broken.errors and print_report(broken, io.StringIO()) == EXIT_ERROR
    finally:
        local_cluster.request("DELETE", f"/api/v1/namespaces/{target}")
