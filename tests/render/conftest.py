"""Real helm and kustomize on PATH, and the chart servers render tests fetch from.

Chart servers are real: a Helm chart repository (``index.yaml`` made by ``helm repo index``)
and a plain .tgz URL served by ``http.server`` in a thread (``tests/charts.py``), and the OCI
registry of ``devenv.registry`` (Debian's docker-registry) that ``helm push`` uploads to.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv import tools
from devenv.registry import LocalRegistry
from tests.charts import ChartServer, package_chart, serve_charts, write_chart


@pytest.fixture(scope="session", autouse=True)
def render_tools() -> dict[str, str]:
    """helm and kustomize first on PATH for the code under test (a missing one fails)."""
    try:
        found = {name: str(tools.locate(name)) for name in ("helm", "kustomize")}
    except tools.ToolMissingError as err:
        pytest.fail(f"setup: {err}", pytrace=False)
    dirs = [str(Path(p).parent) for p in found.values()]
    os.environ["PATH"] = os.pathsep.join([*dirs, os.environ["PATH"]])
    return found


@pytest.fixture(scope="session")
def chart_server(
    tmp_path_factory: pytest.TempPathFactory, render_tools: dict[str, str]
) -> Iterator[ChartServer]:
    """Charts ``demo`` 0.1.0 and 0.2.0 in a Helm repository (index.yaml by ``helm repo index``)."""
    sources = tmp_path_factory.mktemp("chart-src")
    charts = [write_chart(sources, "demo", version) for version in ("0.1.0", "0.2.0")]
    root = tmp_path_factory.mktemp("chart-repo")
    with serve_charts(root, charts, render_tools["helm"]) as server:
        yield server


@pytest.fixture(scope="session")
def oci_registry(
    tmp_path_factory: pytest.TempPathFactory, render_tools: dict[str, str]
) -> Iterator[str]:
    """A real registry holding chart ``demo`` 0.3.0; yields ``oci://127.0.0.1:PORT/charts``."""
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as registry:
        sources = tmp_path_factory.mktemp("oci-src")
        package = package_chart(
            write_chart(sources, "demo", "0.3.0"), sources / "pkg", render_tools["helm"]
        )
        env = {**os.environ, "HELM_CONFIG_HOME": str(sources / "helm-config")}
        reference = f"oci://{registry.host}/charts"
        subprocess.run(
            [render_tools["helm"], "push", str(package), reference, "--plain-http"],
            check=True,
            capture_output=True,
            env=env,
        )
        yield reference
