"""The git webhook receiver: a verified push makes the GitRepos that follow it sync now.

An aiohttp server (run by the worker with ``--webhook-listen`` or alone with ``flotilla
webhook serve``). Each request is bounded in size, time and concurrency; its signature is
checked against Fleet's ``gitjob-webhook`` Secret from the secret store before anything is
read from it (``flotilla.webhooks``); then the running GitRepo workflows whose repository
(any URL form) and branch, tag or pinned revision the push moves get a ``sync_now`` update,
sent without waiting for the poll it starts.

Answers: 200 and the GitRepos synced; 202 with a note when no GitRepo follows the push (or
it already has the commit); 400 with a one-line reason for a body that is not a push; 401
for a missing or wrong signature (nothing syncs); 413 for a body over the limit; 503 when
too many requests are in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from temporalio.client import Client, WorkflowUpdateStage
from temporalio.service import RPCError

from activities.secrets import SecretStore
from flotilla.errors import FlotillaError, one_line
from flotilla.ids import SA_KIND, SA_REPO
from flotilla.settings import DEFAULT_SYSTEM_NAMESPACE
from flotilla.webhooks import (
    WEBHOOK_SECRET_NAME,
    Push,
    WebhookError,
    detect_provider,
    is_ping,
    parse_push,
    same_repo,
    verify,
)
from starters.webhook import split_listen
from workflows.gitrepo_models import (
    GITREPO_STATUS_QUERY,
    SYNC_NOW_UPDATE,
    GitRepoStatus,
    GitRepoStatusRequest,
    SyncNowRequest,
    SyncNowResult,
)

log = logging.getLogger("flotilla.webhook")

DEFAULT_LISTEN = "0.0.0.0:8090"
PATH = "/webhook"
# GitHub caps a payload at 25 MB; a push of a few hundred commits is well under this.
MAX_BODY_BYTES = 4 * 1024 * 1024
REQUEST_SECONDS = 10.0
MAX_IN_FLIGHT = 32
# The webhook Secret is read at most this often (a Kubernetes secret store is an API call).
SECRET_CACHE_SECONDS = 10.0
# A GitRepo applied this long before a push may not be seen by it (visibility lags as much).
LISTING_CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class WebhookConfig:
    listen: str = DEFAULT_LISTEN
    secret_namespace: str = DEFAULT_SYSTEM_NAMESPACE
    secret_name: str = WEBHOOK_SECRET_NAME
    max_body_bytes: int = MAX_BODY_BYTES
    request_seconds: float = REQUEST_SECONDS
    max_in_flight: int = MAX_IN_FLIGHT


@dataclass(frozen=True)
class Followed:
    """A running GitRepo whose repository a push names."""

    namespace: str
    name: str
    workflow_id: str


class WebhookReceiver:
    """Turns verified pushes into ``sync_now`` updates of the GitRepos that follow them."""

    def __init__(
        self,
        client: Client,
        secrets: SecretStore,
        config: WebhookConfig,
        *,
        on_push: Callable[[str, str], None] | None = None,
    ) -> None:
        self.client = client
        self.secrets = secrets
        self.config = config
        # Called with (provider, outcome) per request: the metrics hook.
        self.on_push = on_push
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self._secret: tuple[float, dict[str, str]] | None = None
        self._listing: tuple[float, list[tuple[str, str]]] | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post(PATH, self.handle)
        app.router.add_post("/", self.handle)
        app.router.add_get("/healthz", _healthz)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        if self._slots.locked():
            return self._answer("-", "busy", 503, "too many webhook requests in flight; retry")
        async with self._slots:
            try:
                async with asyncio.timeout(self.config.request_seconds):
                    return await self._handle(request)
            except TimeoutError:
                return self._answer("-", "timeout", 503, "the request took too long")

    async def _handle(self, request: web.Request) -> web.Response:
        provider = "-"
        if request.content_length and request.content_length > self.config.max_body_bytes:
            return self._answer(provider, "too_large", 413, "the body is over the size limit")
        try:
            provider = detect_provider(request.headers)
            body = await request.read()
            verify(provider, request.headers, body, await self._secret_data())
            if is_ping(provider, request.headers):
                return self._answer(provider, "ping", 200, "pong")
            push = parse_push(provider, request.headers, body)
            return await self._sync(push)
        except web.HTTPRequestEntityTooLarge:
            return self._answer(provider, "too_large", 413, "the body is over the size limit")
        except WebhookError as err:
            outcome = "unauthorized" if err.status == 401 else "bad_request"
            return self._answer(provider, outcome, err.status, str(err))
        except (FlotillaError, RPCError) as err:
            log.warning("webhook from %s not handled: %s", provider, one_line(str(err)))
            return self._answer(provider, "error", 503, "cannot sync now; retry later")

    async def _secret_data(self) -> dict[str, str]:
        now = time.monotonic()
        if self._secret is not None and now - self._secret[0] < SECRET_CACHE_SECONDS:
            return self._secret[1]
        loop = asyncio.get_running_loop()
        try:
            data = await loop.run_in_executor(
                None, self.secrets.get, self.config.secret_namespace, self.config.secret_name
            )
        except FlotillaError as err:
            if getattr(err, "retryable", False):
                raise
            # No Secret: every push is refused until one is made.
            data = {}
        self._secret = (now, data)
        return data

    async def _sync(self, push: Push) -> web.Response:
        followers = await self.followers(push)
        if not followers:
            return self._answer(
                push.provider, "unknown_repo", 202, f"no GitRepo follows {push.repo_urls[0]}"
            )
        synced: list[str] = []
        current: list[str] = []
        for gitrepo in followers:
            handle = self.client.get_workflow_handle(gitrepo.workflow_id)
            try:
                status: GitRepoStatus = await handle.query(
                    GITREPO_STATUS_QUERY, GitRepoStatusRequest(), result_type=GitRepoStatus
                )
            except RPCError:
                continue  # finished between the listing and the query
            if not push.moves(status.branch):
                continue
            if status.commit and status.commit in push.revisions:
                current.append(f"{gitrepo.namespace}/{gitrepo.name}")
                continue
            try:
                await handle.start_update(
                    SYNC_NOW_UPDATE,
                    SyncNowRequest(),
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                    result_type=SyncNowResult,
                )
            except RPCError as err:  # finished or being deleted meanwhile: the others still sync
                log.info("gitrepo %s not synced: %s", gitrepo.workflow_id, one_line(err.message))
                continue
            synced.append(f"{gitrepo.namespace}/{gitrepo.name}")
            log.info(
                "webhook %s: push to %s syncs gitrepo %s/%s",
                push.provider,
                ",".join(push.refs),
                gitrepo.namespace,
                gitrepo.name,
            )
        if synced:
            text = "syncing gitrepo " + ", ".join(synced)
            return self._answer(push.provider, "synced", 200, text)
        if current:
            return self._answer(
                push.provider, "current", 202, "already at that commit: " + ", ".join(current)
            )
        return self._answer(
            push.provider,
            "unknown_ref",
            202,
            f"no GitRepo of {push.repo_urls[0]} follows {', '.join(push.refs) or 'that ref'}",
        )

    async def followers(self, push: Push) -> list[Followed]:
        """The running GitRepo workflows whose repository is the one pushed to."""
        found: list[Followed] = []
        for workflow_id, repo in await self._gitrepos():
            if same_repo(push, repo):
                _, namespace, name = workflow_id.split("/", 2)
                found.append(Followed(namespace, name, workflow_id))
        return found

    async def _gitrepos(self) -> list[tuple[str, str]]:
        """(workflow id, repository) of every running GitRepo; one listing serves the pushes
        of the next ``LISTING_CACHE_SECONDS``, so a flood costs visibility one read a second."""
        now = time.monotonic()
        if self._listing is not None and now - self._listing[0] < LISTING_CACHE_SECONDS:
            return self._listing[1]
        query = f"{SA_KIND} = 'GitRepo' AND ExecutionStatus = 'Running'"
        listing = []
        async for execution in self.client.list_workflows(query):
            repo = _first(execution.search_attributes.get(SA_REPO))
            if repo:
                listing.append((execution.id, repo))
        self._listing = (now, listing)
        return listing

    def _answer(self, provider: str, outcome: str, status: int, text: str) -> web.Response:
        if self.on_push is not None:
            self.on_push(provider, outcome)
        if status >= 400:
            log.info("webhook %s refused (%d): %s", provider, status, text)
        return web.Response(status=status, text=one_line(text) + "\n")


def _first(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    return value if isinstance(value, str) else ""


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def start_receiver(receiver: WebhookReceiver) -> tuple[web.AppRunner, int]:
    """Serve ``receiver`` on its configured address; returns the runner and the bound port."""
    host, port = split_listen(receiver.config.listen)
    runner = web.AppRunner(
        receiver.app(), access_log=None, handle_signals=False, shutdown_timeout=5.0
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=128)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise FlotillaError(
            f"webhook receiver cannot listen on {receiver.config.listen}: {err.strerror or err}"
        ) from None
    bound = runner.addresses[0][1] if runner.addresses else port
    log.info("webhook receiver listening on %s:%d%s", host, bound, PATH)
    return runner, int(bound)
