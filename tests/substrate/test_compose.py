"""docker-compose.yml cannot run here (no Docker engine), so its structure is checked instead."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

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


def test_image_pins_the_same_tools_and_ships_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name in ("helm", "kustomize", "sops"):
        assert f"@v{TOOLS[name].version}" in dockerfile, f"{name} pin differs from devenv.tools"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in dockerfile, f"{package} missing from the image"
