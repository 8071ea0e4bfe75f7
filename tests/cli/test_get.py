"""`flotilla get`'s table lines from search attributes: only when every row has them all."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from flotilla.ids import (
    SA_BUNDLE,
    SA_COMMIT,
    SA_DESIRED,
    SA_GITREPO,
    SA_MESSAGE,
    SA_READY,
    SA_READY_DEPLOYMENTS,
    SA_REPO,
    SA_STATE,
)
from starters.get import BundleLine, GitRepoLine, bundle_lines, changed_rows, gitrepo_lines
from starters.tables import bundle_table, cluster_table


def _repo(name: str, **override: object) -> dict[str, object]:
    return {
        SA_GITREPO: name,
        SA_REPO: f"https://git.example/{name}",
        SA_COMMIT: "c0ffee",
        SA_READY_DEPLOYMENTS: "1/2",
        SA_STATE: "NotReady",
        SA_MESSAGE: "one not ready",
        **override,
    }


def test_gitrepo_lines_sorted_by_name() -> None:
    lines = gitrepo_lines([_repo("b"), _repo("a", **{SA_STATE: "Ready", SA_MESSAGE: ""})])
    assert lines == [
        GitRepoLine("a", "https://git.example/a", "c0ffee", "1/2", "Ready", ""),
        GitRepoLine("b", "https://git.example/b", "c0ffee", "1/2", "NotReady", "one not ready"),
    ]


def test_a_row_without_its_status_line_sends_the_table_to_the_queries() -> None:
    # A workflow started by older code (or before its first status) lacks FlotillaMessage.
    old = _repo("old")
    del old[SA_MESSAGE]
    assert gitrepo_lines([_repo("new"), old]) is None
    assert bundle_lines([{SA_BUNDLE: "web", SA_STATE: "Ready"}]) is None
    assert gitrepo_lines([]) == []


def test_bundle_lines_make_the_same_table_as_the_queries() -> None:
    attributes: dict[str, object] = {
        SA_BUNDLE: "shop-web",
        SA_GITREPO: "shop",
        SA_COMMIT: "abc",
        SA_READY: 2,
        SA_DESIRED: 3,
        SA_STATE: "Modified",
        SA_MESSAGE: "c1: Deployment/web: differs at /spec/replicas",
    }
    lines = bundle_lines([attributes])
    assert lines == [
        BundleLine("shop-web", "shop", "abc", 2, 3, "Modified", str(attributes[SA_MESSAGE]))
    ]
    assert bundle_table(lines).splitlines()[1].split("   ")[-1].strip() == (
        "Modified: c1: Deployment/web: differs at /spec/replicas"
    )


def test_get_imports_neither_the_temporal_sdk_nor_pydantic() -> None:
    """The parser and the fast table path stay light (the start-up budget of `get`)."""
    code = (
        "import sys, starters.cli as cli, starters.get\n"
        "cli.build_parser('get')\n"
        "heavy = [m for m in ('temporalio', 'pydantic', 'kubernetes', 'git') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_watch_prints_only_rows_that_changed() -> None:
    seen: dict[str, str] = {}
    first = "NAME   STATE\na      Ready\nb      NotReady"
    assert changed_rows(first, seen) == ["a      Ready", "b      NotReady"]
    # b changed; a only moved to new column widths: unchanged.
    second = "NAME    STATE\na       Ready\nb       Ready\nc       Pending"
    assert changed_rows(second, seen) == ["b       Ready", "c       Pending"]
    assert changed_rows(second, seen) == []


def test_cluster_table_shows_mode_last_seen_and_ready() -> None:
    from workflows.bundle_models import BundleStatus, ClusterStatus  # noqa: PLC0415
    from workflows.registry_models import ClusterRecord, RegistrySnapshot  # noqa: PLC0415

    now = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    clusters = [
        ClusterRecord(name="edge", agent=True, last_seen=now - timedelta(seconds=4)),
        ClusterRecord(
            name="gone",
            agent=True,
            last_seen=now - timedelta(minutes=3),
            unreachable="agent stopped heartbeating",
            unreachable_since=now - timedelta(minutes=3),
        ),
        ClusterRecord(name="lab", kubeconfig_secret="lab-kubeconfig"),
        ClusterRecord(name="prod", kubeconfig_secret="prod-kubeconfig", last_seen=now),
    ]
    states = {"edge": "Ready", "gone": "Ready", "lab": "NotReady", "prod": "Ready"}
    bundle = BundleStatus.model_validate(
        {
            **dict.fromkeys(
                ("namespace", "bundle", "gitrepo", "commit", "message", "summary"), "x"
            ),
            "paused": False,
            "ready": 3,
            "desired": 4,
            "state": "NotReady",
            "clusters": [
                ClusterStatus(
                    cluster=name, state=state, message="", deployment_id="", applied="", release=""
                )
                for name, state in states.items()
            ],
        }
    )
    snapshot = RegistrySnapshot(
        namespace="ns", version=1, clusters=clusters, groups=[], subscribers=[]
    )
    rows = [line.split()[:7] for line in cluster_table(snapshot, [bundle], now).splitlines()]
    assert rows == [
        ["NAME", "LABELS", "PAUSED", "MODE", "BUNDLES-READY", "LAST-SEEN", "READY"],
        ["edge", "<none>", "false", "agent", "1/1", "4s", "true"],
        # Offline outranks its deployments' last known states.
        ["gone", "<none>", "false", "agent", "1/1", "3m", "false"],
        ["lab", "<none>", "false", "push", "0/1", "<never>", "false"],
        ["prod", "<none>", "false", "push", "1/1", "0s", "true"],
    ]
