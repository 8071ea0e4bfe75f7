"""How the receiver is started: the worker's --webhook-listen and `flotilla webhook serve`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flotilla.settings import settings_from_env
from worker import parse_args


def test_worker_flag_sets_the_listen_address_and_refuses_a_bad_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings = settings_from_env({}, home=tmp_path)
    assert parse_args([], settings).webhook_listen is None
    assert parse_args(["--webhook-listen", "0.0.0.0:8090"], settings).webhook_listen == (
        "0.0.0.0:8090"
    )
    with pytest.raises(SystemExit) as done:
        parse_args(["--webhook-listen", "8090"], settings)
    assert done.value.code == 2
    assert "--webhook-listen: listen address '8090' is not HOST:PORT" in capsys.readouterr().err


def test_serve_with_a_bad_address_is_one_line_and_loads_no_server() -> None:
    probe = (
        "import sys\nfrom starters.cli import main\ncode = main(sys.argv[1:])\n"
        "print(code, 'aiohttp' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "webhook", "serve", "--listen", "nowhere"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.split() == ["1", "False"]
    assert done.stderr.strip() == "error: --listen: listen address 'nowhere' is not HOST:PORT"
