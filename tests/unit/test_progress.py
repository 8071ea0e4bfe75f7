"""The verdict and line of `flotilla rollout status`, state in, line and verdict out."""

from __future__ import annotations

import pytest

from flotilla.progress import Part, Verdict, bundle_progress, gitrepo_progress

SHA = "0123456789abcdef" * 2


def repo(state: str, bundles: list[Part], **fields: str) -> tuple[str, Verdict, str]:
    p = gitrepo_progress(
        "ns/repo",
        commit=fields.get("commit", SHA),
        state=state,
        ready_deployments=fields.get("ready", "1/2"),
        message=fields.get("message", ""),
        error=fields.get("error", ""),
        bundles=bundles,
    )
    return p.line, p.verdict, p.reason


@pytest.mark.parametrize(
    ("state", "bundles", "verdict"),
    [
        ("Ready", [Part("a", "Ready"), Part("b", "Ready")], Verdict.READY),
        ("Ready", [], Verdict.READY),
        ("NotReady", [Part("a", "Ready"), Part("b", "NotReady")], Verdict.WAITING),
        # A summary that says Ready while a bundle still waits is not done.
        ("Ready", [Part("a", "Ready"), Part("b", "Pending")], Verdict.WAITING),
        ("WaitingForDependency", [Part("a", "WaitingForDependency")], Verdict.WAITING),
        ("Modified", [Part("a", "Modified")], Verdict.WAITING),
        ("ErrApplied", [Part("a", "Ready"), Part("b", "ErrApplied", "bad")], Verdict.FAILED),
        ("GitError", [], Verdict.FAILED),
    ],
)
def test_gitrepo_verdict(state: str, bundles: list[Part], verdict: Verdict) -> None:
    assert repo(state, bundles)[1] is verdict


def test_failure_reason_names_the_failed_bundles() -> None:
    _, verdict, reason = repo(
        "ErrApplied", [Part("a", "ErrApplied", "helm: boom"), Part("b", "ErrApplied")]
    )
    assert verdict is Verdict.FAILED and reason == "a: helm: boom; b"


def test_lines_say_what_is_waited_on() -> None:
    line, _, _ = repo(
        "NotReady",
        [Part(n, "NotReady") for n in "abcde"] + [Part("z", "Ready")],
        message="a: not ready",
    )
    assert line == (
        f"gitrepo ns/repo: commit {SHA[:12]}: 1/2 bundle deployments ready, NotReady "
        "(a: not ready); waiting on a NotReady, b NotReady, c NotReady and 2 more"
    )
    assert repo("Ready", [])[0].endswith("bundle deployments ready, Ready")


def test_no_commit_yet_waits_and_shows_the_git_error() -> None:
    line, verdict, _ = repo("Pending", [], commit="", error="branch 'x' not found")
    assert verdict is Verdict.WAITING and line == "gitrepo ns/repo: branch 'x' not found"
    assert repo("Pending", [], commit="")[0].endswith("waiting for the first commit")


def test_bundle_lines() -> None:
    p = bundle_progress(
        "ns/b",
        commit=SHA,
        state="NotReady",
        ready=1,
        desired=2,
        summary="partition 1/2",
        paused=True,
        clusters=[Part("dev", "Ready"), Part("prod", "WaitApplied")],
    )
    assert p.verdict is Verdict.WAITING
    assert p.line == (
        f"bundle ns/b: commit {SHA[:12]}: 1/2 clusters ready, NotReady, paused "
        "(partition 1/2); waiting on prod WaitApplied"
    )
    failed = bundle_progress(
        "ns/b",
        commit=SHA,
        state="ErrApplied",
        ready=0,
        desired=1,
        summary="",
        paused=False,
        clusters=[Part("prod", "ErrApplied", "helm: boom")],
    )
    assert failed.verdict is Verdict.FAILED and failed.reason == "prod: helm: boom"


def test_a_halted_bundle_fails_a_gitrepo_rollout_at_once() -> None:
    progress = gitrepo_progress(
        "ns/repo",
        commit="0123456789abcdef",
        state="Halted",
        ready_deployments="1/4",
        message="web: rollout halted: partition canary",
        error="",
        bundles=[Part("web", "Halted", "rollout halted: partition canary")],
    )
    assert progress.verdict is Verdict.FAILED
    assert progress.reason == "web: rollout halted: partition canary"
