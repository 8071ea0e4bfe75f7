"""End to end: a schedule polls the real registry and the new tag or digest lands in git."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from devenv.registry import LocalRegistry
from tests.images.conftest import ImageWorld, deployment_yaml, eventually, fleet_yaml


def _repo() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


async def test_new_semver_tag_is_committed_by_the_schedule(
    registry: LocalRegistry, make_world: Callable[..., ImageWorld]
) -> None:
    repo = _repo()
    registry.push_image(repo, "1.0.0", "one")
    image = f"{registry.host}/{repo}"
    world = make_world(
        {
            "fleet.yaml": fleet_yaml(
                image, policy={"semver": {"range": ">=1.0.0 <2.0.0"}}, pollSchedule="@every 2s"
            ),
            "deployment.yaml": deployment_yaml(f'image: {image}:1.0.0 # {{"$imagescan": "app"}}'),
        },
        imageScanCommit={"authorName": "bot", "messageTemplate": "chore: bump app"},
    )
    result = await world.sync()
    assert result.created == [world.policy_id()], result
    registry.push_image(repo, "1.1.0", "two")
    registry.push_image(repo, "2.0.0", "three")  # outside the range
    text = await eventually(
        lambda: asyncio.to_thread(world.head_file, "deployment.yaml"),
        lambda t: f"{image}:1.1.0" in t,
    )
    assert f'image: {image}:1.1.0 # {{"$imagescan": "app"}}' in text
    assert world.log()[0] == "chore: bump app|bot"
    # The run records its state in the schedule after the commit lands: wait for it.
    state = (
        await eventually(
            lambda: world.schedule_input(world.policy_id()),
            lambda i: i.state.applied is not None,
        )
    ).state
    assert state.applied is not None and state.applied.tag == "1.1.0"
    assert "1.0.0 → 1.1.0: committed" in state.last_result
    # The GitRepo reads the new commit: the schedule's current value follows, no new commit.
    again = await world.sync()
    assert again.updated == [world.policy_id()]
    assert (await world.schedule_input(world.policy_id())).config.current.tag == "1.1.0"
    before = len(world.log())
    result2 = await world.run_once(world.policy_id())
    assert result2.outcome == "unchanged", result2
    assert len(world.log()) == before


async def test_repushed_latest_pins_the_new_digest(
    registry: LocalRegistry, make_world: Callable[..., ImageWorld]
) -> None:
    repo = _repo()
    first = registry.push_image(repo, "latest", "v1")
    image = f"{registry.host}/{repo}"
    world = make_world(
        {
            "fleet.yaml": fleet_yaml(image, policy="force", pollSchedule="@every 1h"),
            "deployment.yaml": deployment_yaml(
                f'image: {image}:latest@{first} # {{"$imagescan": "app:digest"}}'
            ),
        }
    )
    await world.sync()
    unchanged = await world.run_once(world.policy_id())
    assert unchanged.outcome == "unchanged", unchanged
    second = registry.push_image(repo, "latest", "v2")
    assert second != first
    result = await world.run_once(world.policy_id())
    assert result.outcome == "committed", result
    text = await asyncio.to_thread(world.head_file, "deployment.yaml")
    assert f"image: {image}:latest@{second} #" in text
    assert result.commit and f"@{second}" in result.message


@pytest.mark.parametrize(
    ("policy", "current", "expected"),
    [
        ({"semver": {"range": ">=1.0.0 <2.0.0"}}, "1.0.0", "1.1.0"),
        ({"alphabetical": {"order": "asc"}}, "1.0.0", "release-2"),
        ({"alphabetical": {"order": "desc"}}, "release-2", "1.0.0"),
        ("all", "1.0.0", "2.0.0"),
        ("major", "1.0.0", "2.0.0"),
        ("minor", "1.0.0", "1.1.0"),
        ("patch", "1.0.0", "1.0.1"),
        ("glob:release-*", "release-1", "release-2"),
        (r"regexp:^release-(?P<compare>\d+)$", "release-1", "release-2"),
    ],
)
async def test_each_policy_picks_its_tag(
    registry: LocalRegistry,
    make_world: Callable[..., ImageWorld],
    policy: object,
    current: str,
    expected: str,
) -> None:
    repo = _repo()
    for tag in ("1.0.0", "1.0.1", "1.1.0", "2.0.0-rc1", "2.0.0", "release-1", "release-2"):
        registry.push_image(repo, tag, tag)
    image = f"{registry.host}/{repo}"
    world = make_world(
        {
            "fleet.yaml": fleet_yaml(image, policy=policy, pollSchedule="@every 1h"),
            "values.yaml": f'tag: "{current}" # {{"$imagescan": "app:tag"}}\n',
        }
    )
    await world.sync()
    result = await world.run_once(world.policy_id())
    assert result.outcome == "committed", result
    text = await asyncio.to_thread(world.head_file, "values.yaml")
    assert text == f'tag: "{expected}" # {{"$imagescan": "app:tag"}}\n'
