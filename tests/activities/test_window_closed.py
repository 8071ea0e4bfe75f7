"""A deploy never starts after its deployment window closed: it applies nothing.

The real path (a window that closes while the worker is down) runs in tests/e2e/test_windows.py;
this checks the activity's own guard, which runs before it reads content or a cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.content import FileContentStore
from activities.deploy import DeployActivities
from activities.deploy_models import DeployRequest
from activities.secrets import FileSecretStore
from flotilla.errors import WINDOW_CLOSED


def _request(not_after: datetime | None) -> DeployRequest:
    return DeployRequest(
        gitrepo="g",
        bundle_name="b",
        cluster_namespace="fleet-default",
        cluster_name="prod",
        deployment_id="s-1",
        bundle_digest="sha256:" + "0" * 64,
        options_digest="sha256:" + "1" * 64,
        not_after=not_after,
    )


def _engine(tmp_path: Path) -> DeployActivities:
    return DeployActivities(
        FileSecretStore(tmp_path / "secrets"), FileContentStore(tmp_path / "content"), tmp_path
    )


def test_a_deploy_after_its_window_closed_applies_nothing(tmp_path: Path) -> None:
    closed = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(_engine(tmp_path).deploy_bundle, _request(closed))
    assert err.value.type == WINDOW_CLOSED and err.value.non_retryable
    assert err.value.message == (
        f"deployment window closed at {closed:%Y-%m-%d %H:%M:%S} UTC before the deploy started; "
        "nothing was applied"
    )


def test_inside_its_window_the_deploy_goes_on(tmp_path: Path) -> None:
    # It gets past the guard and fails on what the test did not provide: the bundle content.
    later = datetime.now(UTC) + timedelta(minutes=5)
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(_engine(tmp_path).deploy_bundle, _request(later))
    assert err.value.type != WINDOW_CLOSED
    # And a request without a window is not held either; it leaves no field in its JSON.
    assert "not_after" not in _request(None).model_dump_json()
