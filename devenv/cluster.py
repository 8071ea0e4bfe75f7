"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, controller-manager and kwok.

Each cluster lives in its own directory (certificates, etcd data, logs, kubeconfig and a
``state.json`` with the process ids), on ports picked free at start. Nodes and pods are
simulated by kwok, so Deployments become Available without a container runtime.

Clusters started by tests are tied to the test process (they die with it, even on SIGKILL);
clusters started by ``flotilla dev cluster up`` outlive the command and are stopped by
``flotilla dev cluster down``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devenv import tools
from devenv.process import (
    ManagedProcess,
    StartupError,
    free_port,
    pid_alive,
    port_is_free,
    stop_pid,
)

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
# Starts of kwok a cluster tries before it gives up on its nodes becoming Ready.
KWOK_STARTS = 3
SERVICE_CIDR = "10.96.0.0/16"
KWOK_STAGES = Path(__file__).with_name("kwok-stages.yaml")


def state_root() -> Path:
    """Where ``flotilla dev`` keeps its clusters (``$FLOTILLA_DEV_HOME`` or ~/.local/state)."""
    env = os.environ.get("FLOTILLA_DEV_HOME")
    return Path(env) if env else Path.home() / ".local" / "state" / "flotilla" / "dev"


@dataclass
class ClusterState:
    """What ``down`` and ``list`` need to find a cluster that another process started."""

    name: str
    directory: str
    api_port: int
    etcd_port: int
    pids: dict[str, int] = field(default_factory=dict)
    nodes: int = 1
    started_at: float = 0.0

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StartupError(f"openssl {args[0]} failed: {proc.stderr.strip()[-300:]}")


