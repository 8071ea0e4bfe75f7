"""Fixtures for the real components: tools on PATH, Temporal, local clusters, git daemon, registry.

Servers are session-scoped (they are slow to start and safe to share); each test gets its own
namespace, task queue or repository so tests do not see each other. A missing tool fails the
session with the command that fixes it: it never turns into a skip.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from _pytest.nodeid import NodeId
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from devenv import tools
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from devenv.process import PORT_RANGE_ENV, StartupError
from devenv.registry import BASIC_PASSWORD, BASIC_USER, LocalRegistry, htpasswd_auth
from devenv.temporal import TemporalDevServer, TemporalServer
from tests.charts import AgeKey, ChartServer, make_age_key, package_chart, serve_charts, write_chart
from tests.e2e.harness import Flotilla, start_flotilla
from tests.executor import DaemonThreadExecutor

# The private chart repository's credentials: distinctive, so tests can look for them.
CHART_USER, CHART_PASSWORD = "charts-bot", "chart-pw-Zq83v"

# Each test process takes its servers' ports from a block of its own (devenv.process
# free_port): BLOCKS blocks of BLOCK_SIZE below the kernel's ephemeral range.
PORT_BASE, BLOCK_SIZE, BLOCKS = 10000, 1000, 22


def _deadlock_seconds() -> float:
    """Temporal's workflow deadlock detector, scaled by the machine's load: the SDK fails a
    workflow task whose activation has not yielded within 2 s of *wall* time, so at load 30 on
    two cores ordinary planning code (a 200-cluster rollout) tripped it, and an update sent
    then was refused ("Workflow Task in failed state"). 2 s at load up to the core count, more
    in proportion above it, at most 20 s."""
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    return min(20.0, 2.0 * max(1.0, load))


def _scale_deadlock_detection() -> None:
    # A private attribute of temporalio's workflow worker (read at each activation, set to 2
    # in its __init__); debug_mode would lift the detector altogether and change how
    # workflows run (inline, sandbox relaxed), which the tests must not.
    from temporalio.worker import _workflow  # noqa: PLC0415

    original = _workflow._WorkflowWorker.__init__
    if getattr(original, "_flotilla_scaled", False):
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if self._deadlock_timeout_seconds is not None:
            self._deadlock_timeout_seconds = _deadlock_seconds()

    __init__._flotilla_scaled = True  # type: ignore[attr-defined]
    _workflow._WorkflowWorker.__init__ = __init__  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    _scale_deadlock_detection()
    _give_ports(config)


def _give_ports(config: pytest.Config) -> None:
    """Give this process (an xdist worker, or the only one) its block of ports. The workers of
    one run have consecutive blocks from an offset the run's id picks, so they never share a
    block, and two runs on the same machine seldom do (a port in use is skipped anyway)."""
    if PORT_RANGE_ENV in os.environ and not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # set by hand for a serial run
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
    low = PORT_BASE + ((zlib.crc32(run.encode()) + index) % BLOCKS) * BLOCK_SIZE
    os.environ[PORT_RANGE_ENV] = f"{low}-{low + BLOCK_SIZE - 1}"


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    """``--dist loadgroup``: put each test's ``xdist_group`` in its node id (``id@group``),
    where the scheduler looks for it. pytest-xdist does that itself by writing
    ``item._nodeid``, which pytest 9.2 no longer reads, so without this every group was
    spread over all workers (each started its own production Temporal server). As a wrapper
    it runs after every conftest has added its markers."""
    yield
    if not config.getoption("loadgroup", default=False):  # set in xdist workers only
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        if names and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(sorted(names))}")


@pytest.fixture(scope="session", autouse=True)
async def session_executor() -> AsyncIterator[DaemonThreadExecutor]:
    """The session loop runs ``asyncio.to_thread`` on daemon threads, and closing it waits
    for a call still blocked only briefly, naming it in a warning (tests/executor.py): a
    call a test left behind no longer holds the session's end for minutes."""
    executor = DaemonThreadExecutor(max_workers=32)
    asyncio.get_running_loop().set_default_executor(executor)
    yield executor


@pytest.fixture(scope="session")
def tools_on_path() -> list[Path]:
    """Every pinned binary, first on PATH, for the code under test and for subprocesses."""
    try:
        dirs = tools.bin_dirs()
    except tools.ToolMissingError as err:
        pytest.fail(f"setup: {err}", pytrace=False)
    os.environ["PATH"] = os.pathsep.join([*(str(d) for d in dirs), os.environ["PATH"]])
    return dirs


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    with TemporalDevServer(tmp_path_factory.mktemp("temporal"), headless=True) as server:
        yield server


