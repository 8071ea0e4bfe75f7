"""Signed pushes of every provider sync the GitRepos that follow them, and nothing else does.

Real components: the Temporal dev server, an in-process worker, the git daemon and the
aiohttp receiver on a loopback port. The GitRepos poll with ``disablePolling: true``, so a
new commit is only seen when a webhook says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import statistics
import time

from devenv.gitserver import GitDaemon, git
from flotilla.ids import gitrepo_workflow_id
from tests.e2e.harness import gitrepo_yaml
from tests.webhooks.conftest import KEYS, SECRET, Hooked
from tests.webhooks.payloads import PROVIDERS, github

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: {value}}}\n"


def web_url(git_url: str) -> str:
    """The web URL a provider would show for the git daemon's repository."""
    return git_url.replace("git://", "http://").removesuffix(".git")


async def commit_of(hooked: Hooked, name: str) -> str:
    status = await hooked.flotilla.control.gitrepo_status(hooked.flotilla.namespace, name)
    return status.commit


async def sync_updates(hooked: Hooked, name: str) -> int:
    """How many sync_now updates the GitRepo's workflow has accepted."""
    handle = hooked.flotilla.client.get_workflow_handle(
        gitrepo_workflow_id(hooked.flotilla.namespace, name)
    )
    count = 0
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_execution_update_accepted_event_attributes"):
            attributes = event.workflow_execution_update_accepted_event_attributes
            count += attributes.accepted_request.input.name == "sync_now"
    return count


async def test_signed_pushes_of_every_provider_sync_the_gitrepo_that_follows_them(
    hooked: Hooked, git_daemon: GitDaemon, repo_name: str
) -> None:
    fl = hooked.flotilla
    ns = fl.namespace
    url = git_daemon.create_repo(repo_name, {"cm.yaml": CM.format(name="cm", value=0)})
    work = git_daemon.working_copy(repo_name)
    # Two GitRepos of the same repository, one on main and one on another branch; and one of
    # another repository, which no push here may touch.
    other = git_daemon.create_repo(repo_name + "-other", {"cm.yaml": CM.format(name="o", value=0)})
    git("push", "origin", "HEAD:dev", cwd=work)
    for name, repo, branch in (
        ("main", url, "main"),
        ("dev", url, "dev"),
        ("other", other, "main"),
    ):
        text = gitrepo_yaml(ns, name, repo, disablePolling=True).replace(
            "branch: main", f"branch: {branch}"
        )
        await fl.control.apply_text(text, file="gitrepo.yaml")
    first = git("rev-parse", "HEAD", cwd=work).strip()
    for name in ("main", "dev"):
        await fl.eventually(lambda n=name: commit_of(hooked, n), lambda c: c == first)  # type: ignore[misc]
    other_first = await fl.eventually(lambda: commit_of(hooked, "other"), bool)

    latencies = []
    for index, provider in enumerate(sorted(PROVIDERS), start=1):
        sha = git_daemon.commit(
            work, {"cm.yaml": CM.format(name="cm", value=index)}, message=provider
        )
        # Polling is off: the new commit is not seen without the webhook.
        await asyncio.sleep(1.5 if index == 1 else 0)
        assert await commit_of(hooked, "main") != sha
        headers, body = PROVIDERS[provider](web_url(url), "refs/heads/main", sha, KEYS[provider])
        started = time.monotonic()
        status, text = await hooked.post(headers, body)
        assert (status, text.strip()) == (200, f"syncing gitrepo {ns}/main"), provider
        await fl.eventually(lambda: commit_of(hooked, "main"), lambda c: c == sha, interval=0.05)  # noqa: B023
        latencies.append(time.monotonic() - started)
    print(
        f"webhook to new commit in status: median {statistics.median(latencies):.2f}s, "
        f"max {max(latencies):.2f}s over {len(latencies)} pushes"
    )
    # The dev branch and the other repository were never told to sync.
    assert await commit_of(hooked, "dev") == first
    assert await commit_of(hooked, "other") == other_first
    assert await sync_updates(hooked, "dev") == 0
    assert await sync_updates(hooked, "other") == 0
    # The same push again: the GitRepo already has that commit, nothing syncs.
    status, text = await hooked.post(*github(web_url(url), "refs/heads/main", sha, KEYS["github"]))
    assert status == 202 and "already at that commit" in text


