"""The lint rules that keep workflow code deterministic do catch what they are meant to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).with_name("ruff")

NONDETERMINISTIC = """\
import random
import time
import uuid
from datetime import datetime


def probe() -> object:
    return time.time(), datetime.now(), random.random(), uuid.uuid4()
"""


def ruff(source: str, filename: str) -> str:
    result = subprocess.run(
        [str(RUFF), "check", "--no-cache", "--stdin-filename", filename, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return result.stdout + result.stderr


def test_clock_randomness_and_uuid4_are_refused_in_workflow_code() -> None:
    out = ruff(NONDETERMINISTIC, "workflows/probe.py")

    for banned in ("time.time", "datetime.datetime.now", "random", "uuid.uuid4"):
        assert f"`{banned}` is banned" in out, out


@pytest.mark.parametrize("filename", ["activities/probe.py", "flotilla/probe.py"])
def test_the_same_code_is_allowed_outside_workflows(filename: str) -> None:
    assert "TID251" not in ruff(NONDETERMINISTIC, filename)
