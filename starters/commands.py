"""``flotilla apply|cluster|get|describe|sync|pause|resume|delete``: the control commands.

Every input is validated here (Fleet YAML through ``flotilla.models``) before a workflow sees
it; workflows validate again in their update validators. Kubeconfigs go into the secret store
and only their secret names reach Temporal.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

import yaml

from flotilla.errors import FlotillaError, SpecError
from flotilla.ids import CONTROL_TASK_QUEUE, DEFAULT_NAMESPACE
from flotilla.models import GitRepo, ObjectMeta, Restriction
from flotilla.notifications import Alert, AlertSpec, load_objects
from runtime.stores import LazySecretStore, load_settings
from runtime.temporal import connect
from starters.control import Control
from starters.get import (
    ALERT_KINDS,
    HELMOP_KINDS,
    POLICY_KINDS,
    PROVIDER_KINDS,
    SCHEDULE_KINDS,
    WORKSPACE_KINDS,
)
from starters.rollout import DEFAULT_INTERVAL, follow_rollout, parse_timeout
from starters.tables import (
    alert_table,
    bundle_table,
    cluster_table,
    describe_alert,
    describe_bundle,
    describe_cluster,
    describe_gitrepo,
    describe_helmop,
    describe_provider,
    gitrepo_table,
    helmop_table,
    provider_table,
    render,
    restriction_table,
    schedule_table,
    workspace_table,
)
from starters.tokens import add_token_commands

# `get` and `delete` names of the restriction kinds.
RESTRICTION_KINDS = {"policy": "Policy", "gitreporestriction": "GitRepoRestriction"}


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError(f"-l: expected key=value, got {pair!r}")
        labels[key] = value
    return labels


def _kubeconfig_text(path: str, context: str | None) -> str:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise SpecError(f"cannot read kubeconfig: {err.strerror}", file=path) from None
    if not context:
        return text
    data = yaml.safe_load(text)
    names = [c.get("name") for c in (data or {}).get("contexts") or []]
    if context not in names:
        raise SpecError(f"--context: {context!r} is not in the kubeconfig (has {names})", file=path)
    data["current-context"] = context
    return yaml.safe_dump(data, sort_keys=False)


def _run(args: argparse.Namespace, action: Callable[[Control], Awaitable[str]]) -> int:
    async def go() -> str:
        settings = load_settings()
        client = await connect(settings.temporal)
        control = Control(client, task_queue=args.task_queue, secrets=LazySecretStore(settings))
        return await action(control)

    print(asyncio.run(go()))
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else _read(args.file)
    # Validate everything before any workflow sees it.
    objects, _ = load_objects(text, file=args.file)
    timeout = parse_timeout(args.timeout)

    async def go() -> int:
        settings = load_settings()
        client = await connect(settings.temporal)
        control = Control(client, task_queue=args.task_queue, secrets=LazySecretStore(settings))
        print("\n".join(await control.apply_text(text, file=args.file)), flush=True)
        if not args.wait:
            return 0
        worst = 0
        for obj in objects:
            if not isinstance(obj, GitRepo):
                continue
            namespace, name = obj.metadata.namespace, obj.metadata.name
            # A poll first, so the status followed is the new spec's, not the last commit's.
            await control.sync_gitrepo(namespace, name)
            code = await follow_rollout(
                control,
                "gitrepo",
                namespace,
                name,
                timeout=timeout,
                timeout_text=args.timeout,
                interval=DEFAULT_INTERVAL,
                out=sys.stdout,
            )
            worst = worst or code
        return worst

    return asyncio.run(go())


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as err:
        raise SpecError(f"cannot read: {err.strerror}", file=path) from None


def cmd_cluster_add(args: argparse.Namespace) -> int:
    kubeconfig = _kubeconfig_text(args.kubeconfig, args.context) if args.kubeconfig else None
    labels = _labels(args.label)

    async def action(control: Control) -> str:
        change = await control.add_cluster(args.namespace, args.name, kubeconfig, labels=labels)
        return change.message

    return _run(args, action)


def cmd_cluster_label(args: argparse.Namespace) -> int:
    set_labels = _labels([p for p in args.labels if not p.endswith("-")])
    remove = [p[:-1] for p in args.labels if p.endswith("-")]

    async def action(control: Control) -> str:
        change = await control.label_cluster(args.namespace, args.name, set_labels, remove)
        return change.message

    return _run(args, action)


def cmd_cluster_move(args: argparse.Namespace) -> int:
    return _run(args, lambda control: control.move_cluster(args.namespace, args.name, args.to))


def cmd_cluster_remove(args: argparse.Namespace) -> int:
    async def action(control: Control) -> str:
        return (await control.remove_cluster(args.namespace, args.name)).message

    return _run(args, action)


async def _clusters(control: Control, namespace: str, output: str) -> str:
    snapshot = await control.registry(namespace)
    if output != "table":
        return render(snapshot, output, str)
    bundles = await control.list_bundles(namespace, clusters=True)
    return cluster_table(snapshot, bundles)


def cmd_cluster_list(args: argparse.Namespace) -> int:
    return _run(args, lambda control: _clusters(control, args.namespace, args.output))


def cmd_get(args: argparse.Namespace) -> int:
    """`get` through the status queries (``starters/get.py`` registers the command)."""

    async def action(control: Control) -> str:
        if args.kind in ("gitrepo", "gitrepos"):
            repos = await control.list_gitrepos(args.namespace)
            return render(repos, args.output, lambda: gitrepo_table(repos))
        if args.kind in ("bundle", "bundles"):
            bundles = await control.list_bundles(args.namespace)
            return render(bundles, args.output, lambda: bundle_table(bundles))
        if args.kind in HELMOP_KINDS:
            helmops = await control.list_helmops(args.namespace)
            return render(helmops, args.output, lambda: helmop_table(helmops))
        if args.kind in WORKSPACE_KINDS:
            spaces = await control.workspaces()
            return render(spaces, args.output, lambda: workspace_table(spaces))
        if args.kind in PROVIDER_KINDS:
            providers = (await control.notification_status(args.namespace)).providers
            return render(providers, args.output, lambda: provider_table(providers))
        if args.kind in ALERT_KINDS:
            alerts = (await control.notification_status(args.namespace)).alerts
            objects = [_alert(args.namespace, n, a) for n, a in sorted(alerts.items())]
            return render(objects, args.output, lambda: alert_table(alerts))
        if args.kind in POLICY_KINDS:
            snapshot = await control.registry(args.namespace)
            found: list[Restriction] = [*snapshot.restrictions]
            if not args.kind.startswith("gitreporestriction"):
                found = [*snapshot.policies, *found]
            return render(found, args.output, lambda: restriction_table(found))
        if args.kind in SCHEDULE_KINDS:
            schedules = (await control.registry(args.namespace)).schedules
            return render(schedules, args.output, lambda: schedule_table(schedules))
        return await _clusters(control, args.namespace, args.output)

    return _run(args, action)


def cmd_describe(args: argparse.Namespace) -> int:
    async def action(control: Control) -> str:
        if args.kind == "gitrepo":
            repo = await control.gitrepo_status(args.namespace, args.name)
            return render(repo, args.output, lambda: describe_gitrepo(repo))
        if args.kind == "helmop":
            helmop = await control.helmop_status(args.namespace, args.name)
            return render(helmop, args.output, lambda: describe_helmop(helmop))
        if args.kind == "cluster":
            snapshot = await control.registry(args.namespace)
            record = next((c for c in snapshot.clusters if c.name == args.name), None)
            if record is None:
                known = ", ".join(c.name for c in snapshot.clusters) or "none"
                raise FlotillaError(
                    f"cluster {args.name!r} is not registered in namespace "
                    f"{args.namespace!r} (registered: {known})"
                )
            bundles = await control.list_bundles(args.namespace, clusters=True)
            return render(record, args.output, lambda: describe_cluster(record, bundles))
        if args.kind in ("provider", "alert"):
            return await _describe_notification(control, args)
        bundle = await control.bundle_status(args.namespace, args.name, clusters=True)
        return render(bundle, args.output, lambda: describe_bundle(bundle))

    return _run(args, action)


def _alert(namespace: str, name: str, spec: AlertSpec) -> Alert:
    return Alert(metadata=ObjectMeta(name=name, namespace=namespace), spec=spec)


async def _describe_notification(control: Control, args: argparse.Namespace) -> str:
    status = await control.notification_status(args.namespace)
    if args.kind == "alert":
        spec = status.alerts.get(args.name)
        if spec is None:
            raise FlotillaError(_missing("alert", args.name, args.namespace, status.alerts))
        alert = _alert(args.namespace, args.name, spec)
        return render(alert, args.output, lambda: describe_alert(args.name, spec))
    provider = next((p for p in status.providers if p.name == args.name), None)
    if provider is None:
        names = [p.name for p in status.providers]
        raise FlotillaError(_missing("provider", args.name, args.namespace, names))
    return render(provider, args.output, lambda: describe_provider(provider, status.alerts))


def _missing(kind: str, name: str, namespace: str, known: Iterable[str]) -> str:
    return (
        f"{kind} {name!r} does not exist in namespace {namespace!r} "
        f"(there are: {', '.join(sorted(known)) or 'none'})"
    )


def cmd_sync(args: argparse.Namespace) -> int:
    if args.kind == "helmop":
        return _run(args, lambda control: control.sync_helmop(args.namespace, args.name))
    return _run(args, lambda control: control.sync_gitrepo(args.namespace, args.name))


def cmd_approve_rollout(args: argparse.Namespace) -> int:
    """``flotilla approve rollout BUNDLE --partition NAME [--reject] [--reason T] [--user U]``."""
    if not args.partition:
        raise SpecError("approve rollout needs the partition to approve", field="--partition")
    return _run(
        args,
        lambda c: c.approve_rollout(
            args.namespace,
            args.name,
            partition=args.partition,
            approve=not args.reject,
            user=args.by,
            reason=args.reason,
        ),
    )


def cmd_pause(args: argparse.Namespace) -> int:
    paused = args.command == "pause"
    return _run(args, lambda c: c.pause_bundle(args.namespace, args.name, paused=paused))


def cmd_delete(args: argparse.Namespace) -> int:
    async def action(control: Control) -> str:
        if args.kind == "clustergroup":
            return (await control.remove_group(args.namespace, args.name)).message
        if args.kind == "cluster":
            return (await control.remove_cluster(args.namespace, args.name)).message
        if args.kind in RESTRICTION_KINDS:
            kind = RESTRICTION_KINDS[args.kind]
            return (await control.remove_restriction(args.namespace, kind, args.name)).message
        if args.kind in {"provider", "alert"}:
            return await control.delete_notification(args.namespace, args.kind, args.name)
        if args.kind == "schedule":
            return (await control.remove_schedule(args.namespace, args.name)).message
        if args.kind == "helmop":
            return await control.delete_helmop(args.namespace, args.name)
        return await control.delete_gitrepo(args.namespace, args.name)

    return _run(args, action)


def _common(parser: argparse.ArgumentParser, *, output: bool = False) -> None:
    parser.add_argument(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, help=f"default {DEFAULT_NAMESPACE}"
    )
    parser.add_argument("--task-queue", default=CONTROL_TASK_QUEUE, help=argparse.SUPPRESS)
    if output:
        parser.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    apply = sub.add_parser(
        "apply",
        help="apply Fleet GitRepo, HelmOp, Cluster, ClusterGroup, Policy and GitRepoRestriction "
        "YAML, and notification Providers and Alerts",
    )
    apply.add_argument("-f", "--file", required=True, help="YAML file, or - for stdin")
    apply.add_argument(
        "--wait",
        action="store_true",
        help="follow each GitRepo's rollout as `rollout status` does: exit 0 when Ready, "
        "1 when it failed, 5 on --timeout",
    )
    apply.add_argument(
        "--timeout", default="", help="with --wait: give up after this long (e.g. 5m)"
    )
    apply.add_argument("--task-queue", default=CONTROL_TASK_QUEUE, help=argparse.SUPPRESS)
    apply.set_defaults(handler=cmd_apply)

    cluster = sub.add_parser("cluster", help="register and label downstream clusters")
    actions = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add", help="register a cluster; its kubeconfig goes to the secret store"
    )
    add.add_argument("name")
    mode = add.add_mutually_exclusive_group(required=True)
    mode.add_argument("--kubeconfig", help="push mode: the central worker deploys with it")
    mode.add_argument(
        "--agent", action="store_true", help="agent mode: the cluster's own agent serves it"
    )
    add.add_argument("--context")
    add.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    _common(add)
    add.set_defaults(handler=cmd_cluster_add)
    label = actions.add_parser("label", help="set KEY=VALUE or remove KEY- labels")
    label.add_argument("name")
    label.add_argument("labels", nargs="+")
    _common(label)
    label.set_defaults(handler=cmd_cluster_label)
    remove = actions.add_parser(
        "remove",
        help="unregister a cluster: its deployments are removed, then the kubeconfig Secret "
        "flotilla made for it",
    )
    remove.add_argument("name")
    _common(remove)
    remove.set_defaults(handler=cmd_cluster_remove)
    move = actions.add_parser(
        "move",
        help="re-home a cluster to another workspace in one durable step (interrupted, run it "
        "again): the old workspace's bundles are removed from it (kept with keepResources), "
        "the new one's deployed",
    )
    move.add_argument("name")
    move.add_argument("--to", required=True, metavar="WORKSPACE", help="the new namespace")
    _common(move)
    move.set_defaults(handler=cmd_cluster_move)
    listing = actions.add_parser("list", help="list registered clusters")
    _common(listing, output=True)
    listing.set_defaults(handler=cmd_cluster_list)
    add_token_commands(actions, _common, _run, _labels)

    describe = sub.add_parser(
        "describe",
        help="show a gitrepo, helmop, bundle or cluster in detail, with its conditions; or a "
        "notification provider (with its delivery counters) or alert",
    )
    describe.add_argument(
        "kind", choices=("gitrepo", "helmop", "bundle", "cluster", "provider", "alert")
    )
    describe.add_argument("name")
    _common(describe, output=True)
    describe.set_defaults(handler=cmd_describe)

    sync = sub.add_parser(
        "sync", help="poll a gitrepo now, or ask a helmop's chart source for its versions now"
    )
    sync.add_argument("kind", choices=("gitrepo", "helmop"))
    sync.add_argument("name")
    _common(sync)
    sync.set_defaults(handler=cmd_sync)

    for verb in ("pause", "resume"):
        parser = sub.add_parser(verb, help=f"{verb} the rollout of a bundle's new versions")
        parser.add_argument("kind", choices=("bundle",))
        parser.add_argument("name")
        _common(parser)
        parser.set_defaults(handler=cmd_pause)

    delete = sub.add_parser(
        "delete",
        help="delete a gitrepo or a helmop (and its deployments), a cluster, a clustergroup, "
        "a policy, a gitreporestriction, a schedule, or a notification provider (its queued "
        "messages are dropped; refused while an alert uses it) or alert",
    )
    delete.add_argument(
        "kind",
        choices=(
            "gitrepo",
            "helmop",
            "cluster",
            "clustergroup",
            *RESTRICTION_KINDS,
            "schedule",
            "provider",
            "alert",
        ),
    )
    delete.add_argument("name")
    _common(delete)
    delete.set_defaults(handler=cmd_delete)
