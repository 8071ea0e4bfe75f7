"""``flotilla diff gitrepo|bundle|helmop NAME``: what a commit (or a HelmOp's chart version)
would change on each targeted cluster.

The worker plans the commit as the GitRepo would and, per targeted cluster, renders each
bundle with a server-side dry-run and compares it with the live objects: objects that would
be created, changed (a unified diff, live first, with the API server's defaults applied) or
deleted, and the clusters that would see no change. Secrets are said to change or not,
never shown. Nothing on the clusters changes. For a HelmOp, its spec is resolved now (the
newest chart version it allows) and that version is diffed as its bundle; --commit does not
apply.

Exit codes, as diff(1): 0 no change, 1 changes, 2 error (a bundle or cluster could not be
compared, or the GitRepo cannot be read).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, TextIO

from flotilla.errors import FlotillaError
from flotilla.ids import CONTROL_TASK_QUEUE, DEFAULT_NAMESPACE
from flotilla.livediff import Change

if TYPE_CHECKING:  # the Temporal SDK: imported when the command runs, not to build the parser
    from starters.control import Control
    from workflows.diff_models import DiffReport

EXIT_SAME = 0
EXIT_CHANGES = 1
EXIT_ERROR = 2
KINDS = ("gitrepo", "bundle", "helmop")


async def run_diff(
    control: Control,
    kind: str,
    namespace: str,
    name: str,
    *,
    commit: str = "",
    cluster: str = "",
) -> DiffReport:
    """Plan and diff on the worker (it holds the cluster credentials); a one-line
    FlotillaError when the GitRepo, bundle or cluster is unknown."""
    from flotilla.models import GitRepoSpec, HelmOpSpec  # noqa: PLC0415
    from workflows.diff_models import DIFF_WORKFLOW, DiffInput, DiffReport  # noqa: PLC0415
    from workflows.gitrepo_models import (  # noqa: PLC0415
        GITREPO_SPEC_QUERY,
        GitRepoStatusRequest,
    )
    from workflows.helmop_models import HELMOP_SPEC_QUERY, HelmOpStatusRequest  # noqa: PLC0415
    from workflows.registry_models import ClusterSnapshot, ClusterView  # noqa: PLC0415

    bundle = ""
    gitrepo = name
    spec: GitRepoSpec | None = None
    helmop: HelmOpSpec | None = None
    if kind == "helmop":
        if commit:
            raise FlotillaError("diff helmop: --commit is for GitRepos (a HelmOp has no commits)")
        await control.helmop_status(namespace, name)  # a one-line error when unknown
        helmop = await control.helmop(namespace, name).query(
            HELMOP_SPEC_QUERY, HelmOpStatusRequest(), result_type=HelmOpSpec
        )
    else:
        if kind == "bundle":
            bundle = name
            gitrepo = (await control.bundle_status(namespace, name)).gitrepo
        await control.gitrepo_status(namespace, gitrepo)  # a one-line error when unknown
        spec = await control.gitrepo(namespace, gitrepo).query(
            GITREPO_SPEC_QUERY, GitRepoStatusRequest(), result_type=GitRepoSpec
        )
    registry = await control.registry(namespace)
    if cluster and cluster not in {c.name for c in registry.clusters}:
        raise FlotillaError(f"cluster {namespace}/{cluster} not found")
    clusters = ClusterSnapshot(
        namespace=namespace,
        version=registry.version,
        clusters=[
            ClusterView(name=c.name, labels=c.labels, agent=c.agent) for c in registry.clusters
        ],
        groups=registry.groups,
    )
    report: DiffReport = await control.client.execute_workflow(
        DIFF_WORKFLOW,
        DiffInput(
            namespace=namespace,
            gitrepo=gitrepo,
            spec=spec,
            helmop=helmop,
            clusters=clusters,
            commit=commit,
            bundle=bundle,
            cluster=cluster,
        ),
        id=f"diff/{namespace}/{'helmop-' if helmop else ''}{gitrepo}/{uuid.uuid4().hex[:12]}",
        task_queue=control.task_queue,
        result_type=DiffReport,
        static_summary=f"flotilla diff {kind} {namespace}/{name}",
    )
    return report


def print_report(report: DiffReport, out: TextIO) -> int:
    """The report per cluster, then the exit code: 2 on any error, 1 on changes, else 0."""
    by_cluster = defaultdict(list)
    for deployment in report.deployments:
        by_cluster[deployment.cluster].append(deployment)
    short = report.commit[:12]
    for error in report.errors:
        out.write(f"error: {error}\n")
    failed = bool(report.errors)
    changed = False
    for cluster in sorted(by_cluster):
        diffs = by_cluster[cluster]
        if not any(d.changes or d.error for d in diffs):
            out.write(f"cluster {cluster}: no change ({len(diffs)} bundles at {short})\n")
            continue
        for d in diffs:
            if d.error:
                failed = True
                out.write(f"cluster {cluster}: bundle {d.bundle}: error: {d.error}\n")
                continue
            if not d.changes:
                continue
            changed = True
            out.write(f"cluster {cluster}: bundle {d.bundle} at {short}\n")
            for change in d.changes:
                hidden = (
                    " (Secret: values not shown)" if change.object.startswith("Secret ") else ""
                )
                out.write(f"  {change.change} {change.object}{hidden}\n")
                if change.diff and change.change is not Change.DELETED:
                    out.write("".join(f"    {line}" for line in change.diff.splitlines(True)))
    if not by_cluster and not failed:
        out.write(f"no targeted cluster ({short})\n")
    if failed:
        return EXIT_ERROR
    return EXIT_CHANGES if changed else EXIT_SAME


async def _diff(args: argparse.Namespace, out: TextIO) -> int:
    from runtime.stores import LazySecretStore, load_settings  # noqa: PLC0415
    from runtime.temporal import connect  # noqa: PLC0415
    from starters.control import Control  # noqa: PLC0415

    settings = load_settings()
    client = await connect(settings.temporal)
    control = Control(client, task_queue=args.task_queue, secrets=LazySecretStore(settings))
    report = await run_diff(
        control,
        args.kind,
        args.namespace,
        args.name,
        commit=args.commit,
        cluster=args.cluster,
    )
    return print_report(report, out)


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_diff(args, sys.stdout))
    except FlotillaError as err:
        # diff(1)'s codes: an error is 2, whatever went wrong (1 means "changes").
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "diff",
        help="show what a commit would change on each targeted cluster (exit 1: changes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("name")
    parser.add_argument(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, help=f"default {DEFAULT_NAMESPACE}"
    )
    parser.add_argument(
        "--commit",
        default="",
        metavar="REF",
        help="a commit, tag or branch to diff (default: the GitRepo's branch head or revision)",
    )
    parser.add_argument(
        "--cluster", default="", metavar="NAME", help="only this cluster (default: all targeted)"
    )
    parser.add_argument("--task-queue", default=CONTROL_TASK_QUEUE, help=argparse.SUPPRESS)
    parser.set_defaults(handler=cmd_diff)
