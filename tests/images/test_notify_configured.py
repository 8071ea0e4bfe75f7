"""An image-policy run signals its events to ``notifications/<ns>`` only when the namespace has
a notification config (the schedule's ``notify``, which the GitRepo sets from its registry
snapshot): without one, a committed update costs no failing signal.

Real components: the Temporal dev server, the image worker, the git daemon and the registry.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from temporalio.api.enums.v1 import EventType

from devenv.registry import LocalRegistry
from flotilla.ids import notification_workflow_id
from tests.e2e.harness import history_text
from tests.images.conftest import ImageWorld, fleet_yaml
from workflows.common import IMAGE_NOTIFY_CONFIGURED_PATCH
from workflows.imagepolicy_models import ImagePolicyResult


@pytest.mark.parametrize("configured", [False, True])
async def test_committed_update_signals_only_a_configured_namespace(
    registry: LocalRegistry, make_world: Callable[..., ImageWorld], configured: bool
) -> None:
    repo = f"app-{uuid.uuid4().hex[:8]}"
    registry.push_image(repo, "1.0.0", "one")
    registry.push_image(repo, "1.1.0", "two")
    world = make_world(
        {
            "fleet.yaml": fleet_yaml(
                f"{registry.host}/{repo}", policy="minor", pollSchedule="@every 1h"
            ),
            "values.yaml": 'tag: "1.0.0" # {"$imagescan": "app:tag"}\n',
        }
    )
    await world.sync(notifications=configured)
    policy_id = world.policy_id()
    assert (await world.schedule_input(policy_id)).config.notify is configured
    workflow_id, run_id = await world.trigger(policy_id)
    handle = world.client.get_workflow_handle(
        workflow_id, run_id=run_id, result_type=ImagePolicyResult
    )
    result = await handle.result()
    assert result.outcome == "committed", result

    history = await handle.fetch_history()
    signalled = [
        e.signal_external_workflow_execution_initiated_event_attributes.workflow_execution
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
    ]
    target = notification_workflow_id(world.namespace)
    assert [s.workflow_id for s in signalled] == ([target] if configured else [])
    # The skip is behind its patch (running workflows replay as before).
    assert (IMAGE_NOTIFY_CONFIGURED_PATCH in history_text(history)) is not configured
