"""``flotilla controller``: serve Fleet's API (GitRepo, Cluster, ClusterGroup objects) from a
management cluster.

Only the parser is built at import; the Kubernetes and Temporal clients are imported when the
command runs, so ``flotilla --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket

from flotilla.errors import FlotillaError
from flotilla.ids import CONTROL_TASK_QUEUE, DEFAULT_NAMESPACE

log = logging.getLogger("flotilla.controller")


def cmd_controller(args: argparse.Namespace) -> int:
    if args.print_crds:
        from flotilla.fleetapi import crd_documents  # noqa: PLC0415

        for crd in crd_documents():
            print("---")
            print(json.dumps(crd, indent=2, sort_keys=True))
        return 0
    asyncio.run(_serve(args))
    return 0


async def _serve(args: argparse.Namespace) -> None:
    # The Kubernetes and Temporal clients: imported only when the command runs.
    from activities.kube import Kube  # noqa: PLC0415
    from activities.kubesecrets import (  # noqa: PLC0415
        SERVICE_ACCOUNT_DIR,
        in_cluster_client,
        kubeconfig_client,
    )
    from controller.loop import Controller, ControllerConfig  # noqa: PLC0415
    from flotilla.settings import SecretBackend  # noqa: PLC0415
    from runtime.stores import load_settings, secret_store  # noqa: PLC0415
    from runtime.temporal import connect  # noqa: PLC0415
    from starters.control import Control  # noqa: PLC0415

    settings = load_settings()
    if settings.secret_backend is not SecretBackend.KUBERNETES:
        raise FlotillaError(
            "FLOTILLA_SECRET_BACKEND must be 'kubernetes' for the controller: Fleet's objects "
            "name Secrets in their own namespaces of the management cluster (set "
            "FLOTILLA_MANAGEMENT_KUBECONFIG outside a pod)"
        )
    api = (
        kubeconfig_client(settings.management_kubeconfig)
        if settings.management_kubeconfig
        else in_cluster_client(os.environ, SERVICE_ACCOUNT_DIR)
    )
    client = await connect(settings.temporal)
    control = Control(client, task_queue=args.task_queue, secrets=secret_store(settings))
    config = ControllerConfig(
        namespaces=args.namespaces or [DEFAULT_NAMESPACE],
        identity=args.identity,
        install_crds=args.install_crds,
        status_seconds=args.status_interval,
    )
    controller = Controller(Kube(api), control, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await controller.run(stop)
    log.info("flotilla controller stopped")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "controller",
        help="serve Fleet's API (GitRepo, Cluster, ClusterGroup) from the management cluster",
        description="Watch fleet.cattle.io/v1alpha1 GitRepo, Cluster and ClusterGroup objects "
        "in the namespaces served and do what `flotilla apply` and `flotilla delete` do; write "
        "their status, and Bundles and BundleDeployments, back in Fleet's shape. Needs "
        "FLOTILLA_SECRET_BACKEND=kubernetes (the management cluster: "
        "FLOTILLA_MANAGEMENT_KUBECONFIG, else the pod's service account). Refuses to start "
        "beside Fleet's own controller or another flotilla controller on a namespace. "
        "See docs/fleet-api.md.",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        dest="namespaces",
        action="append",
        metavar="NS",
        help=f"a namespace to serve (repeatable; default {DEFAULT_NAMESPACE})",
    )
    parser.add_argument(
        "--install-crds",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="install or update Fleet's CRDs at start (default); --no-install-crds expects them",
    )
    parser.add_argument(
        "--print-crds", action="store_true", help="print the CRDs (JSON documents) and exit"
    )
    parser.add_argument(
        "--identity",
        default=socket.gethostname(),
        help="this controller's name in the namespaces' Leases (default: the host name)",
    )
    parser.add_argument(
        "--status-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often status is read from the workflows (default 2)",
    )
    parser.add_argument("--task-queue", default=CONTROL_TASK_QUEUE, help=argparse.SUPPRESS)
    parser.set_defaults(handler=cmd_controller)
