"""docker-compose.yml cannot run here (no Docker engine), so its structure is checked instead."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.temporal import SERVER_DYNAMIC_CONFIG
from devenv.tools import TOOLS
from tests.install.env_contract import ENV_CONTRACT
from workflows.visibility import registrations

ROOT = Path(__file__).resolve().parents[2]
# Where the worker reads the management cluster's kubeconfig inside its container.
MANAGEMENT_KUBECONFIG = "/etc/flotilla/management/kubeconfig"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    """A service's volumes in compose's long syntax, whichever syntax the file uses."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out.append(volume)
            continue
        source, target, *mode = volume.split(":")
        kind = "bind" if source.startswith(("/", ".", "$")) else "volume"
        out.append({"type": kind, "source": source, "target": target, "read_only": mode == ["ro"]})
    return out


def test_every_dependency_and_volume_is_declared() -> None:
    spec = compose()
    services = spec["services"]
    assert {"postgresql", "temporal", "temporal-ui", "temporal-setup", "registry", "worker"} <= set(
        services
    )
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for mount in mounts(service):
            if mount["type"] == "volume":
                assert mount["source"] in spec["volumes"], f"{name}: undeclared {mount['source']}"
        assert "image" in service or "build" in service, name


def test_published_ports_stay_on_loopback() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"


def test_waited_for_services_have_healthchecks() -> None:
    services = compose()["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for dep, condition in depends.items() if isinstance(depends, dict) else []:
            if condition.get("condition") == "service_healthy":
                assert "test" in services[dep].get("healthcheck", {}), f"{name} waits on {dep}"
    assert services["worker"]["depends_on"]["registry"] == {"condition": "service_healthy"}
    assert "healthcheck" in services["registry"]


def test_worker_speaks_the_settings_contract() -> None:
    services = compose()["services"]
    worker = services["worker"]
    env = worker["environment"]
    unknown = set(env) - ENV_CONTRACT
    assert not unknown, f"worker variables outside the settings contract: {sorted(unknown)}"
    host, port = env["TEMPORAL_ADDRESS"].split(":")
    assert host == "temporal"
    assert any(p.endswith(f":{port}") for p in services["temporal"]["ports"])
    assert worker["command"][:3] == ["python", "-m", "worker"]
    assert (ROOT / "worker.py").exists()


def test_worker_shares_no_disk_with_the_cli() -> None:
    """What the CLI writes on a workstation (cluster kubeconfigs, git credentials) must reach
    the worker without a shared directory: Secrets in the management cluster, and bundle
    content in the registry service."""
    spec = compose()
    worker = spec["services"]["worker"]
    env = worker["environment"]
    assert env["FLOTILLA_SECRET_BACKEND"] == "kubernetes"
    assert env["FLOTILLA_CONTENT_BACKEND"] == "oci"
    assert not {"FLOTILLA_SECRETS_DIR", "FLOTILLA_CONTENT_DIR"} & set(env)
    # The only thing mounted is the management kubeconfig, read-only, from the host path the
    # CLI uses too; no named volume is shared with anything.
    [kubeconfig] = mounts(worker)
    assert kubeconfig["type"] == "bind" and kubeconfig["read_only"] is True
    assert kubeconfig["target"] == env["FLOTILLA_MANAGEMENT_KUBECONFIG"] == MANAGEMENT_KUBECONFIG
    # ${VAR:?message}: compose refuses to start without it instead of mounting a directory.
    assert re.fullmatch(r"\$\{FLOTILLA_MANAGEMENT_KUBECONFIG:\?.+\}", kubeconfig["source"])
    assert "secrets" not in spec["volumes"]


def test_content_goes_to_the_registry_service() -> None:
    services = compose()["services"]
    env = services["worker"]["environment"]
    registry = services["registry"]
    assert registry["image"].startswith("registry:2")
    host_port, repository = env["FLOTILLA_CONTENT_REGISTRY"].split("/", 1)
    assert host_port == "registry:5000" and repository
    # Plain http is fine only because the registry is not published outside compose's network.
    assert env["FLOTILLA_CONTENT_REGISTRY_INSECURE"] == "true"
    assert not registry.get("ports")
    [storage] = mounts(registry)
    assert storage["type"] == "volume" and storage["target"] == "/var/lib/registry"


def test_worker_writes_only_scratch() -> None:
    worker = compose()["services"]["worker"]
    assert worker["read_only"] is True
    scratch = {entry.split(":", 1)[0] for entry in worker["tmpfs"]}
    assert "/tmp" in scratch
    workdir = worker["environment"]["FLOTILLA_WORKDIR"]
    assert any(workdir.startswith(f"{path}/") for path in scratch), workdir


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


def test_the_compose_temporal_runs_with_flotillas_dynamic_config() -> None:
    """The committed file holds devenv.temporal.SERVER_DYNAMIC_CONFIG, the values the tests'
    servers run with, and the compose server reads it."""
    committed = yaml.safe_load((ROOT / "deploy" / "temporal-dynamic-config.yaml").read_text())
    assert committed == {key: [{"value": value}] for key, value in SERVER_DYNAMIC_CONFIG.items()}
    temporal = compose()["services"]["temporal"]
    path = temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    assert {
        "type": "bind",
        "source": "./deploy/temporal-dynamic-config.yaml",
        "target": path,
        "read_only": True,
    } in mounts(temporal)
