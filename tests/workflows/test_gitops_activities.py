"""The GitOps activities against a real git daemon, outside any workflow."""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import ActivityEnvironment

from activities.content import FileContentStore
from activities.gitops import GitOpsActivities
from activities.gitops_models import FetchRequest, GitSource, LsRemoteRequest
from activities.secrets import FileSecretStore
from devenv.gitserver import GitDaemon

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"


def test_fetch_falls_back_to_the_branch_head_when_the_commit_is_gone(
    git_daemon: GitDaemon, repo_name: str, tmp_path: Path
) -> None:
    url = git_daemon.create_repo(repo_name, {"a/cm.yaml": CM, "a/fleet.yaml": "{}\n"})
    content = FileContentStore(tmp_path / "content")
    gitops = GitOpsActivities(None, FileSecretStore(tmp_path / "secrets"), content, tmp_path / "w")
    env = ActivityEnvironment()
    source = GitSource(repo=url, branch="main")
    head = env.run(gitops.ls_remote, LsRemoteRequest(source=source)).commit
    # A commit the server does not have (force-pushed away): the branch head is read instead.
    gone = "0" * 40
    result = env.run(
        gitops.fetch_bundles,
        FetchRequest(namespace="ns", gitrepo="r", source=source, commit=gone),
    )
    assert result.commit == head
    (bundle,) = result.bundles
    assert bundle.name == "r-a" and content.has(bundle.digest)
    exact = env.run(
        gitops.fetch_bundles, FetchRequest(namespace="ns", gitrepo="r", source=source, commit=head)
    )
    assert exact.commit == head and exact.bundles[0].digest == bundle.digest
