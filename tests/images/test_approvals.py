"""Approval gates: nothing is committed before N approvals; a rejection or an expired deadline
is remembered in the schedule until a newer image appears."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from devenv.registry import LocalRegistry
from flotilla.errors import FlotillaError
from starters.images import Images, images_table
from tests.images.conftest import ImageWorld, eventually, fleet_yaml
from workflows.imagepolicy_models import ImagePolicyResult


def _world(
    registry: LocalRegistry, make_world: Callable[..., ImageWorld], **scan: object
) -> tuple[ImageWorld, str]:
    repo = f"app-{uuid.uuid4().hex[:8]}"
    registry.push_image(repo, "1.0.0", "one")
    registry.push_image(repo, "1.1.0", "two")
    image = f"{registry.host}/{repo}"
    world = make_world(
        {
            "fleet.yaml": fleet_yaml(image, policy="minor", pollSchedule="@every 1h", **scan),
            "values.yaml": 'tag: "1.0.0" # {"$imagescan": "app:tag"}\n',
        }
    )
    return world, repo


def _name(world: ImageWorld) -> str:
    return f"{world.gitrepo}/{world.gitrepo}/app"


async def test_no_commit_before_two_approvals(
    registry: LocalRegistry, make_world: Callable[..., ImageWorld]
) -> None:
    world, _ = _world(registry, make_world, approvals=2, approvalDeadline="10m")
    await world.sync()
    images = Images(world.client)
    workflow_id, run_id = await world.trigger(world.policy_id())
    [line] = await eventually(
        lambda: images.list(world.namespace), lambda lines: bool(lines and lines[0].pending)
    )
    assert line.pending == "1.1.0" and line.current == "1.0.0" and line.latest_seen == "1.1.0"
    assert "1.1.0 0/2 until" in images_table([line])
    first = await images.vote(world.namespace, _name(world), reject=False, by="alice")
    assert (first.approvals, first.required) == (1, 2)
    with pytest.raises(FlotillaError, match=r"'alice' already approved 1\.1\.0"):
        await images.vote(world.namespace, _name(world), reject=False, by="alice")
    await asyncio.sleep(1)
    assert "1.0.0" in await asyncio.to_thread(world.head_file, "values.yaml")
    described = await world.client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    assert described.status is not None and described.status.name == "RUNNING"
    await images.vote(world.namespace, _name(world), reject=False, by="bob")
    handle = world.client.get_workflow_handle(
        workflow_id, run_id=run_id, result_type=ImagePolicyResult
    )
    result = await handle.result()
    assert result.outcome == "committed", result
    assert "1.1.0" in await asyncio.to_thread(world.head_file, "values.yaml")


async def test_expired_deadline_is_recorded_and_not_retried_until_a_newer_image(
    registry: LocalRegistry, make_world: Callable[..., ImageWorld]
) -> None:
    world, repo = _world(registry, make_world, approvals=1, approvalDeadline="2s")
    await world.sync()
    result = await world.run_once(world.policy_id())
    assert result.outcome == "declined" and "expired with 0/1 approvals" in result.message
    state = (await world.schedule_input(world.policy_id())).state
    assert state.declined is not None and state.declined.tag == "1.1.0"
    again = await world.run_once(world.policy_id())
    assert again.outcome == "skipped" and "waiting for a newer image" in again.message
    assert "1.0.0" in await asyncio.to_thread(world.head_file, "values.yaml")
    # A newer image is proposed again.
    registry.push_image(repo, "1.2.0", "three")
    newer = await world.run_once(world.policy_id())
    assert newer.outcome == "declined" and "1.0.0 → 1.2.0" in newer.message
    assert len(world.log()) == 1


async def test_rejection_is_recorded(
    registry: LocalRegistry, make_world: Callable[..., ImageWorld]
) -> None:
    world, _ = _world(registry, make_world, approvals=1, approvalDeadline="10m")
    await world.sync()
    images = Images(world.client)
    with pytest.raises(FlotillaError, match="no update is waiting for approval"):
        await images.vote(world.namespace, _name(world), reject=True, by="carol")
    workflow_id, run_id = await world.trigger(world.policy_id())
    await eventually(
        lambda: images.list(world.namespace), lambda lines: bool(lines and lines[0].pending)
    )
    await images.vote(world.namespace, _name(world), reject=True, by="carol", reason="CVE")
    handle = world.client.get_workflow_handle(
        workflow_id, run_id=run_id, result_type=ImagePolicyResult
    )
    result = await handle.result()
    assert result.outcome == "declined" and "rejected by carol (CVE)" in result.message
    [line] = await images.list(world.namespace)
    assert "rejected by carol (CVE)" in line.message and line.pending == ""
    assert len(world.log()) == 1
