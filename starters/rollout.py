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


async def _progress(control: Control, kind: str, namespace: str, name: str) -> Progress:
    if kind in ("gitrepo", "gitrepos"):
        g = await control.gitrepo_status(namespace, name)
        return gitrepo_progress(
            f"{namespace}/{name}",
            commit=g.commit,
            state=str(g.state),
            ready_deployments=g.ready_bundle_deployments,
            message=g.message,
            error=g.error,
            bundles=[Part(b.name, str(b.state), b.error or b.message) for b in g.bundles],
        )
    b = await control.bundle_status(namespace, name, clusters=True)
    return bundle_progress(
        f"{namespace}/{name}",
        commit=b.commit,
        state=str(b.state),
        ready=b.ready,
        desired=b.desired,
        summary=b.summary,
        paused=b.paused,
        clusters=[Part(c.cluster, str(c.state), c.message) for c in b.clusters],
        halted=b.halted,
    )


async def follow(args: argparse.Namespace, out: TextIO) -> int:
    from runtime.stores import LazySecretStore, load_settings  # noqa: PLC0415
    from runtime.temporal import connect  # noqa: PLC0415
    from starters.control import Control  # noqa: PLC0415

    settings = load_settings()
    client = await connect(settings.temporal)
    control = Control(client, task_queue=args.task_queue, secrets=LazySecretStore(settings))
    return await follow_rollout(
        control,
        args.kind,
        args.namespace,
        args.name,
        timeout=args.timeout,
        timeout_text=args.timeout_text,
        interval=args.interval,
        out=out,
    )


async def follow_rollout(
    control: Control,
    kind: str,
    namespace: str,
    name: str,
    *,
    timeout: float,
    timeout_text: str,
    interval: float,
    out: TextIO,
) -> int:
    """Print the rollout of one gitrepo or bundle until it is Ready (0), failed
    (``EXIT_FAILED``) or ``timeout`` seconds passed (``EXIT_TIMEOUT``; 0 waits for ever)."""
    printer = Printer(out)
    deadline = time.monotonic() + timeout if timeout else None
    try:
        while True:
            progress = await _progress(control, kind, namespace, name)
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
                    f"error: timed out after {timeout_text} waiting for {kind} "
                    f"{namespace}/{name}: {progress.line}",
                    file=sys.stderr,
                )
                return EXIT_TIMEOUT
            await asyncio.sleep(interval)
    finally:
        printer.close()


def parse_timeout(text: str) -> float:
    """``--timeout`` in seconds (empty: 0, no limit), or a one-line SpecError."""
    try:
        return parse_duration(text, field="--timeout") if text else 0.0
    except FlotillaError as err:
        raise SpecError(err.message) from None


def cmd_rollout_status(args: argparse.Namespace) -> int:
    args.timeout_text = args.timeout
    args.timeout = parse_timeout(args.timeout)
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
