"""``flotilla setup``: what flotilla needs on a Temporal server, made idempotently.

The namespace (created with a retention period when it is missing) and flotilla's custom
search attributes (registered through the operator API). A production server has neither
until someone makes them; the worker chart runs this before the worker starts, and running
it again changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from flotilla.durations import format_duration, parse_duration
from flotilla.errors import FlotillaError
from runtime.env import load_settings
from runtime.temporal import connect, ensure_namespace, ensure_search_attributes

DEFAULT_RETENTION = "72h"
# A namespace just created reaches every frontend's namespace cache only after its refresh
# (10 s by default): until then the operator API answers NOT_FOUND for it.
NAMESPACE_VISIBLE_TIMEOUT = 60.0


async def _search_attributes_once_visible(client: Client, namespace: str) -> list[str]:
    deadline = time.monotonic() + NAMESPACE_VISIBLE_TIMEOUT
    while True:
        try:
            return await ensure_search_attributes(client, namespace)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise FlotillaError(
                    f"Temporal namespace {namespace!r}: listing search attributes failed "
                    f"({err.message})"
                ) from None
        await asyncio.sleep(1.0)


async def setup(client: Client, namespace: str, retention: timedelta) -> list[str]:
    """Make the namespace and the search attributes; returns one line per thing done."""
    created = await ensure_namespace(client, namespace, retention)
    lines = [
        f"namespace {namespace}: created, retention {format_duration(created.total_seconds())}"
        if created
        else f"namespace {namespace}: present"
    ]
    added = await _search_attributes_once_visible(client, namespace)
    lines.append(
        f"search attributes: added {', '.join(added)}" if added else "search attributes: present"
    )
    return lines


def cmd_setup(args: argparse.Namespace) -> int:
    retention = timedelta(seconds=parse_duration(args.retention, field="--retention"))
    settings = load_settings().temporal

    async def go() -> list[str]:
        return await setup(await connect(settings), settings.namespace, retention)

    print("\n".join(asyncio.run(go())))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "setup",
        help="create the Temporal namespace and search attributes flotilla needs (idempotent)",
        description="Create TEMPORAL_NAMESPACE when it is missing and register flotilla's "
        "search attributes in it; an existing namespace keeps its retention.",
    )
    parser.add_argument(
        "--retention",
        default=DEFAULT_RETENTION,
        help=f"how long closed workflows are kept in a new namespace (default {DEFAULT_RETENTION})",
    )
    parser.set_defaults(handler=cmd_setup)
