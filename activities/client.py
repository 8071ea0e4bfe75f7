"""The one place a Temporal client is made: address and namespace from the environment, and
the pydantic data converter every workflow, activity and starter relies on."""

from __future__ import annotations

import os

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"


def temporal_address() -> str:
    return os.environ.get("TEMPORAL_ADDRESS") or DEFAULT_ADDRESS


def temporal_namespace() -> str:
    return os.environ.get("TEMPORAL_NAMESPACE") or DEFAULT_NAMESPACE


async def connect(address: str | None = None, namespace: str | None = None) -> Client:
    """Connect to Temporal (``$TEMPORAL_ADDRESS``/``$TEMPORAL_NAMESPACE`` unless given)."""
    return await Client.connect(
        address or temporal_address(),
        namespace=namespace or temporal_namespace(),
        data_converter=pydantic_data_converter,
    )
