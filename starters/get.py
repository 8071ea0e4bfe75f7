"""``flotilla get``: list gitrepos, bundles, clusters or images.

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
from dataclasses import dataclass

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
CLUSTER_KINDS = ("clusters", "cluster")
IMAGE_KINDS = ("images", "image")

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


def gitrepo_lines(attributes: list[dict[str, object]]) -> list[GitRepoLine] | None:
    """Table lines from the GitRepo workflows' search attributes; None when one lacks a
    field (started by older code, or not published yet): then the queries must answer."""
    needed = (SA_GITREPO, SA_REPO, SA_COMMIT, SA_READY_DEPLOYMENTS, SA_STATE, SA_MESSAGE)
    if any(any(key not in sa for key in needed) for sa in attributes):
        return None
    lines = [
        GitRepoLine(
            name=str(sa[SA_GITREPO]),
            repo=str(sa[SA_REPO]),
            commit=str(sa[SA_COMMIT]),
            ready_bundle_deployments=str(sa[SA_READY_DEPLOYMENTS]),
            state=str(sa[SA_STATE]),
            message=str(sa[SA_MESSAGE]),
        )
        for sa in attributes
    ]
    return sorted(lines, key=lambda line: line.name)


def bundle_lines(attributes: list[dict[str, object]]) -> list[BundleLine] | None:
    """Table lines from the bundle workflows' search attributes (None: ask the queries)."""
    needed = (SA_BUNDLE, SA_GITREPO, SA_COMMIT, SA_READY, SA_DESIRED, SA_STATE, SA_MESSAGE)
    if any(any(key not in sa for key in needed) for sa in attributes):
        return None
    lines = [
        BundleLine(
            bundle=str(sa[SA_BUNDLE]),
            gitrepo=str(sa[SA_GITREPO]),
            commit=str(sa[SA_COMMIT]),
            ready=_int(sa[SA_READY]),
            desired=_int(sa[SA_DESIRED]),
            state=str(sa[SA_STATE]),
            message=str(sa[SA_MESSAGE]),
        )
        for sa in attributes
    ]
    return sorted(lines, key=lambda line: line.bundle)


def _int(value: object) -> int:
    return value if isinstance(value, int) else int(str(value or 0))


def table_from_visibility(args: argparse.Namespace) -> str | None:
    """The table from search attributes, or None when the SDK path must answer."""
    settings = load_settings()
    kind = "GitRepo" if args.kind in GITREPO_KINDS else "Bundle"
    try:
        executions = list_workflows(settings.temporal, _running(kind, args.namespace))
    except HttpUnavailable as err:
        log.debug("Temporal's HTTP API did not answer (%s); asking through gRPC", err)
        return None
    attributes = [execution.search_attributes for execution in executions]
    if kind == "GitRepo":
        repos = gitrepo_lines(attributes)
        return None if repos is None else gitrepo_table(repos)
    bundles = bundle_lines(attributes)
    return None if bundles is None else bundle_table(bundles)


def cmd_get(args: argparse.Namespace) -> int:
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
    get = sub.add_parser("get", help="list gitrepos, bundles, clusters or images")
    get.add_argument("kind", choices=(*GITREPO_KINDS, *BUNDLE_KINDS, *CLUSTER_KINDS, *IMAGE_KINDS))
    get.add_argument(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, help=f"default {DEFAULT_NAMESPACE}"
    )
    get.add_argument("--task-queue", default=CONTROL_TASK_QUEUE, help=argparse.SUPPRESS)
    get.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    get.set_defaults(handler=cmd_get)
