"""`flotilla cluster token create|list|delete` and `flotilla agent --token` as a person runs
them, against real Temporal: the token is printed once with a ready `helm install`, an agent
process registers with it, and refused tokens end the agent with one line and exit 1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from flotilla.ids import registry_workflow_id
from starters.agent import STARTED_LINE
from tests.e2e.harness import Flotilla, WorkerProcess, history_text
from tests.notifications.test_delivery import free_port

ROOT = Path(__file__).resolve().parents[2]
# Nothing answers there: the agent's beats say so, and registration does not need it.
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: agent-own-token-never-elsewhere}}]
contexts: [{name: main, context: {cluster: c, user: u}}]
current-context: main
"""


def env_for(flotilla: Flotilla, root: Path) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "PYTHONPATH": str(ROOT),
        "FLOTILLA_WORKDIR": str(root / "work"),
        "FLOTILLA_SECRETS_DIR": str(root / "secrets"),
        "FLOTILLA_CONTENT_DIR": str(root / "content"),
        "TEMPORAL_ADDRESS": flotilla.client.service_client.config.target_host,
    }


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The agent's /metrics, parsed with the Prometheus client's parser: name -> samples."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starters.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=180,
        check=False,
    )


async def test_token_cli_and_an_agent_registering_with_it(
    flotilla: Flotilla, tmp_path: Path
) -> None:
    ns, queue = flotilla.namespace, flotilla.config.task_queue
    env = env_for(flotilla, tmp_path / "cli")
    common = ["-n", ns, "--task-queue", queue]

    made = await asyncio.to_thread(
        run,
        env,
        "cluster",
        "token",
        "create",
        "edge-token",
        "--ttl",
        "1h",
        "-l",
        "env=edge",
        "--max-uses",
        "1",
        *common,
    )
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    token = lines[1]
    assert token.startswith(f"flt1.{ns}.")
    assert lines[3].strip().startswith("helm install flotilla-agent charts/flotilla-agent")
    assert (
        f"token={token}" in lines[3] and f"temporal.address={env['TEMPORAL_ADDRESS']}" in lines[3]
    )

    bad_ttl = await asyncio.to_thread(
        run, env, "cluster", "token", "create", "--ttl", "soon", *common
    )
    assert bad_ttl.returncode == 1 and len(bad_ttl.stderr.strip().splitlines()) == 1
    assert "--ttl" in bad_ttl.stderr and "Traceback" not in bad_ttl.stderr

    agent_root = tmp_path / "agent"
    agent_env = env_for(flotilla, agent_root)
    (agent_root / "kubeconfig").write_text(KUBECONFIG)
    agent_env["FLOTILLA_AGENT_TOKEN"] = token
    metrics_port = free_port()
    argv = [
        sys.executable,
        "-m",
        "starters.cli",
        "agent",
        "--name",
        "edge-1",
        "-l",
        "zone=a",
        "--kubeconfig",
        str(agent_root / "kubeconfig"),
        "--heartbeat-seconds",
        "2",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
        "--task-queue",
        queue,
    ]
    agent = WorkerProcess(
        agent_root / "agent.log",
        argv,
        agent_env,
        ROOT,
        started_line=STARTED_LINE,
        start_seconds=180,
    )
    try:
        await asyncio.to_thread(agent.start)
        snapshot = await flotilla.control.registry(ns)
        (edge,) = [c for c in snapshot.clusters if c.name == "edge-1"]
        assert edge.agent and edge.labels == {"zone": "a", "env": "edge"}
        # Its API server does not answer: the agent says so in its beat, the cluster is Offline.
        await flotilla.eventually(
            lambda: flotilla.control.registry(ns),
            lambda s: any(
                c.name == "edge-1" and "unreachable" in c.unreachable for c in s.clusters
            ),
            timeout=60,
        )
        # Its own metrics say the same: the cluster never answered, the beats go through,
        # and the Temporal SDK's metrics come along.
        metrics = await asyncio.to_thread(scrape, metrics_port)
        mine = {"namespace": ns, "name": "edge-1"}
        assert metrics["flotilla_cluster_unreachable"] == [(mine, 1.0)], metrics
        assert metrics["flotilla_cluster_last_seen_age_seconds"] == [(mine, -1.0)]
        [(_, beat_age)] = metrics["flotilla_agent_heartbeat_age_seconds"]
        assert 0 <= beat_age < 60, beat_age
        assert any(name.startswith("temporal_") for name in metrics), sorted(metrics)
        listed = await asyncio.to_thread(run, env, "cluster", "token", "list", *common)
        assert listed.returncode == 0, listed.stderr
        assert (
            "edge-token" in listed.stdout and "1/1" in listed.stdout and "edge-1" in listed.stdout
        )
        assert token not in listed.stdout

        # The same token for a second cluster: over its limit, one line, exit 1.
        second = dict(agent_env, HOME=str(tmp_path / "second"))

        async def refused(name: str) -> list[str]:
            """An agent that may not register: exit 1 and its stderr lines."""
            done = await asyncio.to_thread(
                run, second, "agent", "--name", name,
                "--kubeconfig", str(agent_root / "kubeconfig"), "--task-queue", queue,
            )  # fmt: skip
            assert done.returncode == 1
            return done.stderr.strip().splitlines()

        assert await refused("edge-2") == [
            "error: registration token edge-token was used 1 time(s), its limit is 1"
        ]
        deleted = await asyncio.to_thread(
            run, env, "cluster", "token", "delete", "edge-token", *common
        )
        assert deleted.returncode == 0 and "deleted" in deleted.stdout
        assert await refused("edge-1") == ["error: registration token edge-token was deleted"]
        await asyncio.to_thread(agent.stop)
        assert agent.proc is not None and agent.proc.returncode == 0
    finally:
        await asyncio.to_thread(agent.kill)
    history = await flotilla.client.get_workflow_handle(registry_workflow_id(ns)).fetch_history()
    texts = [history_text(history), agent.log.read_text(), " ".join(argv), listed.stdout]
    for secret in (token, "agent-own-token-never-elsewhere"):
        assert not [t for t in texts if secret in t]
