"""``flotilla get``: list gitrepos, helmops, bundles, clusters, images, policies, schedules,
workspaces, alerts...

The gitrepo and bundle tables come from the search attributes the workflows keep (the
columns the Temporal UI shows), read over Temporal's HTTP API without importing the Temporal
SDK, so a table is printed in a fraction of a second. Everything else, and a table whenever
that path cannot answer for every row (no HTTP API, a workflow that has not published its
status line yet), goes through the SDK: the ``status`` queries in ``starters/commands.py``.
Nothing heavy is imported at module level: this module is loaded to build the parser.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from dataclasses import dataclass
from typing import TypeVar

from flotilla.errors import FlotillaError
from flotilla.ids import (
    CONTROL_TASK_QUEUE,
    DEFAULT_NAMESPACE,
    SA_BUNDLE,
    SA_COMMIT,
    SA_DESIRED,
    SA_GITREPO,
    SA_KIND,
    SA_MESSAGE,
    SA_READY,
    SA_READY_DEPLOYMENTS,
    SA_REPO,
    SA_STATE,
)
from runtime.env import load_settings
from runtime.temporalhttp import HttpUnavailable, list_workflows
from starters.tables import bundle_table, gitrepo_table

GITREPO_KINDS = ("gitrepos", "gitrepo")
BUNDLE_KINDS = ("bundles", "bundle")
HELMOP_KINDS = ("helmops", "helmop")
CLUSTER_KINDS = ("clusters", "cluster")
IMAGE_KINDS = ("images", "image")
# Policies lists both restriction kinds; gitreporestrictions only the older one.
POLICY_KINDS = ("policies", "policy", "gitreporestrictions", "gitreporestriction")
WORKSPACE_KINDS = ("workspaces", "workspace")
# Notification config (notifications/<ns>).
PROVIDER_KINDS = ("providers", "provider")
ALERT_KINDS = ("alerts", "alert")
SCHEDULE_KINDS = ("schedules", "schedule")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GitRepoLine:
    name: str
    repo: str
    commit: str
    ready_bundle_deployments: str
    state: str
    message: str


@dataclass(frozen=True)
class BundleLine:
    bundle: str
    gitrepo: str
    commit: str
    ready: int
    desired: int
    state: str
    message: str


def _running(kind: str, namespace: str) -> str:
    return (
        f"{SA_KIND} = '{kind}' AND ExecutionStatus = 'Running' "
        f"AND WorkflowId STARTS_WITH '{kind.lower()}/{namespace}/'"
    )


# Each table line's fields and the search attribute each is read from.
_GITREPO_COLUMNS = {
    "name": SA_GITREPO,
    "repo": SA_REPO,
    "commit": SA_COMMIT,
    "ready_bundle_deployments": SA_READY_DEPLOYMENTS,
    "state": SA_STATE,
    "message": SA_MESSAGE,
}
_BUNDLE_COLUMNS = {
    "bundle": SA_BUNDLE,
    "gitrepo": SA_GITREPO,
    "commit": SA_COMMIT,
    "ready": SA_READY,
    "desired": SA_DESIRED,
    "state": SA_STATE,
    "message": SA_MESSAGE,
}

_Line = TypeVar("_Line", GitRepoLine, BundleLine)


def _lines(
    attributes: list[dict[str, object]], columns: dict[str, str], line: type[_Line]
) -> list[_Line] | None:
    """Table lines, sorted by the first column; None when a workflow lacks an attribute
    (started by older code, or not published yet): then the queries must answer."""
    if any(name not in sa for sa in attributes for name in columns.values()):
        return None
    first = next(iter(columns))
    lines = [line(**{field: sa[name] for field, name in columns.items()}) for sa in attributes]  # type: ignore[arg-type]
    return sorted(lines, key=lambda item: str(getattr(item, first)))


def gitrepo_lines(attributes: list[dict[str, object]]) -> list[GitRepoLine] | None:
    return _lines(attributes, _GITREPO_COLUMNS, GitRepoLine)


def bundle_lines(attributes: list[dict[str, object]]) -> list[BundleLine] | None:
    return _lines(attributes, _BUNDLE_COLUMNS, BundleLine)


def table_from_visibility(args: argparse.Namespace) -> str | None:
    """The table from search attributes, or None when the SDK path must answer."""
    try:
        return _visibility_table(args)
    except HttpUnavailable as err:
        log.debug("Temporal's HTTP API did not answer (%s); asking through gRPC", err)
        return None


def _visibility_table(args: argparse.Namespace) -> str | None:
    """The table, None while a workflow has not published its status line; raises
    HttpUnavailable when the HTTP API does not answer."""
    settings = load_settings()
    kind = "GitRepo" if args.kind in GITREPO_KINDS else "Bundle"
    executions = list_workflows(settings.temporal, _running(kind, args.namespace))
    attributes = [execution.search_attributes for execution in executions]
    if kind == "GitRepo":
        repos = gitrepo_lines(attributes)
        return None if repos is None else gitrepo_table(repos)
    bundles = bundle_lines(attributes)
    return None if bundles is None else bundle_table(bundles)


def changed_rows(table: str, seen: dict[str, str]) -> list[str]:
    """The rows of ``table`` (header first) that are new or changed since ``seen`` (name ->
    row, updated in place); a row whose columns only moved to new widths is unchanged."""
    changed = []
    for row in table.splitlines()[1:]:
        words = row.split()
        if not words:
            continue
        flat = " ".join(words)
        if seen.get(words[0]) != flat:
            seen[words[0]] = flat
            changed.append(row)
    return changed


def watch(args: argparse.Namespace) -> int:
    """The table, then each row again whenever it changes (like `kubectl get -w`), until ^C."""
    seen: dict[str, str] = {}
    first = True
    while True:
        try:
            text = _visibility_table(args)
        except HttpUnavailable as err:
            raise FlotillaError(
                "get -w reads the tables from Temporal's HTTP API (TEMPORAL_HTTP_ADDRESS), "
                f"which did not answer ({err}); run `flotilla get` without -w"
            ) from None
        if text is None:  # a workflow just started: its row comes with its status line
            time.sleep(args.watch_interval)
            continue
        rows = changed_rows(text, seen)
        if first:
            print(text.splitlines()[0])
            first = False
        for row in rows:
            print(row)
        sys.stdout.flush()
        time.sleep(args.watch_interval)


def cmd_get(args: argparse.Namespace) -> int:
    if getattr(args, "watch", False):
        if args.kind not in (*GITREPO_KINDS, *BUNDLE_KINDS) or args.output != "table":
            raise FlotillaError("-w watches the gitrepos and bundles tables only")
        return watch(args)
    # The other paths need the Temporal SDK: their modules are imported only when used.
    if args.kind in IMAGE_KINDS:
        return int(importlib.import_module("starters.images").cmd_get_images(args))
    if args.output == "table" and args.kind in (*GITREPO_KINDS, *BUNDLE_KINDS):
        text = table_from_visibility(args)
        if text is not None:
            print(text)
            return 0
    return int(importlib.import_module("starters.commands").cmd_get(args))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    get = sub.add_parser(
        "get",
        help="list gitrepos, helmops, bundles, clusters, images, policies, schedules, "
        "workspaces, or notification providers and alerts",
    )
    get.add_argument(
        "kind",
        choices=(
            *GITREPO_KINDS,
            *HELMOP_KINDS,
            *BUNDLE_KINDS,
            *CLUSTER_KINDS,
            *IMAGE_KINDS,
            *POLICY_KINDS,
            *WORKSPACE_KINDS,
            *PROVIDER_KINDS,
            *ALERT_KINDS,
            *SCHEDULE_KINDS,
        ),
    )
    get.add_argument(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, help=f"default {DEFAULT_NAMESPACE}"
    )
    get.add_argument("--task-queue", default=CONTROL_TASK_QUEUE, help=argparse.SUPPRESS)
    get.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    get.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="after the table, print each row again when it changes (gitrepos, bundles)",
    )
    get.add_argument("--watch-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    get.set_defaults(handler=cmd_get)
