"""`flotilla dev cluster up|list|down` through the real console script: no orphans, ever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devenv.process import pid_alive
from starters.dev import _interrupts_noted

FLOTILLA = [sys.executable, "-m", "starters.cli"]
COMPONENTS = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOTILLA, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def dev_env(tmp_path: Path, tools_on_path: list[Path]) -> dict[str, str]:
    return {**os.environ, "FLOTILLA_DEV_HOME": str(tmp_path / "dev")}


def component_pids(home: Path) -> list[int]:
    """Every process whose command line mentions the dev home: the components of its clusters."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if Path(argv[0]).name in COMPONENTS and any(str(home) in arg for arg in argv):
            found.append(int(proc.name))
    return [p for p in found if pid_alive(p)]


def test_up_list_down_leaves_nothing_behind(dev_env: dict[str, str]) -> None:
    home = Path(dev_env["FLOTILLA_DEV_HOME"])
    up = run(["dev", "cluster", "up", "edge", "--nodes", "2"], dev_env)
    assert up.returncode == 0, up.stderr
    assert "export KUBECONFIG=" in up.stdout
    kubeconfig = home / "clusters" / "edge" / "kubeconfig"
    assert kubeconfig.exists()
    assert len(component_pids(home)) == len(COMPONENTS)

    listed = run(["dev", "cluster", "list"], dev_env)
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if line.startswith("edge"))
    assert "Running" in row and " 2 " in row

    again = run(["dev", "cluster", "up", "edge"], dev_env)
    assert again.returncode == 1 and "already running" in again.stderr
    assert "Traceback" not in again.stderr

    down = run(["dev", "cluster", "down", "edge"], dev_env)
    assert down.returncode == 0, down.stderr
    assert component_pids(home) == []
    assert not (home / "clusters" / "edge").exists()

    missing = run(["dev", "cluster", "down", "edge"], dev_env)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_ctrl_c_during_up_stops_what_was_started(dev_env: dict[str, str]) -> None:
    home = Path(dev_env["FLOTILLA_DEV_HOME"])
    proc = subprocess.Popen(
        [*FLOTILLA, "dev", "cluster", "up", "interrupted"],
        env=dev_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not component_pids(home):
        time.sleep(0.05)
    assert component_pids(home), "no component started before the deadline"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert component_pids(home) == []
    assert not (home / "clusters" / "interrupted").exists()


def test_bad_node_count_is_one_line(dev_env: dict[str, str]) -> None:
    result = run(["dev", "cluster", "up", "x", "--nodes", "0"], dev_env)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: --nodes: must be at least 1 (0)"


# The swallowed KeyboardInterrupt is what pytest reports as an unraisable exception.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_the_interpreter_swallows_is_still_noted() -> None:
    """A SIGINT that lands while a finalizer runs never reaches the code as KeyboardInterrupt
    (the interpreter prints "Exception ignored" and goes on): `dev cluster up` notes every
    SIGINT as well, so it undoes the start even then."""

    class Finalized:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGINT)

    # SIG_IGN when this process was started by a shell's background job (no job control):
    # `dev cluster up` handles SIGINT there too, and puts back what it found.
    before = signal.getsignal(signal.SIGINT)
    with _interrupts_noted() as noted:
        Finalized()  # collected at once: the KeyboardInterrupt is raised in __del__
        assert noted.is_set()
    with _interrupts_noted() as quiet:
        pass
    assert not quiet.is_set()
    assert signal.getsignal(signal.SIGINT) == before
