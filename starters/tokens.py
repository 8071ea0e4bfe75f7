"""``flotilla cluster token create|list|delete``: registration tokens for agents.

The token is made here and printed once, with the `helm install` command of the agent chart;
only its hash reaches the registry workflow (``flotilla.agents``).
"""

from __future__ import annotations

import argparse
import secrets
import shlex
from collections.abc import Awaitable, Callable, Sequence

from flotilla.durations import parse_duration
from flotilla.errors import SpecError
from flotilla.kubenames import name_problem
from runtime.stores import load_settings
from starters.control import Control
from starters.tables import render, table
from workflows.registry_models import TokenInfo

AGENT_CHART = "charts/flotilla-agent"
AGENT_NAMESPACE = "flotilla-agent"


def helm_install_command(token: str, cluster: str, temporal_address: str) -> str:
    """The ready command that installs the agent chart with this token."""
    args = [
        "helm",
        "install",
        "flotilla-agent",
        AGENT_CHART,
        "-n",
        AGENT_NAMESPACE,
        "--create-namespace",
        "--set-string",
        f"temporal.address={temporal_address}",
        "--set-string",
        f"clusterName={cluster}",
        "--set-string",
        f"token={token}",
    ]
    return shlex.join(args)


def token_table(tokens: Sequence[TokenInfo]) -> str:
    return table(
        ["NAME", "CLUSTER", "LABELS", "USES", "EXPIRES", "USED-BY"],
        [
            [
                t.name,
                t.cluster or "<any>",
                ",".join(f"{k}={v}" for k, v in sorted(t.labels.items())) or "<none>",
                f"{len(t.used_by)}/{t.max_uses or 'unlimited'}",
                t.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if t.expires_at else "never",
                ",".join(t.used_by) or "-",
            ]
            for t in tokens
        ],
    )


def add_token_commands(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[..., None],
    run: Callable[[argparse.Namespace, Callable[[Control], Awaitable[str]]], int],
    labels: Callable[[Sequence[str]], dict[str, str]],
) -> None:
    """``cluster token ...``, with the cluster command's common flags and runner."""
    token = actions.add_parser("token", help="registration tokens for agents (pull mode)")
    verbs = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)

    create = verbs.add_parser(
        "create", help="make a token; prints it and the helm install command of the agent"
    )
    create.add_argument("name", nargs="?", help="the token's name (default: generated)")
    create.add_argument("--ttl", default="24h", help="lifetime, e.g. 24h, 30m (default 24h)")
    create.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--cluster", default="", help="the one cluster it registers (or claims)")
    create.add_argument(
        "--max-uses", type=int, default=0, help="clusters it may register (default: no limit)"
    )
    common(create)

    def do_create(args: argparse.Namespace) -> int:
        ttl = parse_duration(args.ttl, field="--ttl")
        if ttl <= 0:
            raise SpecError(f"--ttl: {args.ttl!r} is not a positive duration")
        if args.cluster and name_problem(args.cluster):
            raise SpecError(f"--cluster: {name_problem(args.cluster)}")
        address = load_settings().temporal.address

        async def action(control: Control) -> str:
            name = args.name or f"token-{secrets.token_hex(3)}"
            text = await control.create_token(
                args.namespace,
                name,
                ttl_seconds=ttl,
                labels=labels(args.label),
                cluster=args.cluster,
                max_uses=args.max_uses,
            )
            cluster = args.cluster or "CLUSTER-NAME"
            return "\n".join(
                [
                    f"registration token {name} (namespace {args.namespace}, expires in "
                    f"{args.ttl}); it is shown only now:",
                    text,
                    "install the agent in the downstream cluster with:",
                    "  " + helm_install_command(text, cluster, address),
                ]
            )

        return run(args, action)

    create.set_defaults(handler=do_create)

    listing = verbs.add_parser("list", help="list registration tokens (never their text)")
    common(listing, output=True)

    def do_list(args: argparse.Namespace) -> int:
        async def action(control: Control) -> str:
            tokens = await control.list_tokens(args.namespace)
            return render(tokens, args.output, lambda: token_table(tokens))

        return run(args, action)

    listing.set_defaults(handler=do_list)

    delete = verbs.add_parser("delete", help="delete a token: agents can no longer register")
    delete.add_argument("name")
    common(delete)

    def do_delete(args: argparse.Namespace) -> int:
        async def action(control: Control) -> str:
            return (await control.delete_token(args.namespace, args.name)).message

        return run(args, action)

    delete.set_defaults(handler=do_delete)
