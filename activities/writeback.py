"""The write-back activity: rewrite a scan's markers on the GitRepo's branch, commit and push.

A push the server rejects because the branch moved is not an error: the new head is fetched,
the markers are rewritten on it and the push is tried again (``MAX_PUSH_ATTEMPTS`` times), so
two image updates to the same repository both land. Credentials come from the secret store by
the GitRepo's ``clientSecretName``, through the environment git reads, never its arguments.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import git
from temporalio import activity

from activities.failures import to_application_error
from activities.gitops import GitError, GitOpsActivities
from activities.gitrun import run_git
from activities.writeback_models import WRITE_BACK, WriteBackRequest, WriteBackResult
from flotilla.imagepolicy import ImageUpdate
from flotilla.markers import rewrite_markers
from flotilla.models import CommitSpec

MAX_PUSH_ATTEMPTS = 5
DEFAULT_AUTHOR_NAME = "flotilla-imagescan"
DEFAULT_AUTHOR_EMAIL = "imagescan@flotilla.invalid"
GIT_TIMEOUT_SECONDS = 300
_REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "cannot lock ref", "stale info")


def commit_message(request: WriteBackRequest) -> str:
    """``imageScanCommit.messageTemplate`` (taken literally) or a default subject, plus a line
    that says exactly what changed."""
    update = request.update
    new = update.tag + (f"@{update.digest}" if update.digest else "")
    subject = (request.commit.message_template if request.commit else None) or (
        f"Update image {update.image} to {update.tag}"
    )
    detail = (
        f"imagescan {request.gitrepo}/{request.bundle}/{request.scan}: "
        f"{update.image} {request.previous or '(none)'} -> {new}"
    )
    return f"{subject}\n\n{detail}\n"


class WriteBackActivities:
    """Git write-back; borrows the GitOps activities' credential handling."""

    def __init__(self, gitops: GitOpsActivities, workdir: Path) -> None:
        self.gitops = gitops
        self.workdir = workdir

    @activity.defn(name=WRITE_BACK)
    def write_back(self, request: WriteBackRequest) -> WriteBackResult:
        """Clone the branch shallowly, rewrite, commit and push; rebase-by-rewrite on a race."""
        source = request.source
        self.workdir.mkdir(parents=True, exist_ok=True)
        checkout = Path(tempfile.mkdtemp(prefix="writeback-", dir=self.workdir))
        try:
            with self.gitops.git_env(source) as git_env:
                env = {**os.environ, **git_env, **self._identity(request.commit)}
                return self._write(request, checkout, env)
        finally:
            shutil.rmtree(checkout, ignore_errors=True)

    @staticmethod
    def _identity(spec: CommitSpec | None) -> dict[str, str]:
        name = (spec.author_name if spec else None) or DEFAULT_AUTHOR_NAME
        email = (spec.author_email if spec else None) or DEFAULT_AUTHOR_EMAIL
        return {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }

    def _run(self, repo: git.Repo, args: list[str], env: dict[str, str], what: str) -> str:
        try:
            return run_git(
                ["git", *args], env=env, cwd=repo.working_dir, timeout=GIT_TIMEOUT_SECONDS
            )
        except git.GitCommandError as err:
            stderr = err.stderr if isinstance(err.stderr, str) else str(err)
            raise _GitFailed(what, " ".join(stderr.split())) from None

    def _write(
        self, request: WriteBackRequest, checkout: Path, env: dict[str, str]
    ) -> WriteBackResult:
        source = request.source
        branch = source.branch
        repo = git.Repo.init(checkout)
        updates = {request.scan: request.update}
        message = commit_message(request)
        try:
            self._run(repo, ["remote", "add", "origin", source.repo], env, "remote")
            for attempt in range(1, MAX_PUSH_ATTEMPTS + 1):
                activity.heartbeat(f"attempt {attempt}: fetching {branch}")
                self._run(repo, ["fetch", "--depth", "1", "origin", branch], env, "fetch")
                self._run(repo, ["checkout", "-q", "-B", branch, "FETCH_HEAD"], env, "checkout")
                changed = _rewrite(checkout, request.files, updates)
                if not changed:
                    activity.logger.info(
                        "gitrepo %s: %s/%s already at %s, nothing to commit",
                        request.gitrepo,
                        request.bundle,
                        request.scan,
                        request.update.tag,
                    )
                    return WriteBackResult(attempts=attempt)
                self._run(repo, ["add", "--", *sorted(changed)], env, "add")
                self._run(repo, ["commit", "-q", "-m", message], env, "commit")
                activity.heartbeat(f"attempt {attempt}: pushing")
                try:
                    self._run(repo, ["push", "origin", f"HEAD:refs/heads/{branch}"], env, "push")
                except _GitFailed as err:
                    if any(marker in err.stderr for marker in _REJECTED):
                        activity.logger.info(
                            "gitrepo %s: %s moved during write-back, rewriting on the new head",
                            request.gitrepo,
                            branch,
                        )
                        continue
                    raise
                commit = repo.head.commit.hexsha
                activity.logger.info(
                    "gitrepo %s: %s/%s -> %s committed %s",
                    request.gitrepo,
                    request.bundle,
                    request.scan,
                    request.update.tag,
                    commit[:12],
                )
                return WriteBackResult(
                    commit=commit, changed_lines=sum(changed.values()), attempts=attempt
                )
        except _GitFailed as err:
            raise to_application_error(
                GitError(f"{source.repo}: write-back {err.what} failed: {err.stderr[:300]}")
            ) from None
        raise to_application_error(
            GitError(
                f"{source.repo}: branch {branch!r} kept moving; push rejected "
                f"{MAX_PUSH_ATTEMPTS} times"
            )
        )


class _GitFailed(Exception):
    def __init__(self, what: str, stderr: str) -> None:
        super().__init__(f"{what}: {stderr}")
        self.what = what
        self.stderr = stderr


def _rewrite(root: Path, files: list[str], updates: dict[str, ImageUpdate]) -> dict[str, int]:
    """Rewrite markers in ``files`` under ``root``; return changed lines per changed file."""
    changed: dict[str, int] = {}
    for rel in files:
        path = root / rel
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        new, count = rewrite_markers(text, updates)
        if count:
            path.write_bytes(new.encode("utf-8"))
            changed[rel] = count
    return changed
