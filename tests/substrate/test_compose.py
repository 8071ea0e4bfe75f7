"""docker-compose.yml cannot run here (no Docker engine), so its structure is checked instead."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.tools import TOOLS
from workflows.visibility import registrations

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_every_dependency_and_volume_is_declared() -> None:
    spec = compose()
    services = spec["services"]
    assert {"postgresql", "temporal", "temporal-ui", "worker", "temporal-setup"} <= set(services)
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith(("/", ".")):
                assert source in spec["volumes"], f"{name} uses undeclared volume {source}"
        assert "image" in service or "build" in service, name


def test_published_ports_stay_on_loopback() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"


def test_worker_reaches_temporal_and_keeps_state_in_volumes() -> None:
    services = compose()["services"]
    worker = services["worker"]
    host, port = worker["environment"]["TEMPORAL_ADDRESS"].split(":")
    assert host == "temporal"
    assert any(p.endswith(f":{port}") for p in services["temporal"]["ports"])
    assert worker["command"] == ["python", "-m", "worker"]
    mounts = {v.split(":", 1)[1] for v in worker["volumes"]}
    assert worker["environment"]["FLOTILLA_SECRETS_DIR"] in mounts
    assert worker["environment"]["FLOTILLA_CONTENT_DIR"] in mounts
    assert (ROOT / "worker.py").exists()


def test_setup_registers_every_search_attribute() -> None:
    script = " ".join(compose()["services"]["temporal-setup"]["command"])
    registered = dict(re.findall(r"(Flotilla\w+)=(\w+)", script))
    assert registered == registrations()


# -- the worker image --------------------------------------------------------------------------


def installed_by_dockerfile() -> dict[str, tuple[str, str]]:
    """Go package -> (version, ldflags) for every `go install` in the Dockerfile."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = re.findall(r'go install .*?-ldflags="([^"]*)"\s+(\S+)@v(\S+)', text)
    return {package: (version, ldflags) for ldflags, package, version in found}


@pytest.mark.parametrize("name", ["helm", "kustomize"])
def test_image_builds_the_tools_devenv_pins(name: str) -> None:
    tool = TOOLS[name]
    installed = installed_by_dockerfile()
    for package in tool.packages:
        assert package in installed, f"{package} not built in the Dockerfile"
        version, ldflags = installed[package]
        assert version == tool.version, f"{name} {version} in the image, {tool.version} in devenv"
        for flag in tool.ldflags:
            assert flag in ldflags, f"{name}: version stamp {flag!r} missing"


def test_image_pins_sops() -> None:
    installed = installed_by_dockerfile()
    version, _ = installed["github.com/getsops/sops/v3/cmd/sops"]
    assert re.fullmatch(r"3\.\d+\.\d+", version), version
    if "sops" in TOOLS:  # once devenv builds sops too, the two must agree
        assert version == TOOLS["sops"].version


def test_image_ships_every_package_and_no_chart() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in dockerfile, f"{package} missing from the image"
    assert "charts" not in dockerfile
    assert "charts" in (ROOT / ".dockerignore").read_text().split()
    # The tools the worker runs are named by the settings contract, not searched for.
    for variable in ("FLOTILLA_HELM", "FLOTILLA_KUSTOMIZE", "FLOTILLA_SOPS"):
        assert re.search(rf"\b{variable}=/usr/local/bin/", dockerfile), variable
