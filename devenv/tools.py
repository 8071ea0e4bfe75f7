"""Pinned tool binaries: find them (KUBEBUILDER_ASSETS, PATH, cache) or build them with Go.

Each tool is built in a throw-away Go module under the cache that requires the tool's module
at the pinned version, so that ``replace`` directives in the tool's own go.mod (which
``go install`` refuses) do not matter. Binaries land in
``$FLOTILLA_TOOLS_DIR/<tool>-<version>/`` (default ``~/.cache/flotilla/tools``), written to a
temporary directory first and renamed into place, so an interrupted build never leaves a
half-written tool behind.

Run ``python -m devenv.tools`` (or ``make tools``) to build everything that is missing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

KUBERNETES_VERSION = "1.34.4"
# The dev server (`temporal server start-dev`) reports Server 1.32.0; the production-shaped
# server is the same line. 1.32.2 needs Go >= 1.26.10 (the toolchain here is 1.26.8, and
# GOTOOLCHAIN=local forbids fetching another), so the newest patch that builds is pinned.
TEMPORAL_SERVER_VERSION = "1.32.1"
# The newest Helm 4 release the Go module proxy serves (Fleet 0.15 moved to Helm 4).
HELM_VERSION = "4.3.2"
HELM3_VERSION = "3.21.4"
_STAGING_VERSION = "0." + KUBERNETES_VERSION.split(".", 1)[1]
# Staging modules of k8s.io/kubernetes; its go.mod points them at ./staging, which a
# dependent module must replace with the published versions.
_K8S_STAGING = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
)

SETUP_HINT = "run `make tools` (or `python -m devenv.tools`) to build it"


class ToolMissingError(RuntimeError):
    """A required binary is neither cached, on PATH nor buildable here."""


@dataclass(frozen=True)
class Tool:
    name: str
    version: str
    module: str
    packages: tuple[str, ...]
    binaries: tuple[str, ...]
    version_args: tuple[str, ...]
    ldflags: tuple[str, ...] = ()
    replaces: dict[str, str] = field(default_factory=dict)
    # Optional tools are built by `make tools` but are not needed on PATH for the tests that
    # do not use them: bin_dirs() skips them when they are missing.
    optional: bool = False

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


def _k8s_ldflags() -> tuple[str, ...]:
    major, minor, _ = KUBERNETES_VERSION.split(".")
    pkg = "k8s.io/component-base/version"
    return (
        f"-X {pkg}.gitVersion=v{KUBERNETES_VERSION}",
        f"-X {pkg}.gitMajor={major}",
        f"-X {pkg}.gitMinor={minor}",
        f"-X {pkg}.gitTreeState=clean",
        f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
    )


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool(
            name="kubernetes",
            version=KUBERNETES_VERSION,
            module="k8s.io/kubernetes",
            packages=(
                "k8s.io/kubernetes/cmd/kube-apiserver",
                "k8s.io/kubernetes/cmd/kube-controller-manager",
                "k8s.io/kubernetes/cmd/kube-scheduler",
            ),
            binaries=("kube-apiserver", "kube-controller-manager", "kube-scheduler"),
            version_args=("--version",),
            ldflags=_k8s_ldflags(),
            replaces={f"k8s.io/{m}": f"k8s.io/{m}@v{_STAGING_VERSION}" for m in _K8S_STAGING},
        ),
        Tool(
            name="etcd",
            version="3.6.16",
            module="go.etcd.io/etcd/server/v3",
            packages=("go.etcd.io/etcd/server/v3",),
            binaries=("etcd",),
            version_args=("--version",),
        ),
        Tool(
            name="kwok",
            version="0.8.0",
            module="sigs.k8s.io/kwok",
            packages=("sigs.k8s.io/kwok/cmd/kwok",),
            binaries=("kwok",),
            version_args=("--version",),
        ),
        Tool(
            name="helm",
            version=HELM_VERSION,
            module="helm.sh/helm/v4",
            packages=("helm.sh/helm/v4/cmd/helm",),
            binaries=("helm",),
            version_args=("version", "--short"),
            ldflags=(f"-X helm.sh/helm/v4/internal/version.version=v{HELM_VERSION}",),
        ),
        # The previous pin, kept only for the test that upgrades releases Helm 3 installed
        # (tests/activities/test_helm4_upgrade.py); named helm3 so it never shadows helm.
        Tool(
            name="helm3",
            version=HELM3_VERSION,
            module="helm.sh/helm/v3",
            packages=("helm.sh/helm/v3/cmd/helm",),
            binaries=("helm3",),
            version_args=("version", "--short"),
            ldflags=(f"-X helm.sh/helm/v3/internal/version.version=v{HELM3_VERSION}",),
        ),
        Tool(
            name="kustomize",
            version="5.8.2",
            module="sigs.k8s.io/kustomize/kustomize/v5",
            packages=("sigs.k8s.io/kustomize/kustomize/v5",),
            binaries=("kustomize",),
            version_args=("version",),
            ldflags=("-X sigs.k8s.io/kustomize/api/provenance.version=v5.8.2",),
        ),
        Tool(
            name="sops",
            version="3.13.3",
            module="github.com/getsops/sops/v3",
            packages=("github.com/getsops/sops/v3/cmd/sops",),
            binaries=("sops",),
            # Without the flag, asking sops its version asks GitHub for the latest release.
            version_args=("--version", "--disable-version-check"),
        ),
        # A production-shaped Temporal (issue 19): the server and its SQL schema tool, both in
        # the server's module; only these two commands are built (the UI is the next tool).
        Tool(
            name="temporal",
            version=TEMPORAL_SERVER_VERSION,
            module="go.temporal.io/server",
            packages=("go.temporal.io/server/cmd/server", "go.temporal.io/server/cmd/tools/sql"),
            binaries=("temporal-server", "temporal-sql-tool"),
            version_args=("--version",),
            optional=True,
        ),
        # The Temporal UI for that server: the UI project's Go server, whose module carries the
        # built web assets, so it builds with Go like the rest (no Node). Its version is the one
        # the dev server's CLI embeds (`temporal --version` prints "UI 2.54.1").
        Tool(
            name="temporal-ui",
            version="2.54.1",
            module="github.com/temporalio/ui-server/v2",
            packages=("github.com/temporalio/ui-server/v2/cmd/server",),
            binaries=("temporal-ui-server",),
            version_args=("--version",),
            optional=True,
        ),
        # Only the tests need age-keygen: they make the age keys SOPS files are encrypted to.
        Tool(
            name="age",
            version="1.3.2",
            module="filippo.io/age",
            packages=("filippo.io/age/cmd/age-keygen",),
            binaries=("age-keygen",),
            version_args=("--version",),
            ldflags=("-X main.Version=v1.3.2",),
        ),
    )
}
BINARY_TO_TOOL = {b: t for t in TOOLS.values() for b in t.binaries}


def tools_dir() -> Path:
    env = os.environ.get("FLOTILLA_TOOLS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "flotilla" / "tools"


def _reports_version(path: Path, tool: Tool) -> bool:
    try:
        out = subprocess.run(
            [str(path), *tool.version_args], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(rf"\bv?{re.escape(tool.version)}\b", out.stdout + out.stderr) is not None


def find(binary: str) -> Path | None:
    """Where ``binary`` is, at the pinned version: KUBEBUILDER_ASSETS, the cache, then PATH.

    Binaries in KUBEBUILDER_ASSETS are taken as they are: whoever set it chose them.
    """
    tool = BINARY_TO_TOOL[binary]
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / binary).is_file():
        return Path(assets) / binary
    cached = tools_dir() / tool.key / binary
    if cached.is_file():
        return cached
    on_path = shutil.which(binary)
    if on_path and _reports_version(Path(on_path), tool):
        return Path(on_path)
    return None


def locate(binary: str) -> Path:
    """Like :func:`find`, but a missing tool is a setup error that says how to fix it."""
    path = find(binary)
    if path is None:
        tool = BINARY_TO_TOOL[binary]
        raise ToolMissingError(
            f"{binary} {tool.version} not found (KUBEBUILDER_ASSETS, {tools_dir()}, PATH): "
            f"{SETUP_HINT}"
        )
    return path


def bin_dirs() -> list[Path]:
    """Directories holding every pinned binary, for putting on PATH (tests, the demo);
    an optional tool that is not built yet is left out."""
    dirs: set[Path] = set()
    for binary, tool in BINARY_TO_TOOL.items():
        path = find(binary) if tool.optional else locate(binary)
        if path is not None:
            dirs.add(path.parent)
    return sorted(dirs)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise ToolMissingError("the Go toolchain is needed to build the tools: install `go`")
    return go


def build(tool: Tool) -> Path:
    """Build ``tool`` into the cache and return its directory. Idempotent."""
    dest = tools_dir() / tool.key
    if all((dest / b).is_file() for b in tool.binaries):
        return dest
    work = tools_dir() / ".build" / tool.key
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text("module flotilla.local/toolbuild\n\ngo 1.24\n")
    imports = "\n".join(f'\t_ "{p}"' for p in tool.packages)
    (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    go = _go()

    def run(*args: str) -> None:
        proc = subprocess.run([go, *args], cwd=work, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise ToolMissingError(f"building {tool.key} failed at `go {' '.join(args)}`:\n{tail}")

    run("mod", "edit", f"-require={tool.module}@v{tool.version}")
    for old, new in tool.replaces.items():
        run("mod", "edit", f"-replace={old}={new}")
    run("mod", "tidy", "-e")
    staging = Path(tempfile.mkdtemp(prefix=f".{tool.key}-", dir=tools_dir()))
    ldflags = " ".join(("-s", "-w", *tool.ldflags))
    try:
        for pkg, binary in zip(tool.packages, tool.binaries, strict=True):
            run("build", "-trimpath", f"-ldflags={ldflags}", "-o", str(staging / binary), pkg)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)
    return dest


def ensure(names: Iterable[str] | None = None, *, quiet: bool = False) -> dict[str, Path]:
    """Make every named tool (default: all) available, building what is missing."""
    found: dict[str, Path] = {}
    for name in names or TOOLS:
        tool = TOOLS[name]
        paths = {b: find(b) for b in tool.binaries}
        if all(paths.values()):
            found.update({b: p for b, p in paths.items() if p})
            if not quiet:
                print(f"tools: {tool.key} ready ({paths[tool.binaries[0]]})", flush=True)
            continue
        if not quiet:
            print(f"tools: building {tool.key} with Go (first time only) ...", flush=True)
        started = time.monotonic()
        dest = build(tool)
        if not quiet:
            print(f"tools: built {tool.key} in {time.monotonic() - started:.0f}s", flush=True)
        found.update({b: dest / b for b in tool.binaries})
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devenv.tools",
        description="Build or locate the pinned binaries flotilla's tests and demo need.",
    )
    parser.add_argument("names", nargs="*", help=f"tools among {', '.join(TOOLS)} (default: all)")
    parser.add_argument("--print-path", action="store_true", help="print a PATH prefix and exit")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in TOOLS]
    if unknown:
        parser.error(f"unknown tool {unknown[0]!r}; choose from {', '.join(TOOLS)}")
    try:
        if args.print_path:
            print(os.pathsep.join(str(d) for d in bin_dirs()))
            return 0
        ensure(args.names or None)
    except ToolMissingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
