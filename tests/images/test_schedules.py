"""sync_image_schedules: one schedule per scan, updated, paused and deleted as the GitRepo
changes; the markers' current values are read from the commit."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from activities.schedules_models import ImagePolicyState, ImageVersion
from flotilla.markers import MarkedImage, read_markers
from tests.images.conftest import ImageWorld, fleet_yaml

IMAGE = "127.0.0.1:5000/app"


async def test_schedules_follow_the_gitrepo(make_world: Callable[..., ImageWorld]) -> None:
    world = make_world(
        {
            "fleet.yaml": fleet_yaml(IMAGE, policy="minor", pollSchedule="@every 10m"),
            "deploy.yaml": f'image: {IMAGE}:1.0.0 # {{"$imagescan": "app"}}\n',
            "nested/fleet.yaml": "namespace: other\n",
            "nested/cm.yaml": 'x: "9.9.9" # {"$imagescan": "app:tag"}\n',
        }
    )
    created = await world.sync()
    policy_id = world.policy_id()
    assert created.created == [policy_id] and not created.warnings
    description = await world.client.get_schedule_handle(policy_id).describe()
    assert description.schedule.spec.intervals[0].every == timedelta(minutes=10)
    assert description.schedule.policy.overlap.name == "SKIP"
    config = (await world.schedule_input(policy_id)).config
    assert config.current == ImageVersion(tag="1.0.0") and config.files == ["deploy.yaml"]
    # Same commit, same spec: nothing to do.
    same = await world.sync()
    assert same.unchanged == 1 and not (same.created or same.updated or same.deleted)
    # Run state survives a config change made by a sync.
    await world.schedules._update_input(
        policy_id,
        lambda current, proto: current.model_copy(
            update={"state": ImagePolicyState(latest_seen="1.1.0")}
        ),
    )
    paused = await world.sync(paused=True)
    assert paused.updated == [policy_id]
    description = await world.client.get_schedule_handle(policy_id).describe()
    assert description.schedule.state.paused and description.schedule.state.note == "gitrepo paused"
    assert (await world.schedule_input(policy_id)).state.latest_seen == "1.1.0"
    # A cron schedule and then no scans at all: the schedule goes.
    work = world.git_daemon.working_copy(world.repo_name)
    world.git_daemon.commit(
        work,
        {"fleet.yaml": fleet_yaml(IMAGE, policy="minor", pollSchedule="@daily")},
        message="daily",
    )
    cron = await world.sync(paused=False)
    assert cron.updated == [policy_id]
    description = await world.client.get_schedule_handle(policy_id).describe()
    assert {(t.hour, t.minute) for t in description.info.next_action_times} == {(0, 0)}
    assert not description.schedule.state.paused
    world.git_daemon.commit(work, {"fleet.yaml": "namespace: x\n"}, message="no scans")
    gone = await world.sync()
    assert gone.deleted == [policy_id]


async def test_scans_without_markers_or_with_bad_fields_are_warnings(
    make_world: Callable[..., ImageWorld],
) -> None:
    scans = "imageScans:\n" + "".join(
        "  - " + json.dumps(entry) + "\n"
        for entry in (
            {"image": IMAGE, "tagName": "app", "policy": "minor"},
            {"image": IMAGE, "tagName": "web", "policy": "minor"},
        )
    )
    world = make_world(
        {"fleet.yaml": scans, "deploy.yaml": f'image: {IMAGE}:1.0.0 # {{"$imagescan": "app"}}\n'},
        imageScanInterval="15m",
    )
    result = await world.sync()
    assert result.created == [world.policy_id("app")]
    assert result.warnings == [
        './fleet.yaml: imageScans \'web\': no # {"$imagescan": "web"} marker in the bundle, '
        "not scheduled"
    ]
    description = await world.client.get_schedule_handle(world.policy_id("app")).describe()
    # No interval or pollSchedule of its own: the GitRepo's imageScanInterval applies.
    assert description.schedule.spec.intervals[0].every == timedelta(minutes=15)
    work = world.git_daemon.working_copy(world.repo_name)
    world.git_daemon.commit(work, {"fleet.yaml": fleet_yaml(IMAGE, policy="minr")}, message="typo")
    bad = await world.sync()
    assert bad.warnings and "did you mean 'minor'?" in bad.warnings[0]
    assert not bad.deleted  # a broken fleet.yaml keeps the schedule it had


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'image: {IMAGE}:1.2.3 # {{"$imagescan": "app"}}\n', MarkedImage("1.2.3", None, False)),
        ('  tag: "v2" # {"$imagescan": "app:tag"}\n', MarkedImage("v2", None, False)),
        (
            f'- {IMAGE}:latest@sha256:{"a" * 64} # {{"$imagescan": "app:digest"}}\r\n',
            MarkedImage("latest", f"sha256:{'a' * 64}", True),
        ),
        ('tag: "v2" # {"$imagescan": "web:tag"}\n', MarkedImage(None, None, False)),
        ('tag: "v2" # {"$imagescan": "app:name"}\n', MarkedImage(None, None, False)),
        ("tag: v2 # not a marker\n", MarkedImage(None, None, False)),
        # What rewrite_markers would not touch is not read either: a marker not at the end.
        ('tag: v2 # {"$imagescan": "app:tag"} trailing\n', MarkedImage(None, None, False)),
    ],
)
def test_read_markers(text: str, expected: MarkedImage) -> None:
    assert read_markers(text, "app") == expected
