"""``flotilla rollout status gitrepo|bundle NAME``: follow a rollout until it is Ready or fails.

A status query every ``--interval``; a line whenever the status changes (on a terminal the
waiting line is rewritten in place instead). Exit 0 when Ready, 1 with the reason when it
failed (ErrApplied, or git cannot be read), 5 when ``--timeout`` passed first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING, TextIO

from flotilla.durations import parse_duration
from flotilla.errors import FlotillaError, SpecError
from flotilla.ids import CONTROL_TASK_QUEUE, DEFAULT_NAMESPACE
from flotilla.progress import Part, Progress, Verdict, bundle_progress, gitrepo_progress

if TYPE_CHECKING:  # the Temporal SDK: imported when the command runs, not to build the parser
    from starters.control import Control

EXIT_FAILED = 1
EXIT_TIMEOUT = 5
DEFAULT_INTERVAL = 1.0


class Printer:
    """Prints each new line; on a terminal, a waiting line is replaced by the next one."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self.last = ""
        self.open = False

    def show(self, line: str, *, final: bool = False) -> None:
        if line == self.last and not final:
            return
        self.last = line
        if self.live:
            self.out.write("\r\x1b[K" + line + ("\n" if final else ""))
            self.open = not final
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.open:
            self.out.write("\n")
            self.out.flush()
            self.open = False


async def _progress(control: Control, args: argparse.Namespace) -> Progress:
    if args.kind in ("gitrepo", "gitrepos"):
        g = await control.gitrepo_status(args.namespace, args.name)
        return gitrepo_progress(
            f"{args.namespace}/{args.name}",
            commit=g.commit,
            state=str(g.state),
            ready_deployments=g.ready_bundle_deployments,
            message=g.message,
            error=g.error,
            bundles=[Part(b.name, str(b.state), b.error or b.message) for b in g.bundles],
        )
    b = await control.bundle_status(args.namespace, args.name)
    return bundle_progress(
        f"{args.namespace}/{args.name}",
        commit=b.commit,
        state=str(b.state),
        ready=b.ready,
        desired=b.desired,
        summary=b.summary,
        paused=b.paused,
        clusters=[Part(c.cluster, str(c.state), c.message) for c in b.clusters],
    )


async def follow(args: argparse.Namespace, out: TextIO) -> int:
    from runtime.stores import LazySecretStore, load_settings  # noqa: PLC0415
    from runtime.temporal import connect  # noqa: PLC0415
    from starters.control import Control  # noqa: PLC0415

    settings = load_settings()
    client = await connect(settings.temporal)
    control = Control(client, task_queue=args.task_queue, secrets=LazySecretStore(settings))
    printer = Printer(out)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while True:
            progress = await _progress(control, args)
            if progress.verdict is not Verdict.WAITING:
                printer.show(progress.line, final=True)
                if progress.verdict is Verdict.READY:
                    return 0
                print(f"error: rollout failed: {progress.reason}", file=sys.stderr)
                return EXIT_FAILED
            printer.show(progress.line)
            if deadline is not None and time.monotonic() >= deadline:
                printer.close()
                print(
                    f"error: timed out after {args.timeout_text} waiting for {args.kind} "
                    f"{args.namespace}/{args.name}: {progress.line}",
                    file=sys.stderr,
                )
                return EXIT_TIMEOUT
            await asyncio.sleep(args.interval)
    finally:
        printer.close()


def cmd_rollout_status(args: argparse.Namespace) -> int:
    args.timeout_text = args.timeout
    try:
        args.timeout = parse_duration(args.timeout, field="--timeout") if args.timeout else 0.0
    except FlotillaError as err:
        raise SpecError(err.message) from None
    return asyncio.run(follow(args, sys.stdout))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rollout = sub.add_parser("rollout", help="follow a rollout until it is Ready or fails")
    verbs = rollout.add_subparsers(dest="verb", metavar="VERB", required=True)
    status = verbs.add_parser(
        "status",
        help="show a gitrepo's or bundle's rollout until Ready (exit 0) or failed (exit 1)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("kind", choices=("gitrepo", "bundle"))
    status.add_argument("name")
    status.add_argument(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, help=f"default {DEFAULT_NAMESPACE}"
    )
    status.add_argument(
        "--timeout", default="", help="give up after this long (e.g. 5m; default: never)"
    )
    status.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help=argparse.SUPPRESS)
    status.add_argument("--task-queue", default=CONTROL_TASK_QUEUE, help=argparse.SUPPRESS)
    status.set_defaults(handler=cmd_rollout_status)
