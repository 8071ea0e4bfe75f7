"""``flotilla webhook serve``: run the git webhook receiver on its own, beside the workers.

Only the parser is built here; the server (aiohttp, the Temporal client) is imported when the
command runs, so ``flotilla --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from flotilla.errors import FlotillaError
from flotilla.webhooks import WEBHOOK_SECRET_NAME

log = logging.getLogger("flotilla.webhook")


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        split_listen(args.listen)
    except ValueError as err:
        raise FlotillaError(f"--listen: {err}") from None
    asyncio.run(_serve(args))
    return 0


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a host and a port; ValueError if not."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {listen!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - a server's default


async def _serve(args: argparse.Namespace) -> None:
    from runtime.stores import load_settings, secret_store  # noqa: PLC0415
    from runtime.temporal import connect  # noqa: PLC0415

    # aiohttp and the Temporal SDK: imported only when the command runs.
    from starters.webhookserver import WebhookConfig, WebhookReceiver, start_receiver  # noqa: PLC0415

    settings = load_settings()
    client = await connect(settings.temporal)
    config = WebhookConfig(
        listen=args.listen, secret_namespace=settings.system_namespace, secret_name=args.secret
    )
    runner, _ = await start_receiver(WebhookReceiver(client, secret_store(settings), config))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("webhook receiver shutting down")
    await runner.cleanup()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webhook = sub.add_parser("webhook", help="receive git push webhooks")
    verbs = webhook.add_subparsers(dest="verb", metavar="VERB", required=True)
    serve = verbs.add_parser(
        "serve",
        help="serve the webhook receiver until SIGTERM",
        description="Receive push webhooks (GitHub, GitLab, Bitbucket Cloud and Server, "
        "Gitea/Gogs, Azure DevOps) on POST /webhook and sync the GitRepos that follow the "
        f"pushed branch or tag. Signatures are checked with the Secret {WEBHOOK_SECRET_NAME!r} "
        "of $FLOTILLA_SYSTEM_NAMESPACE (keys github, gitlab, bitbucket, bitbucket-server, "
        "gogs, azure-username and azure-password).",
    )
    serve.add_argument("--listen", default="0.0.0.0:8090", help="HOST:PORT (default 0.0.0.0:8090)")
    serve.add_argument(
        "--secret",
        default=WEBHOOK_SECRET_NAME,
        help=f"the webhook Secret's name (default {WEBHOOK_SECRET_NAME})",
    )
    serve.set_defaults(handler=cmd_serve)
