"""`flotilla cluster move` as one durable operation, against real Temporal: the old registry
hands the cluster to the new one by a signal it sends in the same workflow task that accepts
the move, so a worker that stops halfway, or a CLI killed at any moment, leaves the cluster
in exactly one workspace, and the move finishes by itself or by running it again."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType

from flotilla.errors import FlotillaError
from flotilla.ids import registry_workflow_id
from tests.e2e.harness import Flotilla, start_flotilla
from tests.workflows.test_agent_cli import ROOT, env_for
from workflows.registry_models import (
    ADOPT_CLUSTER_SIGNAL,
    MOVE_CLUSTER_UPDATE,
    MOVE_REFUSED_SIGNAL,
    REGISTRY_WORKFLOW,
    MoveClusterRequest,
    RegistryChange,
    RegistryState,
)

# Nothing answers there; the registries never call it.
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: never-used}}]
contexts: [{name: main, context: {cluster: c, user: u}}]
current-context: main
"""


async def holders(flotilla: Flotilla, name: str, *workspaces: str) -> list[str]:
    """The workspaces whose registry holds cluster ``name``."""
    found = []
    for workspace in workspaces:
        snapshot = await flotilla.control.registry(workspace)
        if any(c.name == name for c in snapshot.clusters):
            found.append(workspace)
    return found


async def test_a_move_survives_the_new_workspaces_worker_being_away(
    flotilla: Flotilla, tmp_path: Path
) -> None:
    ns, to = flotilla.namespace, f"{flotilla.namespace}-b"
    await flotilla.control.add_cluster(ns, "mover", KUBECONFIG, labels={"env": "edge"})
    # The new workspace's registry runs on a queue no worker serves yet, as after a crash.
    away = f"away-{uuid.uuid4().hex[:8]}"
    await flotilla.client.start_workflow(
        REGISTRY_WORKFLOW, RegistryState(namespace=to), id=registry_workflow_id(to), task_queue=away
    )
    change = await flotilla.client.get_workflow_handle(registry_workflow_id(ns)).execute_update(
        MOVE_CLUSTER_UPDATE, MoveClusterRequest(name="mover", to=to), result_type=RegistryChange
    )
    assert change.message == f"cluster mover moved to workspace {to}"
    assert await holders(flotilla, "mover", ns) == []
    # The handover waits in the new registry's history while nobody runs it.
    history = await flotilla.client.get_workflow_handle(registry_workflow_id(to)).fetch_history()
    signals = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert signals == [ADOPT_CLUSTER_SIGNAL]
    later = await start_flotilla(flotilla.client, away, tmp_path / "later", namespace=to)
    try:
        snapshot = await flotilla.eventually(
            lambda: later.control.registry(to), lambda s: bool(s.clusters)
        )
        (moved,) = snapshot.clusters
        assert (moved.name, moved.labels) == ("mover", {"env": "edge"})
        assert moved.kubeconfig_secret == "mover-kubeconfig"
    finally:
        await later.worker.stop()
        with contextlib.suppress(Exception):
            await flotilla.client.get_workflow_handle(registry_workflow_id(to)).terminate("done")


