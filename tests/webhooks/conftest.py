"""A flotilla without clusters and a webhook receiver beside it, with the webhook Secret set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from temporalio.client import Client

from flotilla.webhooks import WEBHOOK_SECRET_NAME
from starters.webhookserver import WebhookConfig, WebhookReceiver, start_receiver
from tests.e2e.harness import Flotilla, start_flotilla

# Distinctive, so a test can look for them in logs and answers.
SECRET = {
    "github": "gh-hook-Xq7",
    "gitlab": "gl-hook-Xq7",
    "bitbucket": "bb-hook-Xq7",
    "bitbucket-server": "bbs-hook-Xq7",
    "gogs": "gogs-hook-Xq7",
    "azure-username": "flotilla",
    "azure-password": "az-hook-Xq7",
}
KEYS = {
    "github": SECRET["github"],
    "gitea": SECRET["gogs"],
    "gitlab": SECRET["gitlab"],
    "bitbucket": SECRET["bitbucket"],
    "bitbucket-server": SECRET["bitbucket-server"],
    "azure": "flotilla:az-hook-Xq7",
}


@dataclass
class Hooked:
    flotilla: Flotilla
    url: str
    outcomes: list[tuple[str, str]]

    async def post(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=body, headers=headers) as response,
        ):
            return response.status, await response.text()


@pytest.fixture
async def hooked(temporal_client: Client, task_queue: str, tmp_path: Path) -> AsyncIterator[Hooked]:
    fl = await start_flotilla(temporal_client, task_queue, tmp_path)
    fl.worker.secrets.put(fl.settings.system_namespace, WEBHOOK_SECRET_NAME, SECRET)
    outcomes: list[tuple[str, str]] = []
    receiver = WebhookReceiver(
        temporal_client,
        fl.worker.secrets,
        WebhookConfig(
            listen="127.0.0.1:0",
            secret_namespace=fl.settings.system_namespace,
            max_body_bytes=64 * 1024,
            max_in_flight=4,
        ),
        on_push=lambda provider, outcome: outcomes.append((provider, outcome)),
    )
    runner, port = await start_receiver(receiver)
    try:
        yield Hooked(fl, f"http://127.0.0.1:{port}/webhook", outcomes)
    finally:
        await runner.cleanup()
        await fl.cleanup()
        await fl.worker.stop()
