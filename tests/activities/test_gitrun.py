"""``activities.gitrun.run_git``: real git, no server needed (a local repository, and an
alias that sleeps, for a command that takes a while)."""

from __future__ import annotations

import ctypes
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import git
import pytest

from activities.gitrun import run_git

NAP = ["git", "-c", "alias.nap=!sleep 1; echo rested", "nap"]


class Cancelled(Exception):
    """What the SDK raises inside a cancelled activity's thread (its CancelledError)."""


def _interrupted(call: Callable[[], object]) -> list[BaseException]:
    """Run ``call`` in a thread and raise ``Cancelled`` inside it while it runs, as the SDK
    does to every running activity when its worker shuts down."""
    caught: list[BaseException] = []

    def body() -> None:
        try:
            call()
        except BaseException as err:  # the test looks at whatever arrived
            caught.append(err)

    thread = threading.Thread(target=body)
    thread.start()
    time.sleep(0.3)
    assert thread.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(Cancelled)
    )
    thread.join(10)
    assert not thread.is_alive()
    return caught


def test_output_and_errors_read_as_gitpython_gives_them(tmp_path: Path) -> None:
    git.Repo.init(tmp_path)
    assert run_git(["git", "rev-parse", "--is-inside-work-tree"], cwd=tmp_path, timeout=10) == (
        "true"
    )
    with pytest.raises(git.GitCommandError) as err:
        run_git(["git", "rev-parse", "--verify", "nope"], cwd=tmp_path, timeout=10)
    assert err.value.status == 128
    assert "fatal: Needed a single revision" in str(err.value.stderr)  # English: LC_ALL=C
    with pytest.raises(git.GitCommandError) as err:
        run_git(["git", "ls-remote", "https://user:hunter2@127.0.0.1:1/x.git"], timeout=10)
    assert "hunter2" not in str(err.value)  # the command is shown with passwords masked


def test_a_command_past_its_bound_is_killed() -> None:
    started = time.monotonic()
    with pytest.raises(git.GitCommandError) as err:
        run_git(NAP, timeout=0.2)
    assert time.monotonic() - started < 0.9
    assert err.value.status == "timeout"
    assert "did not complete in 0.2 s" in str(err.value.stderr)


def test_a_command_cancelled_while_it_runs_leaves_no_thread_behind() -> None:
    """GitPython's ``kill_after_timeout`` left its non-daemon timer thread waiting out the
    whole bound when the command was interrupted: the worker's exit waited for it (CI). With
    GitPython's call this test fails (checked): one more thread, alive for 50 s."""
    before = set(threading.enumerate())
    caught = _interrupted(lambda: run_git(NAP, timeout=50))
    assert [type(e) for e in caught] == [Cancelled]
    assert set(threading.enumerate()) == before
    # and the command's process was reaped, not left running
    left = subprocess.run(["pgrep", "-f", "sleep 1; echo rested"], capture_output=True)
    assert left.stdout == b"", left.stdout
