"""Entry point of the ``flotilla`` command: builds the parser and runs one subcommand."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from flotilla.errors import FlotillaError
from starters import content, control, dev, images, offline

# Each command module has ``register(subparsers)``; add new modules here.
COMMAND_MODULES = (dev, offline, control, images, content)

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flotilla",
        description="GitOps continuous delivery for fleets of Kubernetes clusters "
        "(Fleet-compatible, on Temporal).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
