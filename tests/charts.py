"""Chart sources and secrets for tests: charts, chart servers (with basic auth too), age keys.

Everything is real: charts are packaged by ``helm package``, repositories indexed by
``helm repo index`` and served by ``http.server``; age keys come from ``age-keygen`` and
encrypted files from ``sops``. A recorder wraps a tool to keep the argv of every run, so
tests can show that no secret was ever on a command line.
"""

from __future__ import annotations

import base64
import functools
import http.server
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


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
    """An HTTP server on 127.0.0.1 serving a directory: a chart repo and plain .tgz files.

    With credentials, every request needs them (basic auth); ``authorizations`` keeps the
    Authorization header of each request ("" when there was none).
    """

    url: str
    root: Path
    username: str = ""
    password: str = ""
    authorizations: list[str] = field(default_factory=list)


class _Handler(http.server.SimpleHTTPRequestHandler):
    chart_server: ChartServer

    def _allowed(self) -> bool:
        served = self.chart_server
        header = self.headers.get("Authorization") or ""
        served.authorizations.append(header)
        if not served.password:
            return True
        expected = base64.b64encode(f"{served.username}:{served.password}".encode()).decode()
        if header == f"Basic {expected}":
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="charts"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_GET(self) -> None:
        if self._allowed():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._allowed():
            super().do_HEAD()

    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def serve_charts(
    root: Path, charts: list[Path], helm: str, *, username: str = "", password: str = ""
) -> Iterator[ChartServer]:
    """Package ``charts`` into ``root``, index them and serve the directory."""
    for chart in charts:
        package_chart(chart, root, helm)
    served = ChartServer(url="", root=root, username=username, password=password)
    handler = type("Handler", (_Handler,), {"chart_server": served})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    subprocess.run([helm, "repo", "index", str(root), "--url", served.url], check=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class AgeKey:
    """An age key pair from age-keygen: the identity file's text and the public recipient."""

    identity: str
    recipient: str


def make_age_key(directory: Path, age_keygen: str) -> AgeKey:
    path = directory / "key.txt"
    subprocess.run([age_keygen, "-o", str(path)], check=True, capture_output=True)
    text = path.read_text()
    (recipient,) = [
        line.split(":", 1)[1].strip() for line in text.splitlines() if "public key:" in line
    ]
    return AgeKey(identity=text, recipient=recipient)


def sops_encrypt(
    sops: str, text: str, recipient: str, *, suffix: str = ".yaml", encrypted_regex: str = ""
) -> str:
    """``text`` encrypted by the real sops for ``recipient``; ``encrypted_regex`` limits which
    keys are encrypted (as people do for Secrets: ``^(data|stringData)$``)."""
    kind = "json" if suffix == ".json" else "yaml"
    args = [sops, "encrypt", "--age", recipient, "--input-type", kind, "--output-type", kind]
    args += ["--encrypted-regex", encrypted_regex] if encrypted_regex else []
    done = subprocess.run(
        [*args, "/dev/stdin"], input=text, capture_output=True, text=True, check=True
    )
    return done.stdout


class ArgvRecorder:
    """Wraps tools in scripts that append their argv to a log, then run the real tool."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log = directory / "argv.log"
        directory.mkdir(parents=True, exist_ok=True)
        self.log.touch()

    def wrap(self, name: str, real: str) -> str:
        script = self.directory / name
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{self.log}"\nexec "{real}" "$@"\n')
        script.chmod(0o755)
        return str(script)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()
