"""Ports for parallel test processes: each takes them from its own range (FLOTILLA_PORT_RANGE)."""

from __future__ import annotations

import socket

import pytest

from devenv.process import PORT_RANGE_ENV, StartupError, free_port, port_is_free, port_range


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
        # The machine is shared: a neighbour of ours may be in use by another process too.
        free = {p for p in range(taken + 1, taken + 4) if port_is_free(p)}
        picked = {free_port() for _ in free}
        assert picked == free  # the bound one is skipped, none is handed out twice
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
