"""The `flotilla` entry point: exit codes by kind of failure, and imports only what a command
needs (the Temporal and Kubernetes clients cost seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devenv.process import free_port
from devenv.tools import tools_dir
from starters.cli import (
    EXIT_INTERNAL_ERROR,
    EXIT_UNREACHABLE,
    EXIT_USAGE_ERROR,
    EXIT_USER_ERROR,
    main,
)

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "examples/clusters.yaml"

# Ends as the console script does (``starters.cli.run``): flushed, then os._exit, without
# interpreter finalization, where the Temporal client's native threads sometimes abort the
# process (PyGILState_Release, SIGABRT; ~1 run in 12 at load 8 for `get gitrepos`).
_PROBE = """
import contextlib, io, json, os, sys
from starters.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as done:
        code = done.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"temporalio", "kubernetes", "git"})
print(json.dumps({"code": code, "heavy": heavy}), flush=True)
os._exit(0)
"""


def probe(*argv: str) -> dict[str, object]:
    """Run the CLI in a fresh interpreter; which heavy packages did it import?"""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env={**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"},
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["bundle", "--help"],
        ["diff", "--help"],
        ["bundle", str(ROOT / "examples/fleet-examples/raw-overlays")],
        ["target", str(ROOT / "examples/fleet-examples"), "--clusters", str(CLUSTERS)],
        ["test", str(ROOT / "examples/fleet-examples/raw-overlays")],
    ],
)
def test_help_and_offline_commands_import_no_client(argv: list[str]) -> None:
    result = probe(*argv)
    assert result["heavy"] == []
    assert result["code"] == 0


@pytest.mark.parametrize(
    ("argv", "code", "heavy"),
    [
        (["get", "--help"], 0, []),
        # No HTTP API (TEMPORAL_ADDRESS is set, TEMPORAL_HTTP_ADDRESS is not): through gRPC.
        (["get", "gitrepos"], EXIT_UNREACHABLE, ["temporalio"]),
    ],
)
def test_control_commands_import_neither_kubernetes_nor_git(
    argv: list[str], code: int, heavy: list[str]
) -> None:
    result = probe(*argv)
    assert result["heavy"] == heavy
    assert result["code"] == code


def test_unreachable_temporal_is_one_line_and_its_own_exit_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{port}")
    code = main(["get", "gitrepos"])
    err = capsys.readouterr().err
    assert code == EXIT_UNREACHABLE
    assert err.startswith(f"error: cannot reach Temporal at 127.0.0.1:{port}: connection refused")
    assert "TEMPORAL_ADDRESS" in err and err.count("\n") == 1


def test_usage_user_and_internal_errors_have_distinct_codes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["no-such-command"])
    assert usage.value.code == EXIT_USAGE_ERROR
    assert main(["bundle", str(tmp_path / "missing")]) == EXIT_USER_ERROR
    monkeypatch.setenv("FLOTILLA_SECRET_BACKEND", "vault")
    # A bad setting is the user's to fix, named with its value.
    assert main(["test", str(ROOT / "examples/fleet-examples/raw-overlays")]) == EXIT_USER_ERROR
    assert "FLOTILLA_SECRET_BACKEND='vault'" in capsys.readouterr().err
    assert len({EXIT_USAGE_ERROR, EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_UNREACHABLE}) == 4


def test_offline_test_finds_the_pinned_tools_make_tools_built_without_path(
    tools_on_path: list[Path],
) -> None:
    """The README's `flotilla test ... -l env=prod` right after `make dev`: helm and kustomize
    come from the tool cache, not from PATH."""
    done = subprocess.run(
        [
            sys.executable, "-m", "starters.cli", "test", "examples/fleet-examples",
            "--gitrepo", "examples/gitrepo.yaml", "-l", "env=prod",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ["HOME"],
             "FLOTILLA_TOOLS_DIR": str(tools_dir())},
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "# bundle fleet-examples-helm-kustomize" in done.stdout


@pytest.mark.parametrize("kind", ["gitrepos", "images"])
def test_get_takes_every_kind_and_says_when_temporal_is_away(
    kind: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`get images` comes from a second command module: it must parse like the others."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    assert main(["get", kind]) == EXIT_UNREACHABLE
    assert "cannot reach Temporal" in capsys.readouterr().err


def test_diff_errors_are_exit_2_as_diff_has_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    # diff(1)'s codes: 1 means "changes", so every error (here Temporal away) is 2.
    assert main(["diff", "gitrepo", "shop"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot reach Temporal")
