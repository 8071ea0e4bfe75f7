"""Fixtures the end-to-end tests share."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from devenv.cluster import LocalCluster


@pytest.fixture
def prefix(local_cluster: LocalCluster) -> Iterator[str]:
    """A prefix for the namespaces a test deploys into; they are deleted afterwards."""
    value = f"t{uuid.uuid4().hex[:6]}"
    yield value
    for ns in local_cluster.request("GET", "/api/v1/namespaces")["items"]:
        name = ns["metadata"]["name"]
        if name.startswith(value):
            with contextlib.suppress(Exception):
                local_cluster.request("DELETE", f"/api/v1/namespaces/{name}")