def _make_pki(pki: Path) -> None:
    """A CA, an apiserver serving certificate for 127.0.0.1 and a service-account key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "365",
        "-subj",
        "/CN=flotilla-dev-ca",
        cwd=pki,
    )
    _openssl(
        "req",
        *ec,
        "-keyout",
        "apiserver.key",
        "-out",
        "apiserver.csr",
        "-subj",
        "/CN=kube-apiserver",
        cwd=pki,
    )
    (pki / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "apiserver.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "apiserver.crt",
        "-days",
        "365",
        "-extfile",
        "san.ext",
        cwd=pki,
    )
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=pki)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def _kubeconfig(name: str, server: str, ca_pem: bytes, token: str) -> str:
    ca = base64.b64encode(ca_pem).decode()
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": name, "cluster": {"server": server, "certificate-authority-data": ca}}
            ],
            "users": [{"name": f"{name}-admin", "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
            "current-context": name,
        },
        indent=2,
    )


# Every request once, at completion (a watch when it ends), without bodies.
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata"}],
}


class LocalCluster:
    """One local cluster. ``start()`` returns when the API is ready and every node is Ready."""

    def __init__(
        self,
        name: str,
        directory: Path,
        *,
        nodes: int = 1,
        api_port: int | None = None,
        tied_to_parent: bool = True,
        workloads: bool = True,
        audit: bool = False,
    ) -> None:
        """``workloads=False``: etcd and kube-apiserver only, no nodes, pods or controllers
        (a management cluster that only stores objects, such as flotilla's Secrets).
        ``audit``: the API server logs every request once, when it completes (metadata only,
        with its user agent), to ``audit_log`` (for counting who asks what)."""
        self.name = name
        self.dir = directory
        self.nodes = nodes if workloads else 0
        self.workloads = workloads
        self.audit = audit
        self.requested_api_port = api_port
        self.tied_to_parent = tied_to_parent
        self.token = base64.b32encode(os.urandom(20)).decode().lower()
        self.processes: dict[str, ManagedProcess] = {}
        self.state: ClusterState | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.dir / "audit.log"

    @property
    def server(self) -> str:
        assert self.state is not None, "cluster not started"
        return self.state.server

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        started = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        log.info(
            "cluster %s ready in %.1fs at %s", self.name, time.monotonic() - started, self.server
        )
        return self

    def _start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        pki = self.dir / "pki"
        _make_pki(pki)
        (self.dir / "tokens.csv").write_text(f'{self.token},flotilla-admin,0,"system:masters"\n')
        for attempt in range(3):
            api_port = self._pick_api_port(attempt)
            etcd_port, peer_port = free_port(), free_port()
            self.state = ClusterState(
                name=self.name,
                directory=str(self.dir),
                api_port=api_port,
                etcd_port=etcd_port,
                nodes=self.nodes,
                started_at=time.time(),
            )
            try:
                self._start_etcd(etcd_port, peer_port)
                self._start_apiserver()
                break
            except StartupError as err:
                # Another process may have taken a port between our pick and the bind.
                if "address already in use" not in str(err) or attempt == 2:
                    raise
                log.warning("cluster %s: port clash, retrying with other ports", self.name)
                self._stop_processes()
                shutil.rmtree(self.dir / "etcd", ignore_errors=True)
        self.kubeconfig.write_text(
            _kubeconfig(self.name, self.server, (pki / "ca.crt").read_bytes(), self.token)
        )
        if not self.workloads:
            self._save_state()
            return
        self._start_controller_manager()
        self._start_scheduler()
        self._start_kwok()
        self._save_state()
        self._create_nodes()

    def _pick_api_port(self, attempt: int) -> int:
        wanted = self.requested_api_port
        if attempt == 0 and wanted and port_is_free(wanted):
            return wanted
        if attempt == 0 and wanted:
            log.warning("cluster %s: port %s is taken, choosing a free one", self.name, wanted)
        return free_port()

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess(
            name=f"{self.name}/{name}",
            argv=argv,
            log_path=self.dir / "logs" / f"{name}.log",
            tied_to_parent=self.tied_to_parent,
        ).start()
        self.processes[name] = proc
        return proc

    def _start_etcd(self, port: int, peer_port: int) -> None:
        client = f"http://127.0.0.1:{port}"
        peer = f"http://127.0.0.1:{peer_port}"
        proc = self._spawn(
            "etcd",
            [
                str(tools.locate("etcd")),
                "--name=default",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync",
                "--log-level=error",
                "--quota-backend-bytes=2147483648",
            ],
        )
        proc.wait_until(
            lambda: _http_ok(f"{client}/health"), timeout=START_TIMEOUT, what="etcd healthy"
        )

    def _start_apiserver(self) -> None:
        assert self.state is not None
        pki = self.dir / "pki"
        proc = self._spawn(
            "kube-apiserver",
            [
                str(tools.locate("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{self.state.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.state.api_port}",
                f"--cert-dir={self.dir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={self.dir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                # The kubernetes Service cannot point at a loopback address; nothing in a kwok
                # cluster needs it to.
                "--endpoint-reconciler-type=none",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                # New nodes would be tainted not-ready until the node lifecycle controller,
                # which is off (kwok is no kubelet), cleared it.
                "--disable-admission-plugins=TaintNodesByCondition",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--storage-media-type=application/json",
                "--v=0",
                *self._audit_flags(),
            ],
        )
        proc.wait_until(self._api_ready, timeout=START_TIMEOUT, what="kube-apiserver /readyz")

    def _audit_flags(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.dir / "audit-policy.yaml"
        policy.write_text(json.dumps(_AUDIT_POLICY))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
        ]

    def _control_plane_flags(self) -> list[str]:
        """Flags the controller-manager and scheduler share: the admin kubeconfig for
        everything, no leader election (one replica), a loopback serving port of their own."""
        kubeconfig = str(self.kubeconfig)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--v=0",
        ]

    def _start_controller_manager(self) -> None:
        pki = self.dir / "pki"
        self._spawn(
            "kube-controller-manager",
            [
                str(tools.locate("kube-controller-manager")),
                *self._control_plane_flags(),
                f"--cert-dir={self.dir / 'kcm-certs'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
                # Nothing here allocates pod CIDRs or runs cloud/volume plugins; kwok stands in
                # for kubelets, so the node lifecycle controller must not evict its pods.
                "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,"
                "-persistentvolume-binder,-attachdetach,-persistentvolume-expander,-ttl",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
            ],
        )

    def _start_scheduler(self) -> None:
        self._spawn(
            "kube-scheduler", [str(tools.locate("kube-scheduler")), *self._control_plane_flags()]
        )

    def _start_kwok(self) -> None:
        self._spawn(
            "kwok",
            [
                str(tools.locate("kwok")),
                # kwok reads --config in an early pass that stops at the first flag it does
                # not know yet, so it must come first.
                f"--config={KWOK_STAGES}",
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.1.0.1",
                f"--server-address=127.0.0.1:{free_port()}",
            ],
        )

    def _create_nodes(self) -> None:
        for index in range(self.nodes):
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": f"{self.name}-node-{index}",
                    "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": f"{self.name}-node-{index}",
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                    },
                },
                "spec": {},
            }
            self.request("POST", "/api/v1/nodes", node)

        def nodes_ready() -> bool:
            items = self.request("GET", "/api/v1/nodes").get("items", [])
            ready = [
                n
                for n in items
                if any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in n.get("status", {}).get("conditions", [])
                )
            ]
            return len(ready) >= self.nodes

        for attempt in range(1, KWOK_STARTS + 1):
            kwok = self.processes["kwok"]
            try:
                kwok.wait_until(nodes_ready, timeout=START_TIMEOUT, what="nodes Ready")
                return
            except StartupError as err:
                if kwok.alive() or attempt == KWOK_STARTS:
                    raise
                # kwok only simulates the nodes and pods the API server holds: one that
                # crashed while starting (kwok 0.8 rarely does, on a loaded machine) is
                # replaced, and the new one takes the nodes over.
                log.warning("cluster %s: %s; starting kwok again", self.name, _first_lines(err))
                self.processes.pop("kwok").stop()
                self._start_kwok()
                self._save_state()

    # -- talking to it ---------------------------------------------------------------------

    def kubeconfig_for(self, token: str, path: Path) -> Path:
        """Write a kubeconfig for this cluster that authenticates with ``token`` (a service
        account's, say, instead of the admin's)."""
        ca = (self.dir / "pki" / "ca.crt").read_bytes()
        path.write_text(_kubeconfig(self.name, self.server, ca, token))
        return path

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.dir / "pki" / "ca.crt"))

    def raw_request(self, method: str, path: str, body: object | None = None) -> bytes:
        """An authenticated call to this cluster's API; returns the response body."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 - loopback https only
            f"{self.server}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, context=self._ssl_context(), timeout=10) as resp:  # noqa: S310
            body_bytes: bytes = resp.read()
            return body_bytes

    def request(self, method: str, path: str, body: object | None = None) -> dict[str, Any]:
        """A JSON call to this cluster's API (the substrate's own checks, not flotilla's)."""
        result: dict[str, Any] = json.loads(self.raw_request(method, path, body) or b"{}")
        return result

    def _api_ready(self) -> bool:
        try:
            return self.raw_request("GET", "/readyz") == b"ok"
        except (OSError, urllib.error.URLError):
            return False

    # -- state and teardown ----------------------------------------------------------------

    def _save_state(self) -> None:
        assert self.state is not None
        self.state.pids = {n: p.pid for n, p in self.processes.items() if p.pid is not None}
        (self.dir / "state.json").write_text(json.dumps(asdict(self.state), indent=2))

    def _stop_processes(self) -> None:
        # Reverse start order: kwok and the controller-manager first, etcd last.
        for name in reversed(list(self.processes)):
            self.processes.pop(name).stop()

    def stop(self, *, remove: bool = True) -> None:
        self._stop_processes()
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def memory_bytes(self) -> int:
        """Resident memory of the cluster's processes (for the benchmark and `dev cluster list`)."""
        return sum(_rss(p.pid) for p in self.processes.values() if p.pid)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _first_lines(err: BaseException, count: int = 3) -> str:
    return " | ".join(str(err).splitlines()[:count])


def _rss(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback http
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


# -- the `flotilla dev cluster` registry of detached clusters -------------------------------


def cluster_dir(name: str) -> Path:
    return state_root() / "clusters" / name


def up(name: str, *, nodes: int = 1) -> LocalCluster:
    """Start a detached cluster that outlives this process; ``down(name)`` stops it."""
    directory = cluster_dir(name)
    if (directory / "state.json").exists():
        existing = load_state(name)
        if existing and all(pid_alive(p) for p in existing.pids.values()):
            raise StartupError(f"cluster {name!r} is already running at {existing.server}")
        down(name)
    return LocalCluster(name, directory, nodes=nodes, tied_to_parent=False).start()


def load_state(name: str) -> ClusterState | None:
    try:
        raw = json.loads((cluster_dir(name) / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return ClusterState(**raw)


def down(name: str) -> bool:
    """Stop a detached cluster and remove its directory; False when there was none."""
    directory = cluster_dir(name)
    if not directory.exists():
        return False
    state = load_state(name)
    if state:
        for pid in reversed(list(state.pids.values())):
            stop_pid(pid)
    shutil.rmtree(directory, ignore_errors=True)
    return True


def list_clusters() -> list[ClusterState]:
    root = state_root() / "clusters"
    if not root.is_dir():
        return []
    found = [load_state(d.name) for d in sorted(root.iterdir())]
    return [s for s in found if s is not None]