async def test_a_cli_killed_mid_move_leaves_one_workspace_and_running_it_again_finishes(
    flotilla: Flotilla, tmp_path: Path
) -> None:
    ns, to = flotilla.namespace, f"{flotilla.namespace}-b"
    await flotilla.control.add_cluster(ns, "mover", KUBECONFIG, labels={"env": "edge"})
    env = {
        **env_for(flotilla, tmp_path / "cli"),
        "FLOTILLA_SECRETS_DIR": str(flotilla.settings.secrets_dir),
    }
    argv = [
        sys.executable, "-m", "starters.cli", "cluster", "move", "mover", "--to", to,
        "-n", ns, "--task-queue", flotilla.config.task_queue,
    ]  # fmt: skip
    killed = 0
    try:
        # How long a whole move takes on this machine now (a quiet machine finishes in a
        # second or two, a loaded one in many), so the kills below land inside a run.
        started = time.monotonic()
        whole = await asyncio.to_thread(
            subprocess.run, argv, env=env, cwd=ROOT, capture_output=True, text=True,
            timeout=180, check=False,
        )  # fmt: skip
        took = time.monotonic() - started
        assert whole.returncode == 0, whole.stderr
        await flotilla.control.move_cluster(to, "mover", ns)
        await flotilla.eventually(lambda: holders(flotilla, "mover", ns, to), lambda w: w == [ns])
        # Killed at different moments: while starting, while asking, while moving.
        for delay in (took * f for f in (0.1, 0.3, 0.5, 0.7, 0.85)):
            cli = subprocess.Popen(
                argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            await asyncio.sleep(delay)
            if cli.poll() is None:
                cli.send_signal(signal.SIGKILL)
                killed += 1
            cli.wait()
            # Whatever the moment, the cluster is in exactly one workspace once the move
            # that may have been accepted has run.
            where = await flotilla.eventually(
                lambda: holders(flotilla, "mover", ns, to), lambda w: len(w) == 1
            )
            again = await asyncio.to_thread(
                subprocess.run, argv, env=env, cwd=ROOT, capture_output=True, text=True,
                timeout=180, check=False,
            )  # fmt: skip
            assert again.returncode == 0, again.stderr
            expected = (
                f"cluster mover moved from workspace {ns} to {to}"
                if where == [ns]
                else f"cluster mover is in workspace {to} (moved already)"
            )
            assert again.stdout.strip() == expected, (where, again.stdout)
            assert await holders(flotilla, "mover", ns, to) == [to]
            (moved,) = [c for c in (await flotilla.control.registry(to)).clusters]
            assert moved.labels == {"env": "edge"}
            # Back, for the next round.
            await flotilla.control.move_cluster(to, "mover", ns)
            await flotilla.eventually(
                lambda: holders(flotilla, "mover", ns, to), lambda w: w == [ns]
            )
        assert killed >= 3, f"only {killed} of 5 runs were killed before they ended"
    finally:
        with contextlib.suppress(Exception):
            await flotilla.client.get_workflow_handle(registry_workflow_id(to)).terminate("done")


async def test_a_move_never_replaces_a_cluster_registered_there_after_the_check(
    flotilla: Flotilla,
) -> None:
    """The race the CLI's check leaves: a cluster of the same name registered in the new
    workspace before the handover arrives. The new registry keeps its own cluster and sends
    the moved one back, which the old registry takes again with one line saying why."""
    ns, to = flotilla.namespace, f"{flotilla.namespace}-b"
    await flotilla.control.add_cluster(ns, "mover", KUBECONFIG, labels={"env": "edge"})
    await flotilla.control.add_cluster(to, "mover", KUBECONFIG, labels={"env": "theirs"})
    try:
        # The old registry's move, as the CLI sends it after its check passed.
        old = flotilla.client.get_workflow_handle(registry_workflow_id(ns))
        change = await old.execute_update(
            MOVE_CLUSTER_UPDATE,
            MoveClusterRequest(name="mover", to=to),
            result_type=RegistryChange,
        )
        assert change.message == f"cluster mover moved to workspace {to}"
        back = await flotilla.eventually(
            lambda: flotilla.control.registry(ns), lambda s: bool(s.clusters), timeout=120
        )
        (returned,) = back.clusters
        assert returned.labels == {"env": "edge"}
        (kept,) = (await flotilla.control.registry(to)).clusters
        assert kept.labels == {"env": "theirs"}
        history = await old.fetch_history()
        signals = [
            e.workflow_execution_signaled_event_attributes.signal_name
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        ]
        assert MOVE_REFUSED_SIGNAL in signals
        # The CLI never overwrites credentials another cluster there may use: with their
        # cluster gone but its Secret left, a move whose Secret differs is refused.
        await flotilla.control.remove_cluster(to, "mover")
        theirs = {"value": "their credentials"}
        flotilla.control.secrets.put(to, "mover-kubeconfig", theirs)
        with pytest.raises(FlotillaError) as err:
            await flotilla.control.move_cluster(ns, "mover", to)
        assert str(err.value) == (
            f"cluster mover not moved: namespace '{to}' has a different Secret "
            "'mover-kubeconfig' already"
        )
        assert flotilla.control.secrets.get(to, "mover-kubeconfig") == theirs
        assert [c.name for c in (await flotilla.control.registry(ns)).clusters] == ["mover"]
    finally:
        with contextlib.suppress(Exception):
            await flotilla.client.get_workflow_handle(registry_workflow_id(to)).terminate("done")
