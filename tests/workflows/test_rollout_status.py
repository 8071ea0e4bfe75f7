"""`flotilla rollout status` against real rollouts: exit 0 when Ready, 1 with the reason when a
bundle is ErrApplied, 5 when --timeout passes first; a line per change when not a terminal.
`flotilla apply -f F --wait`, which follows the rollouts of what it applied the same way.
And `flotilla get -w`, which follows the same rollouts as a table."""

from __future__ import annotations

import asyncio
import os
import sys

from devenv.gitserver import GitDaemon
from devenv.temporal import TemporalDevServer
from tests.e2e.harness import Flotilla, gitrepo_yaml

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n"


def cli_env(fl: Flotilla, http_address: str = "") -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": fl.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": fl.client.namespace,
        "TEMPORAL_HTTP_ADDRESS": http_address,
    }


async def rollout_status(fl: Flotilla, *argv: str) -> tuple[int, str, str]:
    """The CLI in a subprocess (stdout a pipe, not a terminal), the worker running meanwhile."""
    env = cli_env(fl)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from starters.cli import run; run()",
        "rollout",
        "status",
        *argv,
        "-n",
        fl.namespace,
        "--task-queue",
        fl.config.task_queue,
        "--interval",
        "0.3",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_exit_codes_for_ready_err_applied_and_timeout(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    fl = flotilla
    good = git_daemon.create_repo(
        repo_name, {"a/cm.yaml": CM.format(name="a"), "a/fleet.yaml": "labels: {app: a}\n"}
    )
    bad = git_daemon.create_repo(
        repo_name + "-bad",
        {"b/cm.yaml": CM.format(name="b"), "b/fleet.yaml": "helm: {releaseName: Not_Valid}\n"},
    )
    for name, url in (("good", good), ("bad", bad)):
        await fl.control.apply_text(gitrepo_yaml(fl.namespace, name, url), file="gitrepo.yaml")
    # A GitRepo on a branch that does not exist never gets a commit.
    await fl.control.apply_text(
        gitrepo_yaml(fl.namespace, "stuck", good).replace("branch: main", "branch: nowhere"),
        file="gitrepo.yaml",
    )

    code, out, err = await rollout_status(fl, "gitrepo", "good", "--timeout", "60s")
    assert code == 0, (out, err)
    lines = out.splitlines()
    assert lines[-1].startswith(f"gitrepo {fl.namespace}/good: commit ")
    assert lines[-1].endswith("Ready") and "\r" not in out and "\x1b" not in out
    assert len(lines) == len(set(lines)), "a line is printed only when it changes"

    code, out, err = await rollout_status(fl, "bundle", "good-a", "--timeout", "60s")
    assert code == 0, (out, err)
    assert out.splitlines()[-1].startswith(f"bundle {fl.namespace}/good-a: commit ")

    code, out, err = await rollout_status(fl, "gitrepo", "bad", "--timeout", "60s")
    assert code == 1, (out, err)
    assert "ErrApplied" in out.splitlines()[-1]
    assert err.startswith("error: rollout failed: bad-b: ") and "releaseName" in err
    assert err.count("\n") == 1

    code, out, err = await rollout_status(fl, "gitrepo", "stuck", "--timeout", "2s")
    assert code == 5, (out, err)
    assert err.startswith("error: timed out after 2s waiting for gitrepo") and "nowhere" in err

    code, out, err = await rollout_status(fl, "bundle", "missing")
    assert code == 1 and err.strip() == f"error: bundle {fl.namespace}/missing not found"


async def test_get_watch_prints_the_table_then_each_changed_row(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str, temporal_server: TemporalDevServer
) -> None:
    fl = flotilla
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from starters.cli import run; run()",
        "get",
        "gitrepos",
        "-w",
        "-n",
        fl.namespace,
        "--watch-interval",
        "0.3",
        env=cli_env(fl, temporal_server.http_address),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        header = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        assert header.decode().split() == [
            "NAME",
            "REPO",
            "COMMIT",
            "BUNDLEDEPLOYMENTS-READY",
            "STATUS",
        ]
        url = git_daemon.create_repo(
            repo_name, {"a/cm.yaml": CM.format(name="a"), "a/fleet.yaml": "labels: {app: a}\n"}
        )
        await fl.control.apply_text(gitrepo_yaml(fl.namespace, "w", url), file="gitrepo.yaml")
        rows: list[str] = []
        while not (rows and rows[-1].endswith("Ready")):
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
            assert line, f"get -w stopped: {rows} {(await proc.stderr.read()).decode()}"  # type: ignore[union-attr]
            rows.append(line.decode().rstrip())
        assert all(row.startswith("w ") for row in rows)
        assert len(rows) == len({" ".join(row.split()) for row in rows}), rows
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def test_apply_wait_follows_the_rollout_to_ready_or_the_failure(
    flotilla: Flotilla, git_daemon: GitDaemon, repo_name: str
) -> None:
    fl = flotilla
    good = git_daemon.create_repo(repo_name, {"a/cm.yaml": CM.format(name="a")})
    bad = git_daemon.create_repo(
        repo_name + "-bad",
        {"b/cm.yaml": CM.format(name="b"), "b/fleet.yaml": "helm: {releaseName: Not_Valid}\n"},
    )
    results = {}
    for name, url in (("good", good), ("bad", bad)):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from starters.cli import run; run()",
            "apply",
            "-f",
            "-",
            "--wait",
            "--timeout",
            "90s",
            "--task-queue",
            fl.config.task_queue,
            env=cli_env(fl),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        text = gitrepo_yaml(fl.namespace, name, url).encode()
        out, err = await asyncio.wait_for(proc.communicate(text), timeout=150)
        results[name] = (proc.returncode, out.decode(), err.decode())
    code, out, err = results["good"]
    assert code == 0, (out, err)
    lines = out.splitlines()
    assert lines[0] == f"gitrepo {fl.namespace}/good applied"
    assert lines[-1].startswith(f"gitrepo {fl.namespace}/good: commit ") and lines[-1].endswith(
        "Ready"
    )
    code, out, err = results["bad"]
    assert code == 1, (out, err)
    assert err.startswith("error: rollout failed: bad-b: "), err
    assert "releaseName" in err and "Traceback" not in err
