"""Version pins in GitRepoWorkflow against a real git daemon and Temporal: `flotilla rollback`
--previous, --to (full and abbreviated), refusals, --clear, --until-next-commit, a bundle's
pin. Without clusters (what runs where is tests/e2e/test_rollback.py); every poll here is 1 s
apart, so "the pin survives the next poll" is seen many times over."""

from __future__ import annotations

import asyncio

import pytest

from devenv.gitserver import GitDaemon
from flotilla.errors import FlotillaError
from starters.tables import describe_bundle, describe_gitrepo
from tests.e2e.harness import Flotilla, gitrepo_yaml
from workflows.gitrepo_models import GitRepoStatus, RollbackRequest

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n"


def _rollback(**fields: object) -> RollbackRequest:
    return RollbackRequest.model_validate({"user": "alice", **fields})


async def _at(flotilla: Flotilla, commit: str, name: str = "repo") -> GitRepoStatus:
    return await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(flotilla.namespace, name),
        lambda s: s.commit == commit and s.state == "Ready",
    )


async def test_rollback_pins_the_gitrepo_until_cleared_and_refuses_in_one_line(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    url = git_daemon.create_repo(repo_name, {"a/cm.yaml": CM.format(name="v1"), "a/fleet.yaml": ""})
    work = git_daemon.working_copy(repo_name)
    ns = flotilla.namespace
    control = flotilla.control
    await control.apply_text(gitrepo_yaml(ns, "repo", url), file="gitrepo.yaml")
    first = (
        await flotilla.eventually(
            lambda: control.gitrepo_status(ns, "repo"), lambda s: s.state == "Ready"
        )
    ).commit
    with pytest.raises(FlotillaError, match="has no earlier version that was Ready"):
        await control.rollback(ns, "gitrepo", "repo", _rollback(previous=True))
    second = git_daemon.commit(work, {"a/cm.yaml": CM.format(name="v2")}, message="two")
    await _at(flotilla, second)
    # A commit that changes nothing deployed is no version of its own for --previous.
    third = git_daemon.commit(work, {"README": "docs\n"}, message="docs only")
    await _at(flotilla, third)

    message = await control.rollback(
        ns, "gitrepo", "repo", _rollback(previous=True, reason="v2 is broken")
    )
    assert message == (
        f"gitrepo of {ns}/repo: pinned to {first[:12]} by alice: v2 is broken; lifted by --clear"
    )
    status = await _at(flotilla, first)
    assert status.head == third and status.pins == [message.split(": ", 1)[1]]
    described = describe_gitrepo(status)
    assert f"Pinned:      pinned to {first[:12]} by alice" in described
    assert f"Branch head: {third}" in described
    assert "bundle repo-a: pinned" not in described
    bundle = await control.bundle_status(ns, "repo-a")
    assert bundle.commit == first and bundle.pin.startswith(f"pinned to {first[:12]}")
    assert "Pinned:      pinned to" in describe_bundle(bundle)

    # The next polls (1 s apart) and a new commit do not undo it.
    fourth = git_daemon.commit(work, {"a/cm.yaml": CM.format(name="v4")}, message="four")
    await control.sync_gitrepo(ns, "repo")
    await asyncio.sleep(3)
    status = await control.gitrepo_status(ns, "repo")
    assert (status.commit, status.head) == (first, fourth)

    # Refusals: one line each, and nothing changes.
    for request, refusal in (
        (_rollback(to="deadbeef"), "commit 'deadbeef' not found in main"),
        (_rollback(to="main~1"), "--to: 'main~1' is not a commit"),
        (_rollback(to=first, previous=True), "give exactly one of"),
        (_rollback(clear=True, bundle="repo-a"), "bundle repo-a is not pinned"),
    ):
        with pytest.raises(FlotillaError) as err:
            await control.rollback(ns, "gitrepo", "repo", request)
        assert refusal in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FlotillaError, match="not found"):
        await control.rollback(ns, "bundle", "nope", _rollback(to=first))

    # An abbreviated commit is found in the branch's history.
    message = await control.rollback(ns, "gitrepo", "repo", _rollback(to=second[:7]))
    assert f"pinned to {second[:12]}" in message
    await _at(flotilla, second)

    # --clear: the branch head rolls out again.
    message = await control.rollback(ns, "gitrepo", "repo", _rollback(clear=True))
    assert message == (
        f"gitrepo of {ns}/repo: pin to {second[:12]} lifted; the branch head rolls out again"
    )
    status = await _at(flotilla, fourth)
    assert status.pins == [] and status.message == ""

    # --until-next-commit: the branch's next commit lifts the pin by itself.
    message = await control.rollback(
        ns, "gitrepo", "repo", _rollback(previous=True, until_next_commit=True)
    )
    assert (
        f"pinned to {second[:12]}" in message and "lifted by the next commit or --clear" in message
    )
    await _at(flotilla, second)
    fifth = git_daemon.commit(work, {"a/cm.yaml": CM.format(name="v5")}, message="five")
    status = await _at(flotilla, fifth)
    assert status.pins == []


async def test_a_bundle_pin_holds_one_bundle_while_the_others_follow_the_branch(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    url = git_daemon.create_repo(
        repo_name,
        {
            "a/cm.yaml": CM.format(name="a1"),
            "a/fleet.yaml": "",
            "b/cm.yaml": CM.format(name="b1"),
            "b/fleet.yaml": "dependsOn: [{name: repo-a}]\n",
        },
    )
    work = git_daemon.working_copy(repo_name)
    ns = flotilla.namespace
    control = flotilla.control
    await control.apply_text(gitrepo_yaml(ns, "repo", url), file="gitrepo.yaml")
    first = (
        await flotilla.eventually(
            lambda: control.gitrepo_status(ns, "repo"), lambda s: s.state == "Ready"
        )
    ).commit
    second = git_daemon.commit(
        work,
        {"a/cm.yaml": CM.format(name="a2"), "b/cm.yaml": CM.format(name="b2")},
        message="two",
    )
    await _at(flotilla, second)

    message = await control.rollback(
        ns, "bundle", "repo-a", _rollback(previous=True, reason="a2 leaks")
    )
    assert message == (
        f"bundle repo-a of {ns}/repo: pinned to {first[:12]} by alice: a2 leaks; lifted by --clear"
    )
    # The GitRepo stays at the branch head and Ready: repo-a's report at its pinned commit is
    # current, and repo-b (which depends on repo-a) is not held by it.
    status = await flotilla.eventually(
        lambda: control.gitrepo_status(ns, "repo"),
        lambda s: s.state == "Ready" and bool(s.pins),
    )
    assert status.commit == second
    assert status.pins == [
        f"bundle repo-a: pinned to {first[:12]} by alice: a2 leaks; lifted by --clear"
    ]
    assert (await control.bundle_status(ns, "repo-a")).commit == first
    assert (await control.bundle_status(ns, "repo-b")).commit == second
    await control.rollback(ns, "bundle", "repo-a", _rollback(clear=True))
    await flotilla.eventually(
        lambda: control.bundle_status(ns, "repo-a"), lambda b: b.commit == second and not b.pin
    )
