"""``flotilla dev``: the local substrate (clusters, Temporal, git daemon) and the demo stack."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

from devenv import cluster as clusters
from devenv import stack
from devenv.process import StartupError, pid_alive
from flotilla.errors import FlotillaError
from flotilla.settings import DEFAULT_TEMPORAL_ADDRESS as DEFAULT_ADDRESS
from flotilla.settings import DEFAULT_TEMPORAL_HTTP_ADDRESS as DEFAULT_HTTP_ADDRESS
from starters import demo


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="run the local substrate and the demo")
    dev_sub = dev.add_subparsers(dest="dev_command", metavar="SUBCOMMAND", required=True)

    up = dev_sub.add_parser("up", help="start Temporal with UI, a worker and local clusters")
    up.set_defaults(handler=cmd_up)
    dev_sub.add_parser("down", help="stop everything `dev up` started").set_defaults(
        handler=cmd_down
    )
    dev_sub.add_parser("status", help="show what the demo stack runs").set_defaults(
        handler=cmd_status
    )

    cluster = dev_sub.add_parser("cluster", help="local clusters on loopback ports")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    c_up = cluster_sub.add_parser("up", help="start a cluster (etcd, apiserver, kcm, kwok)")
    c_up.add_argument("name")
    c_up.add_argument("--nodes", type=int, default=1, help="kwok nodes (default 1)")
    c_up.set_defaults(handler=cmd_cluster_up)
    c_down = cluster_sub.add_parser("down", help="stop a cluster and remove its files")
    c_down.add_argument("name")
    c_down.set_defaults(handler=cmd_cluster_down)
    cluster_sub.add_parser("list", help="list local clusters").set_defaults(
        handler=cmd_cluster_list
    )


@contextlib.contextmanager
def _interrupts_noted() -> Iterator[threading.Event]:
    """SIGINT raises KeyboardInterrupt and is also noted in the event yielded, for the case
    where the exception never reaches the code (see cmd_cluster_up). Installed even over an
    inherited SIG_IGN (a shell without job control starts background jobs so; Python then
    leaves Ctrl-C ignored), as Go's signal.Notify does: a Ctrl-C always stops the start."""
    interrupted = threading.Event()

    def note(signum: int, frame: FrameType | None) -> None:
        interrupted.set()
        signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_cluster_up(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        raise FlotillaError(f"--nodes: must be at least 1 ({args.nodes!r})")
    started = time.monotonic()
    _say(f"starting cluster {args.name!r} with {args.nodes} node(s) ...")
    with _interrupts_noted() as interrupted:
        try:
            cluster = clusters.up(args.name, nodes=args.nodes)
        except StartupError as err:
            raise FlotillaError(str(err).splitlines()[0]) from err
        if interrupted.is_set():
            # Ctrl-C came, but not as KeyboardInterrupt: the interpreter swallows one that
            # lands while a finalizer runs. Undo the start all the same.
            clusters.down(args.name)
            raise KeyboardInterrupt
    _say(f"ready in {time.monotonic() - started:.1f}s at {cluster.server}")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(f"stop it with: flotilla dev cluster down {args.name}")
    return 0


def cmd_cluster_down(args: argparse.Namespace) -> int:
    if not clusters.down(args.name):
        raise FlotillaError(f"cluster {args.name!r} not found (see `flotilla dev cluster list`)")
    _say(f"cluster {args.name!r} stopped and removed")
    return 0


def cmd_cluster_list(args: argparse.Namespace) -> int:
    rows = [("NAME", "SERVER", "NODES", "STATUS", "KUBECONFIG")]
    for state in clusters.list_clusters():
        alive = all(pid_alive(p) for p in state.pids.values())
        rows.append(
            (
                state.name,
                state.server,
                str(state.nodes),
                "Running" if alive else "Stopped",
                f"{state.directory}/kubeconfig",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    if stack.running():
        raise FlotillaError(
            "the demo stack is already running: `flotilla dev status`, or `make dev-down` first"
        )
    stack.down(lambda _m: None)
    state = stack.StackState()
    with _interrupts_noted() as interrupted:
        try:
            stack.start_temporal(state, _say)
            daemon = stack.start_git(state, _say)
            clusters = {
                name: stack.start_cluster(state, name, _say, nodes=1)
                for name in demo.CLUSTER_LABELS
            }
            stack.start_worker(state, _say)
            tables = demo.deploy_example(state.temporal_address, daemon, clusters, _say)
            if interrupted.is_set():
                raise KeyboardInterrupt  # one that never reached the code (_interrupts_noted)
        except (StartupError, OSError, FlotillaError) as err:
            stack.down(lambda _m: None)
            raise FlotillaError(f"dev up failed: {str(err).splitlines()[0]}") from err
        except KeyboardInterrupt:
            _say("interrupted: stopping what was started")
            stack.down(_say)
            raise
    print()
    print(tables)
    _print_summary(state)
    work = daemon.working_copy(demo.REPO_NAME)
    print()
    print("Push a change and watch it roll out:")
    print(f"  cd {work}")
    print("  sed -i 's/replicas: 1/replicas: 2/' raw-overlays/deployment.yaml")
    print("  git commit -am 'scale up' && git push origin HEAD:main")
    print("  flotilla get bundles            # or the Temporal UI, filtered by FlotillaGitRepo")
    return 0


def _print_summary(state: stack.StackState) -> None:
    print()
    print(f"  Temporal UI:      {state.ui_url}")
    print(f"  Temporal address: {state.temporal_address}")
    if (state.temporal_address, state.temporal_http_address) != (
        DEFAULT_ADDRESS,
        DEFAULT_HTTP_ADDRESS,
    ):
        print(
            f"  (ports 7233/7243 were taken: export TEMPORAL_ADDRESS={state.temporal_address} "
            f"TEMPORAL_HTTP_ADDRESS={state.temporal_http_address})"
        )
    for name in state.clusters:
        label = f"cluster {name}:"
        print(f"  {label:<17} export KUBECONFIG={clusters.cluster_dir(name)}/kubeconfig")
    print("  status:           flotilla dev status")
    print("  stop everything:  make dev-down   (or: flotilla dev down)")


def cmd_down(args: argparse.Namespace) -> int:
    stack.down(_say)
    _say("stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = stack.load()
    if state is None:
        print("the demo stack is not running (start it with `make dev`)")
        return 1
    for name, pid in state.pids.items():
        print(f"{name:12} pid {pid:<8} {'running' if pid_alive(pid) else 'STOPPED'}")
    _print_summary(state)
    return 0
