"""git daemon serves clones and takes pushes; the registry answers with digests that move."""

from __future__ import annotations

from pathlib import Path

import git

from devenv.gitserver import GitDaemon
from devenv.registry import LocalRegistry


def test_clone_from_git_daemon_and_see_new_commits(
    git_daemon: GitDaemon, repo_name: str, tmp_path: Path
) -> None:
    url = git_daemon.create_repo(repo_name, {"app/deploy.yaml": "kind: ConfigMap\n"})
    clone = git.Repo.clone_from(url, tmp_path / "clone", depth=1, branch="main")
    assert (tmp_path / "clone" / "app" / "deploy.yaml").read_text() == "kind: ConfigMap\n"
    first = clone.head.commit.hexsha
    second = git_daemon.commit(
        git_daemon.working_copy(repo_name), {"app/x.yaml": "a: 1\n"}, message="second"
    )
    remote_head = git.cmd.Git().ls_remote(url, "refs/heads/main").split()[0]
    assert remote_head == second != first


def test_registry_digest_changes_when_tag_is_repushed(
    registry: LocalRegistry, repo_name: str
) -> None:
    repository = f"demo/{repo_name}"
    pushed = registry.push_image(repository, "latest", "v1 content")
    assert registry.head_digest(repository, "latest") == pushed
    repushed = registry.push_image(repository, "latest", "v2 content")
    assert repushed != pushed
    assert registry.head_digest(repository, "latest") == repushed
    # Same content, same digest: the helper is deterministic.
    assert registry.push_image(repository, "again", "v2 content") == repushed
