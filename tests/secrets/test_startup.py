"""A management kubeconfig that cannot be used stops the worker and the CLI at start-up, with
one line naming the variable, before any work is taken."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.temporal import TemporalDevServer
from starters.cli import main as cli_main
from worker import main as worker_main


@pytest.fixture
def bad_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    missing = str(tmp_path / "missing.kubeconfig")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOTILLA_SECRET_BACKEND", "kubernetes")
    monkeypatch.setenv("FLOTILLA_MANAGEMENT_KUBECONFIG", missing)
    return f"FLOTILLA_MANAGEMENT_KUBECONFIG={missing!r} cannot be read: No such file or directory"


def test_the_worker_stops_at_start_up(
    bad_kubeconfig: str,
    temporal_server: TemporalDevServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_server.address)
    assert worker_main([]) == 2
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [bad_kubeconfig]


def test_the_cli_stops_at_start_up(bad_kubeconfig: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["secret", "list"]) == 1
    assert capsys.readouterr().err == f"error: {bad_kubeconfig}\n"
