"""Ports for parallel test processes: each takes them from its own range (FLOTILLA_PORT_RANGE)."""

from __future__ import annotations

import socket

import pytest

from devenv.process import PORT_RANGE_ENV, StartupError, free_port, port_range


def test_the_session_has_a_range_below_the_ephemeral_ports() -> None:
    ports = port_range()  # set by tests/conftest.py for this process
    assert ports is not None and ports.start >= 10000 and ports.stop <= 32768


def test_ports_come_from_the_range_and_are_not_handed_out_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = squatter.getsockname()[1]
        monkeypatch.setenv(PORT_RANGE_ENV, f"{taken}-{taken + 3}")
        picked = {free_port() for _ in range(3)}
        assert picked == {taken + 1, taken + 2, taken + 3}  # the bound one is skipped
        # All handed out: the range starts over, still skipping the port in use.
        assert free_port() in picked


def test_a_full_range_and_a_bad_range_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = squatter.getsockname()[1]
        monkeypatch.setenv(PORT_RANGE_ENV, f"{taken}-{taken}")
        with pytest.raises(StartupError, match=f"no free port left in {PORT_RANGE_ENV}"):
            free_port()
    monkeypatch.setenv(PORT_RANGE_ENV, "20000")
    with pytest.raises(ValueError, match="is not LOW-HIGH"):
        free_port()
