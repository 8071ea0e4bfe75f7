"""Entry point of the ``flotilla`` command: builds the parser and runs one subcommand."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from flotilla.errors import FlotillaError, UnreachableError

# Every command, the module whose ``register(subparsers)`` defines it, and its one-line help.
# Only the module of the command being run is imported: the Temporal client, the workflows and
# the Kubernetes client take seconds to import, and `flotilla --help` or an offline command
# needs none of them.
COMMANDS: dict[str, tuple[str, str]] = {
    "dev": ("starters.dev", "run the local substrate and the demo"),
    "setup": (
        "starters.setup",
        "create the Temporal namespace and search attributes flotilla needs",
    ),
    "bundle": (
        "starters.offline",
        "print the Bundle objects found in directories (like `fleet apply -o -`)",
    ),
    "test": ("starters.offline", "print the manifests a cluster would get (like `fleet test`)"),
    "target": ("starters.offline", "show which clusters each bundle targets"),
    "apply": (
        "starters.commands",
        "apply GitRepo, Cluster, ClusterGroup, notification Provider and Alert YAML",
    ),
    "cluster": ("starters.commands", "register and label downstream clusters"),
    "agent": ("starters.agent", "serve one agent-mode cluster's deploys from inside it"),
    "get": ("starters.get", "list gitrepos, bundles, clusters or images"),
    "describe": ("starters.commands", "show a gitrepo, bundle or cluster in detail"),
    "sync": ("starters.commands", "poll a gitrepo now"),
    "pause": ("starters.commands", "pause the rollout of a bundle's new versions"),
    "resume": ("starters.commands", "resume the rollout of a bundle's new versions"),
    "delete": (
        "starters.commands",
        "delete a gitrepo (and its deployments), a cluster or a clustergroup",
    ),
    "approve": ("starters.images", "approve or reject an image update or a rollout partition"),
    "content": ("starters.content", "the content store: garbage collection"),
    "schema": ("starters.schema", "print the JSON Schema of fleet.yaml or a Fleet object"),
    "rollout": ("starters.rollout", "follow a rollout until it is Ready or fails"),
    "rollback": (
        "starters.rollback",
        "pin a gitrepo or bundle to an earlier commit across the fleet, or lift the pin",
    ),
    "diff": (
        "starters.diff",
        "show what a commit would change on each targeted cluster (exit 1: changes)",
    ),
    "webhook": ("starters.webhook", "receive git push webhooks and sync the GitRepos they move"),
    "controller": (
        "controller.command",
        "serve Fleet's API (GitRepo, Cluster, ClusterGroup objects) from a management cluster",
    ),
    "secret": (
        "starters.secrets",
        "create, list and delete Fleet's secrets (git, Helm, registry credentials)",
    ),
}

EXIT_USER_ERROR = 1
EXIT_USAGE_ERROR = 2  # argparse's own code for a bad command line
EXIT_INTERNAL_ERROR = 3
EXIT_UNREACHABLE = 4

EPILOG = f"""exit codes:
  0  success
  {EXIT_USER_ERROR}  an input or a requested object is wrong (the message says which and why)
  {EXIT_USAGE_ERROR}  the command line itself is wrong (unknown command or flag)
  {EXIT_INTERNAL_ERROR}  an internal error (a bug: run again with --debug and report it)
  {EXIT_UNREACHABLE}  a server could not be reached (Temporal, a cluster, the secret store)

environment: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and the FLOTILLA_* settings in
docs/installation.md; `flotilla COMMAND --help` for a command's options."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module registers its real subcommands (all when None)."""
    parser = argparse.ArgumentParser(
        prog="flotilla",
        description="GitOps continuous delivery for fleets of Kubernetes clusters "
        "(Fleet-compatible, on Temporal).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = {COMMANDS[command][0]} if command in COMMANDS else set()
    if command is None:
        wanted = {module for module, _ in COMMANDS.values()}
    registered: set[str] = set()
    for module in dict.fromkeys(module for module, _ in COMMANDS.values()):
        if module in wanted:
            importlib.import_module(module).register(sub)
            registered.update(sub.choices)
    for name, (_, text) in COMMANDS.items():
        if name not in registered:
            # A stand-in that lists the command in --help; running it re-parses for real.
            sub.add_parser(name, help=text, add_help=False)
    return parser


def _command_of(argv: Sequence[str]) -> str:
    """The command word: the first argument that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), "")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    try:
        code: int = handler(args)
        return code
    except UnreachableError as err:
        print(f"error: {err}", file=sys.stderr)
        if args.debug:
            traceback.print_exc()
        return EXIT_UNREACHABLE
    except FlotillaError as err:
        print(f"error: {err}", file=sys.stderr)
        if args.debug:
            traceback.print_exc()
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the last line of defence: one line unless --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(
                f"internal error: {type(err).__name__}: {err} (run with --debug for details)",
                file=sys.stderr,
            )
        return EXIT_INTERNAL_ERROR


def run() -> NoReturn:
    """The console script: ``main()``, then leave without interpreter finalization.

    The Temporal client's native runtime keeps threads that may still call into Python while
    the interpreter finalizes, which aborts the process (``PyGILState_Release``) after the
    command has already succeeded. Every command has finished its work and printed its output
    when ``main`` returns, so flushing and exiting at once is both safe and honest about the
    exit code.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
