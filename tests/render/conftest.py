"""Real helm and kustomize on PATH, and the chart servers render tests fetch from.

Chart servers are real: a Helm chart repository (``index.yaml`` made by ``helm repo index``)
and a plain .tgz URL served by ``http.server`` in a thread, and the OCI registry of
``devenv.registry`` (Debian's docker-registry) that ``helm push`` uploads to.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devenv import tools
from devenv.registry import LocalRegistry


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


def write_chart(directory: Path, name: str, version: str) -> Path:
    """A tiny chart whose ConfigMap carries the chart version and a value."""
    chart = directory / f"{name}-{version}"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: {version}\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-info\n"
        "data:\n  chartVersion: {{ .Chart.Version | quote }}\n"
        "  greeting: {{ .Values.greeting | quote }}\n"
        "  namespace: {{ .Release.Namespace | quote }}\n"
    )
    return chart


def package_chart(chart: Path, dest: Path, helm: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([helm, "package", str(chart), "-d", str(dest)], check=True, capture_output=True)
    (package,) = dest.glob(f"{chart.name}.tgz")
    return package


@dataclass
class ChartServer:
    """An HTTP server on 127.0.0.1 serving a directory: a chart repo and plain .tgz files."""

    url: str
    root: Path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="session")
def chart_server(
    tmp_path_factory: pytest.TempPathFactory, render_tools: dict[str, str]
) -> Iterator[ChartServer]:
    """Charts ``demo`` 0.1.0 and 0.2.0 in a Helm repository (index.yaml by ``helm repo index``)."""
    root = tmp_path_factory.mktemp("chart-repo")
    sources = tmp_path_factory.mktemp("chart-src")
    helm = render_tools["helm"]
    for version in ("0.1.0", "0.2.0"):
        package_chart(write_chart(sources, "demo", version), root, helm)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    subprocess.run([helm, "repo", "index", str(root), "--url", url], check=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ChartServer(url=url, root=root)
    server.shutdown()
    server.server_close()


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
