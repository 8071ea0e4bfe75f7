"""kubectl's calls against a management cluster, and a controller run inside the test.

No kubectl binary is built with the pinned Kubernetes tools, so these helpers make the calls
kubectl makes: apply (create, else merge-patch), label, delete, and ``get`` as the server's
Table (the same columns and cells kubectl prints).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from activities.kube import ConflictError, Kube, NotFoundError
from activities.kubesecrets import kubeconfig_client
from controller.loop import Controller, ControllerConfig
from flotilla.fleetapi import KIND_BY_NAME
from starters.control import Control

_TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
_MERGE = "application/merge-patch+json"


def path(kind: str, namespace: str = "", name: str = "", sub: str = "") -> str:
    base = "/apis/fleet.cattle.io/v1alpha1"
    plural = KIND_BY_NAME[kind].plural
    out = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return out + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


@dataclass
class Kubectl:
    kube: Kube

    @classmethod
    def for_kubeconfig(cls, kubeconfig: Path) -> Kubectl:
        return cls(Kube(kubeconfig_client(kubeconfig)))

    def apply(self, text: str) -> None:
        for doc in yaml.safe_load_all(text):
            meta = doc["metadata"]
            try:
                self.kube.request(
                    "POST", path(doc["kind"], meta["namespace"]), what="apply", body=doc
                )
            except ConflictError:
                self.kube.request(
                    "PATCH",
                    path(doc["kind"], meta["namespace"], meta["name"]),
                    what="apply",
                    body=doc,
                    content_type=_MERGE,
                )

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.kube.request("GET", path(kind, namespace, name), what="get")
        except NotFoundError:
            return None

    def table(self, kind: str, namespace: str = "") -> list[dict[str, str]]:
        """``kubectl get <kind> [-A]``: one row per object, cells by column name."""
        table = self.kube.request("GET", path(kind, namespace), what="get", accept=_TABLE)
        names = [c["name"] for c in table["columnDefinitions"]]
        return [dict(zip(names, map(str, row["cells"]), strict=True)) for row in table["rows"]]

    def label(self, kind: str, namespace: str, name: str, labels: dict[str, str | None]) -> None:
        self.kube.request(
            "PATCH",
            path(kind, namespace, name),
            what="label",
            body={"metadata": {"labels": labels}},
            content_type=_MERGE,
        )

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.kube.request("DELETE", path(kind, namespace, name), what="delete")

    def patch_status(self, kind: str, namespace: str, name: str, status: object) -> None:
        self.kube.request(
            "PATCH",
            path(kind, namespace, name, "status"),
            what="status",
            body={"status": status},
            content_type=_MERGE,
        )


@contextlib.asynccontextmanager
async def running_controller(
    kubeconfig: Path,
    control: Control,
    namespace: str,
    identity: str,
    *,
    bundle_shard_size: int | None = None,
) -> AsyncIterator[Controller]:
    """A controller serving ``namespace`` until the block ends (stopped as by SIGTERM);
    ``bundle_shard_size``: its GitRepos' bundles shard above that many clusters."""
    controller = Controller(
        Kube(kubeconfig_client(kubeconfig)),
        control,
        ControllerConfig(
            namespaces=[namespace],
            identity=identity,
            status_seconds=0.5,
            retry_seconds=2.0,
            bundle_shard_size=bundle_shard_size,
        ),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        # Started (CRDs, leases) or refused: a refusal is raised here.
        started = asyncio.create_task(controller.started.wait())
        await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if task.done():
            task.result()
        yield controller
    finally:
        stop.set()
        await task
