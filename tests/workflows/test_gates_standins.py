"""Gates between partitions in BundleWorkflow, fast: approval (approved, rejected, expired)
and soak, with the stand-in activities of ``test_bundle_standins.py`` on the real dev server.

Stand-ins for speed and for timing control only; the same gates on real clusters, Helm and
git are in tests/e2e/test_gates.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from flotilla.errors import FlotillaError
from flotilla.models import RolloutStrategy
from flotilla.status import BundleState, RepoState
from starters.control import Control
from starters.tables import describe_bundle
from tests.e2e.harness import history_text
from tests.workflows.test_bundle_standins import Bundle, StandIns, all_ready, eventually, start
from workflows.bundle_models import BundleStatus

__all__ = ["start"]  # the fixture, used by name

CLUSTERS = ["c1", "c2", "c3", "c4"]
MAIN = ["c2", "c3", "c4"]


def _strategy(soak: str = "0s", **main: object) -> RolloutStrategy:
    return RolloutStrategy.model_validate(
        {
            "partitions": [
                {"name": "canary", "clusterName": "c1", "soakTime": soak},
                {"name": "main", "clusterSelector": {}, "requireApproval": True, **main},
            ]
        }
    )


def _control(bundle: Bundle) -> Control:
    return Control(bundle.client, secrets=None)  # type: ignore[arg-type]  # not used here


def _deployed(standins: StandIns, version: int) -> dict[str, float]:
    """cluster -> when the stand-in deploy of ``version`` started (monotonic)."""
    digest = f"{version}" * 20
    return {w.cluster: w.started for w in standins.windows if digest in w.deployment_id}


def _gate(status: BundleStatus, partition: str) -> str:
    return next((f"{g.state}: {g.message}" for g in status.gates if g.partition == partition), "")


async def test_main_waits_for_the_canary_soak_and_an_approval_for_each_version(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    standins = StandIns(clusters=CLUSTERS, strategy=_strategy(soak="2s"), ready_at_deploy=True)
    bundle = await start(standins)
    control = _control(bundle)
    for version in (1, 2):
        if version == 2:
            await bundle.release(2)
        commit = f"commit-{version}"

        def asked(s: BundleStatus, commit: str = commit) -> bool:
            return s.commit == commit and _gate(s, "main").startswith("Waiting: waiting for")

        def done(s: BundleStatus, commit: str = commit) -> bool:
            return s.commit == commit and all_ready({c.cluster: c.state for c in s.clusters})

        status = await eventually(bundle.status, asked)
        # The soak: main's approval is asked for only 2 s after the canary was Ready.
        assert time.monotonic() - _deployed(standins, version)["c1"] >= 2.0
        assert _deployed(standins, version).keys() == {"c1"}, standins.windows
        held = {c.cluster: c for c in status.clusters if c.cluster in MAIN}
        assert all(c.state is BundleState.OUT_OF_SYNC for c in held.values()), held
        assert all(
            c.message.startswith("waiting for approval of partition main: version")
            for c in held.values()
        ), held
        assert "waiting for approval of partition main" in status.summary
        assert status.state is not BundleState.ERR_APPLIED
        await asyncio.sleep(1.0)
        assert _deployed(standins, version).keys() == {"c1"}  # still nothing of main
        before_approval = time.monotonic()
        message = await control.approve_rollout(
            bundle.namespace, "app", partition="main", user="ann", reason="canary looks good"
        )
        assert message == (
            f"bundle {bundle.namespace}/app: partition main approved by ann for commit "
            f"commit-{version}"
        )
        status = await eventually(bundle.status, done)
        started = _deployed(standins, version)
        assert started.keys() == set(CLUSTERS)
        assert min(started[c] for c in MAIN) >= before_approval
        shown = describe_bundle(status)
        assert "Approved" in shown and "ann" in shown and "canary looks good" in shown, shown
    # Who approved and why are in the history (the updates' input), and the gate's patch.
    text = history_text(await bundle.handle.fetch_history())
    assert "gates-partition-gates" in text and "canary looks good" in text and '"ann"' in text


async def test_a_rejection_halts_and_a_new_version_asks_again(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    standins = StandIns(clusters=CLUSTERS, strategy=_strategy(), ready_at_deploy=True)
    bundle = await start(standins)
    control = _control(bundle)
    await eventually(bundle.status, lambda s: _gate(s, "main").startswith("Waiting"))
    await control.approve_rollout(
        bundle.namespace, "app", partition="main", approve=False, user="bob", reason="5xx up"
    )
    # Status never shows the gate Rejected beside a rollout still waiting for it: the gates
    # it shows are the ones its last pass decided on.
    for _ in range(20):
        now = await bundle.status()
        assert _gate(now, "main").startswith("Rejected") == bool(now.halted), now
        if now.halted:
            break
    status = await eventually(bundle.status, lambda s: _gate(s, "main").startswith("Rejected"))
    assert (
        _gate(status, "main") == "Rejected: rollout halted: partition main rejected by bob: 5xx up"
    )
    assert "rollout halted: partition main rejected by bob: 5xx up" in status.summary
    await asyncio.sleep(1.0)
    assert _deployed(standins, 1).keys() == {"c1"}
    with pytest.raises(
        FlotillaError, match="partition main of commit commit-1 was already rejected by bob"
    ):
        await control.approve_rollout(bundle.namespace, "app", partition="main", user="ann")
    # Bad input: one line, naming the partition and the ones that ask.
    with pytest.raises(FlotillaError) as err:
        await control.approve_rollout(bundle.namespace, "app", partition="mian", user="ann")
    assert "partition 'mian' has no approval gate (partitions that ask for approval: main)" in str(
        err.value
    )
    assert "\n" not in str(err.value)
    await bundle.release(2)
    status = await eventually(
        bundle.status,
        lambda s: s.commit == "commit-2" and _gate(s, "main").startswith("Waiting"),
    )
    await control.approve_rollout(bundle.namespace, "app", partition="main", user="ann")
    await eventually(
        bundle.status,
        lambda s: s.commit == "commit-2" and all_ready({c.cluster: c.state for c in s.clusters}),
    )
    assert _deployed(standins, 2).keys() == set(CLUSTERS)


async def test_an_approval_deadline_that_passes_halts_and_says_so(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    standins = StandIns(
        clusters=CLUSTERS, strategy=_strategy(approvalDeadline="2s"), ready_at_deploy=True
    )
    bundle = await start(standins)
    status = await eventually(bundle.status, lambda s: _gate(s, "main").startswith("Expired"))
    assert "rollout halted: partition main not approved within 2s (deadline" in _gate(
        status, "main"
    )
    held = [c for c in status.clusters if c.cluster in MAIN]
    assert all("rollout halted: partition main not approved within 2s" in c.message for c in held)
    assert _deployed(standins, 1).keys() == {"c1"}
    with pytest.raises(FlotillaError, match="was already expired"):
        await _control(bundle).approve_rollout(
            bundle.namespace, "app", partition="main", user="ann"
        )


async def test_a_canary_past_its_failure_budget_halts_before_main(
    start: Callable[..., Awaitable[Bundle]],
) -> None:
    strategy = RolloutStrategy.model_validate(
        {
            "partitions": [
                {
                    "name": "canary",
                    "clusterName": "c1",
                    "failureBudget": 0,
                    "failureDeadline": "2s",
                },
                {"name": "main", "clusterSelector": {}},
            ]
        }
    )
    standins = StandIns(clusters=CLUSTERS, strategy=strategy, ready_at_deploy=True)
    bundle = await start(standins)
    await eventually(bundle.states, all_ready)
    assert (await bundle.status()).halted == ""
    standins.failures["c1"] = ["manifest rejected: ConfigMap 'Bad_Name' is invalid"] * 100
    await bundle.release(2)
    status = await eventually(bundle.status, lambda s: s.commit == "commit-2" and bool(s.halted))
    assert status.halted.startswith(
        "rollout halted: partition canary: 1 of 1 cluster(s) not Ready 2s after release, "
        "failure budget 0 (c1: manifest rejected"
    ), status.halted
    assert {c.cluster: c.state for c in status.clusters}["c1"] is BundleState.ERR_APPLIED
    held = [c for c in status.clusters if c.cluster in MAIN]
    assert all(c.message.startswith("rollout halted: partition canary") for c in held), held
    assert _gate(status, "canary").startswith("Halted: rollout halted")
    # Halted is the bundle's state (its clusters keep their own), with the halt as its line.
    assert (status.state, status.message) == (RepoState.HALTED, status.halted)
    assert f"State:       Halted: {status.halted}" in describe_bundle(status)
    await asyncio.sleep(2.0)
    assert _deployed(standins, 2) == {}  # main never started version 2 (and c1 never applied)
    # The canary recovering does not lift the halt for this version; a new one starts clean.
    standins.failures["c1"] = []
    await bundle.release(3)
    await eventually(
        bundle.status,
        lambda s: (
            s.commit == "commit-3"
            and not s.halted
            and all_ready({c.cluster: c.state for c in s.clusters})
        ),
    )
