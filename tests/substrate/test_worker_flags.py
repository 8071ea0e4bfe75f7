"""The worker's --workflow-tasks (how many workflow tasks one worker process runs at once), its
push queues' --cluster-tasks and --cluster-threads, its garbage-collector thresholds, and its
bounded drain on SIGTERM."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.client import Client

from flotilla.ids import PUSH_TASK_QUEUES
from flotilla.settings import settings_from_env
from tests.e2e.harness import settings_for_test
from worker import (
    DEFAULT_CLUSTER_TASKS,
    DEFAULT_CLUSTER_THREADS,
    DEFAULT_WORKFLOW_TASKS,
    GC_THRESHOLDS,
    FlotillaWorker,
    WorkerConfig,
    parse_args,
)


def test_workflow_tasks_flag_environment_default_and_bound(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from_env({}, home=tmp_path)
    assert parse_args([], settings).workflow_tasks == DEFAULT_WORKFLOW_TASKS == 4
    assert parse_args(["--workflow-tasks", "8"], settings).workflow_tasks == 8
    monkeypatch.setenv("FLOTILLA_WORKFLOW_TASKS", "6")
    assert parse_args([], settings).workflow_tasks == 6
    with pytest.raises(SystemExit) as done:
        parse_args(["--workflow-tasks", "1"], settings)
    assert done.value.code == 2
    assert "--workflow-tasks: 1: must be at least 2" in capsys.readouterr().err


async def test_the_control_worker_takes_at_most_that_many_workflow_tasks(
    temporal_client: Client, tmp_path: Path
) -> None:
    """The bound reaches the SDK worker of the control queue (its workflow-task slots)."""
    config = WorkerConfig(
        task_queue="flags", namespaces=["flags"], workflow_tasks=3, workdir=tmp_path / "work"
    )
    worker = FlotillaWorker(temporal_client, config, settings_for_test(temporal_client, tmp_path))
    await worker.start()
    try:
        assert worker._control.config()["max_concurrent_workflow_tasks"] == 3
    finally:
        await worker.stop()


def test_cluster_threads_and_tasks_flags_environment_defaults_and_bounds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from_env({}, home=tmp_path)
    config = parse_args([], settings)
    assert (config.cluster_threads, config.cluster_tasks) == (
        DEFAULT_CLUSTER_THREADS,
        DEFAULT_CLUSTER_TASKS,
    )
    monkeypatch.setenv("FLOTILLA_CLUSTER_TASKS", "32")
    config = parse_args(["--cluster-threads", "8"], settings)
    assert (config.cluster_threads, config.cluster_tasks) == (8, 32)
    for flag in ("--cluster-threads", "--cluster-tasks", "--cluster-concurrency"):
        with pytest.raises(SystemExit) as done:
            parse_args([flag, "0"], settings)
        assert done.value.code == 2
        assert f"{flag}: 0: must be at least 1" in capsys.readouterr().err


async def test_push_queues_take_the_cluster_tasks_and_apply_on_the_cluster_threads(
    temporal_client: Client, tmp_path: Path
) -> None:
    """Deploys in flight (waits for Ready included) are bounded by --cluster-tasks over the
    push queues, their applies by --cluster-threads: slots are no longer threads."""
    config = WorkerConfig(
        task_queue="pushflags",
        namespaces=["pushflags"],
        cluster_threads=6,
        cluster_tasks=40,
        workdir=tmp_path / "work",
    )
    worker = FlotillaWorker(temporal_client, config, settings_for_test(temporal_client, tmp_path))
    await worker.start()
    try:
        slots = [w.config()["max_concurrent_activities"] for w, _ in worker._push[:-1]]
        assert slots == [40 // PUSH_TASK_QUEUES] * PUSH_TASK_QUEUES
        assert worker.push.pool._max_workers == 6
        assert worker.push.watch_pool._max_workers == 40
    finally:
        await worker.stop()


async def test_a_started_worker_collects_garbage_by_its_own_thresholds(
    temporal_client: Client, tmp_path: Path
) -> None:
    """Full collections of a big worker heap held the GIL for up to a second at a time."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    config = WorkerConfig(task_queue="gc", namespaces=["gc"], workdir=tmp_path / "work")
    worker = FlotillaWorker(temporal_client, config, settings_for_test(temporal_client, tmp_path))
    await worker.start()
    try:
        assert gc.get_threshold() == GC_THRESHOLDS != (700, 10, 10)
    finally:
        await worker.stop()
        gc.set_threshold(*before)


def _ends_at_the_bound(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (its bound 0.5 s) in a process of its own: it must exit 0 well before
    its 30 s sleep ends, saying why."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 15
    assert "shutdown: not done 0s after the signal" in done.stderr, done.stderr
    return done


def test_a_drain_that_blocks_the_event_loop_still_ends_at_its_deadline() -> None:
    """The bound also holds from a thread: a process whose main thread (the event loop)
    blocks after SIGTERM exits 0 at the deadline, with the warning and the threads' stacks
    (a worker in a test was SIGKILLed 30 s after SIGTERM without a word from the loop)."""
    script = (
        "import time\nfrom runtime.shutdown import exit_after\nexit_after(0.5)\n"
        "time.sleep(30)  # the blocked loop\n"
    )
    done = _ends_at_the_bound(script)
    assert 'File "<string>", line 4' in done.stderr, done.stderr  # the blocked thread's stack


def test_an_activity_thread_that_holds_the_exit_after_the_drain_ends_at_the_deadline() -> None:
    """The drain done, the interpreter's exit joins the activity pools' threads: one that
    outlives its cancelled activity held the exit until the harness SIGKILLed the worker
    (twice in one CI run). The bound covers the exit too: exit 0 with that thread's stack.
    The worker's drain is a stand-in here (done at once); the real one is SIGTERMed in
    tests/e2e/test_worker_restart.py."""
    script = (
        "import asyncio, threading, time, worker\n"
        "class Drained:\n"
        "    async def stop(self): pass  # the worker's drain, done at once\n"
        "def activity():\n"
        "    time.sleep(30)  # the activity thread\n"
        "threading.Thread(target=activity).start()\n"
        "asyncio.run(worker.shut_down(Drained(), 0.5))\n"
    )
    done = _ends_at_the_bound(script)
    assert "in _shutdown" in done.stderr, done.stderr  # the interpreter's join, past the drain
    assert 'File "<string>", line 5 in activity' in done.stderr, done.stderr


def test_the_agents_signal_handler_bounds_its_exit_from_the_first_signal() -> None:
    """``flotilla agent`` stops on SIGTERM through ``bounded_stop``: the signal sets its stop
    event and arms the bound, so a deploy thread that outlives its cancel cannot hold the
    process past it (the worker's case above). The agent's drain and final heartbeat are
    left out here; tests/e2e/test_agents.py SIGTERMs real agents."""
    script = (
        "import asyncio, logging, os, signal, threading, time\n"
        "from runtime.shutdown import bounded_stop\n"
        "def deploy():\n"
        "    time.sleep(30)  # a deploy thread past its cancel\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "async def main():\n"
        "    stop = asyncio.Event()\n"
        "    handler = bounded_stop(stop, 0.5)\n"
        "    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, handler)\n"
        "    threading.Thread(target=deploy).start()\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    await stop.wait()\n"
        "asyncio.run(main())\n"
    )
    done = _ends_at_the_bound(script)
    assert 'File "<string>", line 4 in deploy' in done.stderr, done.stderr
    assert "stopping: the process ends within 0s" in done.stderr, done.stderr