@pytest.fixture(scope="session")
async def temporal_client(temporal_server: TemporalDevServer) -> AsyncIterator[Client]:
    yield await Client.connect(temporal_server.address, data_converter=pydantic_data_converter)


def start_production_temporal(directory: Path, **options: object) -> TemporalServer:
    """The Temporal server as production runs it (PostgreSQL, SQL visibility, 4 history
    shards, set up by `flotilla setup`); a missing tool fails with the command that builds it."""
    try:
        return TemporalServer(directory, **options).start()  # type: ignore[arg-type]
    except (tools.ToolMissingError, StartupError) as err:
        pytest.fail(f"setup: {err}", pytrace=False)


@pytest.fixture(scope="session")
def production_temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    """One production-shaped server for the session's ``prodtemporal`` tests."""
    server = start_production_temporal(tmp_path_factory.mktemp("prodtemporal"))
    yield server
    server.stop()


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def local_cluster(
    tmp_path_factory: pytest.TempPathFactory, tools_on_path: list[Path]
) -> Iterator[LocalCluster]:
    with LocalCluster("flotilla-test", tmp_path_factory.mktemp("cluster"), nodes=2) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def management_cluster(
    tmp_path_factory: pytest.TempPathFactory, tools_on_path: list[Path]
) -> Iterator[LocalCluster]:
    """The management cluster of the ``kubernetes`` secret store: an API server and etcd
    only, apart from the downstream ``local_cluster``."""
    with LocalCluster(
        "flotilla-management", tmp_path_factory.mktemp("management"), workloads=False
    ) as cluster:
        yield cluster


@pytest.fixture
def namespace(local_cluster: LocalCluster) -> Iterator[str]:
    """A fresh namespace in the shared cluster, deleted after the test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    local_cluster.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    yield name
    local_cluster.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture(scope="session")
def git_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitDaemon]:
    with GitDaemon(tmp_path_factory.mktemp("git")) as daemon:
        yield daemon


@pytest.fixture
def repo_name() -> str:
    """A fresh repository name on the shared git daemon."""
    return f"repo-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


def locate(binary: str) -> str:
    """A pinned binary's path; missing, the session fails with the command that builds it."""
    try:
        return str(tools.locate(binary))
    except tools.ToolMissingError as err:
        pytest.fail(f"setup: {err}", pytrace=False)


@pytest.fixture(scope="session")
def private_chart_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartServer]:
    """Chart ``private`` 1.0.0 in a Helm repository that needs CHART_USER / CHART_PASSWORD."""
    chart = write_chart(tmp_path_factory.mktemp("private-src"), "private", "1.0.0")
    root = tmp_path_factory.mktemp("private-repo")
    helm = locate("helm")
    with serve_charts(root, [chart], helm, username=CHART_USER, password=CHART_PASSWORD) as server:
        yield server


@pytest.fixture(scope="session")
def private_oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry with basic auth (BASIC_USER / BASIC_PASSWORD of devenv.registry) holding chart
    ``private`` 1.0.0; yields ``oci://127.0.0.1:PORT/charts``."""
    helm = locate("helm")
    sources = tmp_path_factory.mktemp("private-oci-src")
    package = package_chart(write_chart(sources, "private", "1.0.0"), sources / "pkg", helm)
    env = {**os.environ, "HELM_CONFIG_HOME": str(sources / "helm-config")}
    directory = tmp_path_factory.mktemp("private-registry")
    with LocalRegistry(directory, auth=htpasswd_auth(directory)) as registry:
        login = [helm, "registry", "login", registry.host, "--username", BASIC_USER]
        subprocess.run(
            [*login, "--password-stdin", "--plain-http"],
            input=BASIC_PASSWORD,
            text=True,
            check=True,
            capture_output=True,
            env=env,
        )
        reference = f"oci://{registry.host}/charts"
        subprocess.run(
            [helm, "push", str(package), reference, "--plain-http"],
            check=True,
            capture_output=True,
            env=env,
        )
        yield reference


@pytest.fixture(scope="session")
def age_key(tmp_path_factory: pytest.TempPathFactory) -> AgeKey:
    """An age key pair made by age-keygen, for encrypting fixtures with sops."""
    return make_age_key(tmp_path_factory.mktemp("age"), locate("age-keygen"))


@pytest.fixture
async def flotilla(
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    tools_on_path: list[Path],
    local_cluster: LocalCluster,
) -> AsyncIterator[Flotilla]:
    """A flotilla per test: in-process worker on a fresh task queue and a fresh Fleet namespace."""
    fl = await start_flotilla(temporal_client, task_queue, tmp_path)
    try:
        yield fl
    finally:
        await fl.cleanup()
        await fl.worker.stop()
