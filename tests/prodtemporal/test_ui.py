"""The Temporal UI beside the production-shaped server: its own process (the UI project's Go
server, built like the other tools) pointing at that server, showing what runs there; and
``python -m devenv.temporal`` (``make temporal-postgres``), which starts both for a user."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from temporalio.client import Client

from devenv.temporal import TemporalServer

ROOT = Path(__file__).resolve().parents[2]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


async def test_the_ui_shows_the_workflows_of_the_postgres_server(
    production_temporal: TemporalServer, temporal_client: Client
) -> None:
    ui = production_temporal.ui_url
    assert b"<!doctype html>" in get(ui + "/").lower()
    settings = json.loads(get(ui + "/api/v1/settings"))
    assert settings["DefaultNamespace"] == production_temporal.namespace

    # A workflow nobody serves (no worker needed to be listed): started on this server, it
    # must be what the UI lists, read through the UI server's own API proxy.
    workflow_id = f"ui-probe-{uuid.uuid4().hex[:8]}"
    handle = await temporal_client.start_workflow(
        "UiProbe", id=workflow_id, task_queue=f"nobody-{uuid.uuid4().hex[:8]}"
    )
    try:
        query = urllib.parse.quote(f'WorkflowId="{workflow_id}"')
        listing = f"{ui}/api/v1/namespaces/{production_temporal.namespace}/workflows?query={query}"
        deadline = time.monotonic() + 30
        listed: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            listed = json.loads(get(listing)).get("executions", [])
            if listed:
                break
            await asyncio.sleep(0.5)
        assert [e["execution"]["workflowId"] for e in listed] == [workflow_id]  # type: ignore[index]
        assert listed[0]["type"] == {"name": "UiProbe"}
    finally:
        await handle.terminate("test done")


def test_make_temporal_postgres_prints_the_server_and_its_ui_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devenv.temporal", "--dir", str(tmp_path / "state")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any(
            line.startswith("Temporal UI: ") for line in lines
        ):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        ui_lines = [line for line in lines if line.startswith("Temporal UI: ")]
        assert ui_lines, "\n".join(lines)
        assert lines[0].startswith("Temporal (PostgreSQL, 4 shards): 127.0.0.1:")
        ui = ui_lines[0].removeprefix("Temporal UI: ")
        namespaces = json.loads(get(ui + "/api/v1/namespaces"))["namespaces"]
        assert "default" in [n["namespaceInfo"]["name"] for n in namespaces]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, "\n".join(lines)
    # Everything it started is gone: PostgreSQL's pid file goes with the server.
    assert not list((tmp_path / "state").rglob("postmaster.pid"))
