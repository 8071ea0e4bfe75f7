"""Whether a rollout is done: a GitRepo's or bundle's status as a line and a verdict.

``flotilla rollout status`` asks a status query every second and prints the line whenever
it changes; the verdict says when to stop. Ready ends it (success), ErrApplied, a halted
rollout (Halted) or a GitRepo that cannot read git ends it (failure, with the reason); every
other state is progress.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from flotilla.status import BundleState, RepoState


class Verdict(StrEnum):
    READY = "ready"
    FAILED = "failed"
    WAITING = "waiting"


_FAILED = {BundleState.ERR_APPLIED.value, RepoState.GIT_ERROR.value, RepoState.HALTED.value}


@dataclass(frozen=True)
class Progress:
    line: str
    verdict: Verdict
    reason: str = ""


@dataclass(frozen=True)
class Part:
    """One bundle of a GitRepo, or one cluster of a bundle, as the status shows it."""

    name: str
    state: str
    message: str = ""


def _verdict(state: str, parts: Sequence[Part]) -> Verdict:
    if state in _FAILED:
        return Verdict.FAILED
    if state == BundleState.READY.value and all(p.state == BundleState.READY.value for p in parts):
        return Verdict.READY
    return Verdict.WAITING


def _waiting_on(parts: Sequence[Part]) -> str:
    pending = [p for p in parts if p.state != BundleState.READY.value]
    if not pending:
        return ""
    shown = ", ".join(f"{p.name} {p.state}" for p in pending[:3])
    more = f" and {len(pending) - 3} more" if len(pending) > 3 else ""
    return f"; waiting on {shown}{more}"


def gitrepo_progress(
    name: str,
    *,
    commit: str,
    state: str,
    ready_deployments: str,
    message: str,
    error: str,
    bundles: Sequence[Part],
) -> Progress:
    """A GitRepo's line: its commit, bundle deployments ready, state, and what it waits on."""
    if not commit:
        if error:
            return Progress(f"gitrepo {name}: {error}", Verdict.WAITING)
        return Progress(f"gitrepo {name}: waiting for the first commit", Verdict.WAITING)
    verdict = _verdict(state, bundles)
    failed = [p for p in bundles if p.state in _FAILED]
    reason = ""
    if verdict is Verdict.FAILED:
        reason = "; ".join(f"{p.name}: {p.message}" if p.message else p.name for p in failed)
        reason = reason or message or error or state
    line = (
        f"gitrepo {name}: commit {commit[:12]}: {ready_deployments} bundle deployments ready, "
        f"{state}" + (f" ({message})" if message and verdict is not Verdict.READY else "")
    )
    if verdict is Verdict.WAITING:
        line += _waiting_on(bundles)
    return Progress(line, verdict, reason)


def bundle_progress(
    name: str,
    *,
    commit: str,
    state: str,
    ready: int,
    desired: int,
    summary: str,
    paused: bool,
    clusters: Sequence[Part],
    halted: str = "",
) -> Progress:
    """A bundle's line: clusters ready of desired, state, rollout summary, what it waits on.
    A rollout a gate halted (``halted``: why) has failed: it will not go on by itself."""
    verdict = Verdict.FAILED if halted else _verdict(state, clusters)
    reason = halted
    if verdict is Verdict.FAILED and not reason:
        failed = [p for p in clusters if p.state in _FAILED]
        reason = "; ".join(f"{p.name}: {p.message}" if p.message else p.name for p in failed)
        reason = reason or summary or state
    line = (
        f"bundle {name}: commit {commit[:12] or 'none'}: {ready}/{desired} clusters ready, {state}"
        + (", paused" if paused else "")
        + (f" ({summary})" if summary else "")
    )
    if verdict is Verdict.WAITING:
        line += _waiting_on(clusters)
    return Progress(line, verdict, reason)
