"""``flotilla rollback gitrepo|bundle NAME --to COMMIT | --previous | --clear``: version pins.

Rolls a GitRepo (every bundle) or one bundle back across the fleet by pinning it to an
earlier commit of its branch: the pinned commit's bundles roll out through the same
partitions, maxUnavailable, dependsOn and gates as any new version, and the next poll does
not undo it. The pin shows in `get`/`describe`; `--clear` lifts it (the branch head rolls out
again), and with `--until-next-commit` a new commit on the branch lifts it too.

--previous is the most recent version, other than the one deployed now, that was Ready on
every targeted cluster (a commit that changed nothing deployed is no version of its own);
flotilla remembers the last 5. Helm releases get a new revision with the old content (an
upgrade), never `helm rollback`. Refusals (an unknown or ambiguous commit, a bundle that is
not there, nothing to go back to) are one line, exit 1.
"""

from __future__ import annotations

import argparse
import getpass
import os

from flotilla.ids import CONTROL_TASK_QUEUE, DEFAULT_NAMESPACE
from starters.commands import _run
from workflows.gitrepo_models import RollbackRequest


def _user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return ""


def cmd_rollback(args: argparse.Namespace) -> int:
    request = RollbackRequest(
        to=args.to,
        previous=args.previous,
        clear=args.clear,
        until_next_commit=args.until_next_commit,
        user=args.by if args.by is not None else _user(),
        reason=args.reason,
    )
    return _run(args, lambda c: c.rollback(args.namespace, args.kind, args.name, request))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rollback = sub.add_parser(
        "rollback",
        help="pin a gitrepo or bundle to an earlier commit across the fleet, or lift the pin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rollback.add_argument("kind", choices=("gitrepo", "bundle"))
    rollback.add_argument("name")
    which = rollback.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--to", default="", metavar="COMMIT", help="a commit of the branch (full or abbreviated)"
    )
    which.add_argument(
        "--previous", action="store_true", help="the last version Ready before the current one"
    )
    which.add_argument(
        "--clear", action="store_true", help="lift the pin: the branch head rolls out again"
    )
    rollback.add_argument(
        "--until-next-commit",
        action="store_true",
        help="a new commit on the branch lifts the pin too (default: only --clear does)",
    )
    rollback.add_argument("--reason", default="", help="why (recorded and shown in status)")
    rollback.add_argument("--user", dest="by", default=None, help="who rolls back (default: $USER)")
    rollback.add_argument(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, help=f"default {DEFAULT_NAMESPACE}"
    )
    rollback.add_argument("--task-queue", default=CONTROL_TASK_QUEUE, help=argparse.SUPPRESS)
    rollback.set_defaults(handler=cmd_rollback)