async def test_a_moved_tag_syncs_the_gitrepo_pinned_to_it(
    hooked: Hooked, git_daemon: GitDaemon, repo_name: str
) -> None:
    fl = hooked.flotilla
    url = git_daemon.create_repo(repo_name, {"cm.yaml": CM.format(name="cm", value=0)})
    work = git_daemon.working_copy(repo_name)
    git("tag", "v1", cwd=work)
    git("push", "origin", "v1", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work).strip()
    text = gitrepo_yaml(fl.namespace, "pinned", url, revision="v1", disablePolling=True)
    await fl.control.apply_text(text, file="gitrepo.yaml")
    await fl.eventually(lambda: commit_of(hooked, "pinned"), lambda c: c == first)

    moved = git_daemon.commit(work, {"cm.yaml": CM.format(name="cm", value=1)}, message="m")
    # A push to the branch does not move the tag the GitRepo is pinned to.
    status, _ = await hooked.post(*github(web_url(url), "refs/heads/main", moved, KEYS["github"]))
    assert status == 202
    git("tag", "-f", "v1", cwd=work)
    git("push", "-f", "origin", "v1", cwd=work)
    headers, body = PROVIDERS["gitlab"](web_url(url), "refs/tags/v1", moved, KEYS["gitlab"])
    status, text = await hooked.post(headers, body)
    assert status == 200, text
    await fl.eventually(lambda: commit_of(hooked, "pinned"), lambda c: c == moved)


async def test_bad_signatures_unknown_repos_junk_and_floods_are_refused(
    hooked: Hooked, git_daemon: GitDaemon, repo_name: str, caplog: object
) -> None:
    fl = hooked.flotilla
    url = git_daemon.create_repo(repo_name, {"cm.yaml": CM.format(name="cm", value=0)})
    await fl.control.apply_text(
        gitrepo_yaml(fl.namespace, "repo", url, disablePolling=True), file="gitrepo.yaml"
    )
    first = await fl.eventually(lambda: commit_of(hooked, "repo"), bool)
    sha = git_daemon.commit(
        git_daemon.working_copy(repo_name), {"cm.yaml": CM.format(name="cm", value=1)}, message="x"
    )
    web = web_url(url)

    answers: dict[str, tuple[int, str]] = {}
    for provider in sorted(PROVIDERS):
        headers, body = PROVIDERS[provider](web, "refs/heads/main", sha, "intruder:guess")
        answers[provider] = await hooked.post(headers, body)
    headers, body = github(web, "refs/heads/main", sha, KEYS["github"])
    answers["tampered"] = await hooked.post(headers, body.replace(b'"main"', b'"prod"'))
    del headers["X-Hub-Signature-256"]
    answers["unsigned"] = await hooked.post(headers, body)
    assert {k: v[0] for k, v in answers.items()} == dict.fromkeys(answers, 401)

    # Unknown repository: accepted with a note.
    status, text = await hooked.post(
        *github("https://github.com/nobody/nothing", "refs/heads/main", sha, KEYS["github"])
    )
    assert status == 202 and "no GitRepo follows https://github.com/nobody/nothing" in text
    # Junk, signed (so it reaches the parser): 400 with one line.
    junk = b"{this is not json"
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + _sign(junk)}
    status, text = await hooked.post(headers, junk)
    assert status == 400 and text.count("\n") == 1 and "not JSON" in text
    status, text = await hooked.post({"Content-Type": "application/json"}, b"{}")
    assert status == 400 and "known git provider" in text
    # Oversized (the fixture's limit is 64 KiB): refused before it is read.
    big = b'{"pad": "' + b"x" * 200_000 + b'"}'
    status, _ = await hooked.post({"X-GitHub-Event": "push"}, big)
    assert status == 413
    # A flood: 200 concurrent signed pushes for an unknown repository, four at a time.
    flood = github("https://github.com/nobody/flood", "refs/heads/main", sha, KEYS["github"])
    started = time.monotonic()
    results = await asyncio.gather(*(hooked.post(*flood) for _ in range(200)))
    elapsed = time.monotonic() - started
    codes = sorted({code for code, _ in results})
    assert set(codes) <= {202, 503} and 202 in codes, codes
    print(f"flood: 200 requests in {elapsed:.2f}s, answers {codes}")

    # Nothing above synced the GitRepo, and the receiver still works.
    assert await commit_of(hooked, "repo") == first
    assert await sync_updates(hooked, "repo") == 0
    status, _ = await hooked.post(*github(web, "refs/heads/main", sha, KEYS["github"]))
    assert status == 200
    await fl.eventually(lambda: commit_of(hooked, "repo"), lambda c: c == sha)
    # No secret value ever reaches an answer or a log line.
    logged = " ".join(r.getMessage() for r in caplog.records)  # type: ignore[attr-defined]
    for value in SECRET.values():
        assert all(value not in text for _, text in answers.values())
        assert value not in logged


def _sign(body: bytes) -> str:
    return hmac.new(SECRET["github"].encode(), body, hashlib.sha256).hexdigest()
