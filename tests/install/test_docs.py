"""docs/installation.md and the chart's notes say what the install files and code really do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.install.env_contract import ENV_CONTRACT
from workflows.visibility import registrations

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "installation.md"
NOTES = ROOT / "charts" / "flotilla" / "templates" / "NOTES.txt"
# The workstation commands every install must make possible, spelt as the CLI spells them.
REGISTER = (
    "flotilla cluster add ",
    "flotilla secret create git-auth --type basic-auth --username-file ",
)


def sections() -> dict[str, str]:
    """Second-level heading -> the text under it."""
    parts = re.split(r"^## (.+)$", GUIDE.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize(
    "heading", ["Embedded: `make dev`", "docker compose", "Helm chart (production)"]
)
def test_every_install_path_registers_a_cluster_and_a_git_credential(heading: str) -> None:
    text = sections()[heading]
    for command in REGISTER:
        assert command in text, f"{heading!r} does not show `{command.strip()}`"


def test_remote_installs_point_the_cli_at_the_kubernetes_secret_store() -> None:
    for heading in ("docker compose", "Helm chart (production)"):
        text = sections()[heading]
        assert "FLOTILLA_SECRET_BACKEND=kubernetes" in text, heading
        assert "FLOTILLA_MANAGEMENT_KUBECONFIG=" in text, heading


def test_every_contract_variable_is_documented() -> None:
    table = sections()["The environment contract"]
    documented = set(re.findall(r"`((?:TEMPORAL|FLOTILLA)_[A-Z_]+)`", table))
    assert documented == ENV_CONTRACT


def test_search_attributes_match_the_code() -> None:
    text = sections()["Search attributes"]
    table = dict(re.findall(r"^\| (Flotilla\w+) \| (\w+) \|$", text, flags=re.MULTILINE))
    assert table == registrations()
    assert dict(re.findall(r"(Flotilla\w+)=(\w+)", text)) == registrations()


def test_chart_notes_show_the_workstation_commands() -> None:
    notes = NOTES.read_text()
    for command in REGISTER:
        assert command in notes
    assert "FLOTILLA_SECRET_BACKEND=kubernetes" in notes
    assert "FLOTILLA_MANAGEMENT_KUBECONFIG=" in notes
