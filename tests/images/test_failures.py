"""Failures end one poll with a visible error; the schedule keeps polling. Concurrent
write-backs to one branch all land."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from temporalio.testing import ActivityEnvironment

from activities.gitops_models import GitSource
from activities.writeback import WriteBackActivities
from activities.writeback_models import WriteBackRequest, WriteBackResult
from devenv.process import free_port
from devenv.registry import LocalRegistry
from flotilla.imagepolicy import ImageUpdate
from starters.images import Images
from tests.images.conftest import FaultServer, ImageWorld, Reply, eventually, fleet_yaml


async def test_registry_down_is_recorded_and_the_schedule_keeps_polling(
    make_world: Callable[..., ImageWorld],
) -> None:
    image = f"127.0.0.1:{free_port()}/app"
    world = make_world(
        {
            "fleet.yaml": fleet_yaml(image, policy="minor", pollSchedule="@every 2s"),
            "values.yaml": 'tag: "1.0.0" # {"$imagescan": "app:tag"}\n',
        }
    )
    await world.sync()
    images = Images(world.client)
    [line] = await eventually(
        lambda: images.list(world.namespace), lambda lines: bool(lines and lines[0].error)
    )
    assert line.error.startswith(f"poll failed: {image}: tags list: registry unreachable")
    assert "\n" not in line.error
    # Later polls still run: the schedule is neither paused nor gone.
    first = await world.run_ids(world.policy_id())
    await eventually(
        lambda: world.run_ids(world.policy_id()), lambda runs: len(runs) > len(first), timeout=30
    )
    description = await world.client.get_schedule_handle(world.policy_id()).describe()
    assert not description.schedule.state.paused


def _tags(*tags: str) -> bytes:
    return json.dumps({"name": "app", "tags": list(tags)}).encode()


async def test_rate_limit_waits_for_retry_after_then_commits(
    make_world: Callable[..., ImageWorld],
) -> None:
    seen: list[float] = []

    def responder(method: str, path: str, headers: dict[str, str]) -> Reply:
        seen.append(time.monotonic())
        if len(seen) <= 2:
            return 429, {"Retry-After": "2"}, b""
        return 200, {}, _tags("1.0.0", "1.1.0")

    with FaultServer(responder) as fake:
        world = make_world(
            {
                "fleet.yaml": fleet_yaml(
                    f"{fake.host}/app", policy="minor", pollSchedule="@every 1h"
                ),
                "values.yaml": 'tag: "1.0.0" # {"$imagescan": "app:tag"}\n',
            }
        )
        await world.sync()
        result = await world.run_once(world.policy_id())
    assert result.outcome == "committed", result
    assert len(seen) == 3
    assert seen[1] - seen[0] >= 1.9 and seen[2] - seen[1] >= 1.9


async def test_unauthorized_is_not_retried_and_is_shown(
    make_world: Callable[..., ImageWorld],
) -> None:
    def responder(method: str, path: str, headers: dict[str, str]) -> Reply:
        return 401, {"WWW-Authenticate": 'Basic realm="fake"'}, b""

    with FaultServer(responder) as fake:
        world = make_world(
            {
                "fleet.yaml": fleet_yaml(
                    f"{fake.host}/app", policy="minor", pollSchedule="@every 1h"
                ),
                "values.yaml": 'tag: "1.0.0" # {"$imagescan": "app:tag"}\n',
            }
        )
        await world.sync()
        result = await world.run_once(world.policy_id())
        assert len(fake.requests) == 1
    assert result.outcome == "error"
    assert result.message == (
        f"poll failed: {fake.host}/app: tags list: registry asks for credentials (set secretRef)"
    )
    [line] = await Images(world.client).list(world.namespace)
    assert line.error == result.message


async def test_two_updates_to_one_repo_both_land(
    registry: LocalRegistry, make_world: Callable[..., ImageWorld]
) -> None:
    repos = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("app", "web")}
    for repo in repos.values():
        registry.push_image(repo, "1.0.0", "one")
        registry.push_image(repo, "1.1.0", "two")
    scans = "imageScans:\n" + "".join(
        "  - "
        + json.dumps(
            {
                "image": f"{registry.host}/{repo}",
                "tagName": name,
                "policy": "minor",
                "pollSchedule": "@every 1h",
            }
        )
        + "\n"
        for name, repo in repos.items()
    )
    values = "".join(f'{name}: "1.0.0" # {{"$imagescan": "{name}:tag"}}\n' for name in repos)
    world = make_world({"fleet.yaml": scans, "values.yaml": values})
    result = await world.sync()
    assert len(result.created) == 2
    outcomes = await asyncio.gather(*(world.run_once(world.policy_id(n)) for n in repos))
    assert [o.outcome for o in outcomes] == ["committed", "committed"], outcomes
    text = await asyncio.to_thread(world.head_file, "values.yaml")
    assert text == "".join(f'{n}: "1.1.0" # {{"$imagescan": "{n}:tag"}}\n' for n in repos)


def test_concurrent_write_backs_rewrite_on_the_moved_branch(
    make_world: Callable[..., ImageWorld], tmp_path: Path
) -> None:
    names = [f"s{i}" for i in range(4)]
    values = "".join(f'{n}: "1.0.0" # {{"$imagescan": "{n}:tag"}}\n' for n in names)
    world = make_world({"values.yaml": values})
    activities = WriteBackActivities(world.gitops, tmp_path / "wb")

    def write(name: str) -> WriteBackResult:
        result = ActivityEnvironment().run(
            activities.write_back,
            WriteBackRequest(
                source=GitSource(repo=world.url, branch="main"),
                gitrepo=world.gitrepo,
                bundle=world.gitrepo,
                scan=name,
                files=["values.yaml"],
                update=ImageUpdate(image="reg/app", tag="2.0.0"),
                previous="1.0.0",
            ),
        )
        assert isinstance(result, WriteBackResult)
        return result

    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(write, names))
    assert all(r.commit for r in results)
    assert sum(r.attempts for r in results) > len(names)  # some pushes were rejected and redone
    assert world.head_file("values.yaml") == values.replace("1.0.0", "2.0.0")
    assert len(world.log()) == len(names) + 1
