"""A thin wrapper over the real ``helm`` binary, with a private kubeconfig file per use."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from activities.deploy_models import ReleaseRef
from activities.kube import Kube, list_all_metadata, served_kinds
from activities.objectwatch_models import BUNDLE_LABEL
from flotilla.errors import (
    CHART_RENDER_FAILED,
    CLUSTER_UNREACHABLE,
    FORBIDDEN,
    HELM_FAILED,
    INVALID_MANIFEST,
    WAIT_TIMEOUT,
    FlotillaError,
    one_line,
)
from flotilla.helmhistory import ReleaseRevision, ReleaseStatus
from flotilla.impersonation import SERVICE_ACCOUNT_LABEL, rbac_denial

# The field manager Helm writes objects as (the name of its binary).
HELM_MANAGER = "helm"
# Helm stores custom release labels on its release Secrets, where flotilla reads them back.
DEPLOYMENT_ID_LABEL = "flotilla.dev/deployment-id"
HEARTBEAT_SECONDS = 5.0
# A call that does not wait for readiness still talks to the API server; this bounds it.
DEFAULT_CALL_SECONDS = 600.0
_CALL_MARGIN_SECONDS = 60.0
_MAX_MESSAGE = 300


class HelmError(FlotillaError):
    """A helm command failed; the message is helm's own error, on one line.

    ``type`` is classified from the message, as KubeError's are from the status:
    ClusterUnreachable (retryable), WaitTimeout, Forbidden, InvalidManifest, ChartRenderFailed
    or HelmFailed; ``retryable`` overrides the classification (a helm that never finished).
    """

    type = HELM_FAILED

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        kind = classify(message)
        super().__init__(
            message,
            type=kind,
            retryable=kind == CLUSTER_UNREACHABLE if retryable is None else retryable,
        )


# Helm errors that come from the cluster being away or overloaded, not from the release.
_TRANSIENT = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "tls handshake timeout",
    "connection reset",
    "too many requests",
    "the server is currently unable",
    "service unavailable",
    "internal error",
    "http2: client connection lost",
)
# Helm gave up waiting for readiness (timeoutSeconds): the objects were applied, not Ready.
# Helm 4's status watcher names each object first ("resource Deployment/ns/web not ready.
# status: InProgress, ..."), so its deadline may fall past the cut of a long message.
_WAIT_TIMEOUTS = ("timed out waiting", "context deadline exceeded", "not ready. status:")


# The API server refused an object's fields: its validation ("is invalid"), server-side
# apply's schema check (unknown field, wrong type) or decoding (wrong type, three-way merge).
_INVALID = (
    " is invalid",
    "error validating",
    "failed to create typed patch object",
    "cannot be handled as a",
    "strict decoding error",
)


# Helm errors that come from rendering the chart: the same chart and values fail every time.
_RENDER_FAILURES = ("parse error", "template:", "execution error at", "yaml:")


# client-go's own log lines in helm's stderr (klog: severity, date, time, thread, file:line),
# such as "W1204 20:12:33.123456 4242 reflector.go:484] ... watch ended with error" while a
# readiness wait's watch is re-opened under load: noise before helm's actual message.
_KLOG_LINE = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]")


def one_line_stderr(stderr: str) -> str:
    """Helm's stderr as one line: warnings dropped, ``Error:`` prefixes removed, cut short."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [
        line
        for line in lines
        if not line.startswith(("WARNING:", "walk.go:", "level=DEBUG"))
        and "[debug]" not in line
        and not _KLOG_LINE.match(line)
    ]
    text = "; ".join(line.removeprefix("Error: ") for line in errors or lines) or "no message"
    # An RBAC refusal (a bundle deploying as its ServiceAccount) buried in helm's sentence
    # would be cut off: the verb, resource and account are the whole story. Helm's uninstall
    # says why only in its debug lines.
    return rbac_denial("; ".join(lines)) or one_line(text, _MAX_MESSAGE)


def classify(message: str) -> str:
    """Name the cause of a helm failure from its message."""
    lowered = message.lower()
    if any(marker in lowered for marker in _TRANSIENT):
        return CLUSTER_UNREACHABLE
    if any(marker in lowered for marker in _WAIT_TIMEOUTS):
        return WAIT_TIMEOUT
    if " is forbidden" in lowered or "forbidden:" in lowered:
        return FORBIDDEN
    if any(marker in lowered for marker in _INVALID):
        return INVALID_MANIFEST
    if any(marker in lowered for marker in _RENDER_FAILURES):
        return CHART_RENDER_FAILED
    return HELM_FAILED


class UpgradeFlags(BaseModel):
    """The fleet.yaml ``helm`` switches that map to Helm 4's ``helm upgrade --install`` flags."""

    max_history: int = 2
    timeout_seconds: int = 0
    atomic: bool = False
    force: bool = False
    take_ownership: bool = False
    wait_for_jobs: bool = False
    skip_schema_validation: bool = False
    enable_dns: bool = True
    # How objects are written (docs/deploy-engine.md "Helm 4"). True: server-side apply,
    # taking fields back from whoever changed them since (git wins, as Helm 3's three-way
    # merge made it); False: Helm's three-way merge. The deploy decides as Fleet 0.15 does:
    # server-side for a new release, the previous revision's method for an upgrade (so a
    # release Helm 3 installed keeps the three-way merge), the three-way merge when it
    # replaces objects or installs over objects it did not make.
    server_side: bool = True

    def args(self) -> list[str]:
        # As in Fleet, helm waits for readiness (its status watcher) only when a timeout is
        # given; otherwise it waits for hooks only, Helm 4's default.
        args = ["--history-max", str(self.max_history)]
        if self.server_side and not self.force:
            args += ["--server-side=true", "--force-conflicts"]
        else:
            args.append("--server-side=false")
        if self.timeout_seconds > 0:
            args += ["--timeout", f"{self.timeout_seconds}s", "--wait=watcher"]
            if self.wait_for_jobs:
                args.append("--wait-for-jobs")
        for enabled, flag in (
            (self.atomic, "--rollback-on-failure"),
            (self.force, "--force-replace"),
            (self.take_ownership, "--take-ownership"),
            (self.skip_schema_validation, "--skip-schema-validation"),
            (self.enable_dns, "--enable-dns"),
        ):
            if enabled:
                args.append(flag)
        return args

    def call_seconds(self) -> float:
        """How long the helm process may run before it is killed."""
        waits = self.timeout_seconds > 0 or self.atomic
        helm_timeout = (self.timeout_seconds or 300) if waits else 0
        return max(DEFAULT_CALL_SECONDS, helm_timeout + _CALL_MARGIN_SECONDS)


class Helm:
    """Run helm against one cluster; use as a context manager so the kubeconfig file goes."""

    def __init__(
        self,
        kubeconfig: str,
        workdir: Path,
        *,
        heartbeat: Callable[[str], None] | None = None,
        redact: Callable[[str], str] | None = None,
        binary: str = "helm",
    ) -> None:
        self._kubeconfig_text = kubeconfig
        self.binary = binary
        self.workdir = workdir
        self.heartbeat = heartbeat
        self.redact = redact or (lambda text: text)
        self._kubeconfig: Path | None = None
        self._env: dict[str, str] = {}

    def __enter__(self) -> Helm:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix="kubeconfig-", dir=self.workdir)  # mode 0600
        with os.fdopen(fd, "w") as handle:
            handle.write(self._kubeconfig_text)
        self._kubeconfig = Path(name)
        home = self.workdir / "helm-home"
        env = {
            key: value
            for key, value in os.environ.items()
            if key != "KUBECONFIG" and not key.startswith("HELM_KUBE")
        }
        # A private helm home per use: no shared repository cache, no user settings.
        env.update(
            HELM_CACHE_HOME=str(home / "cache"),
            HELM_CONFIG_HOME=str(home / "config"),
            HELM_DATA_HOME=str(home / "data"),
            HELM_DRIVER="secret",
        )
        self._env = env
        return self

    def __exit__(self, *exc: object) -> None:
        if self._kubeconfig is not None:
            self._kubeconfig.unlink(missing_ok=True)
            self._kubeconfig = None

    @contextmanager
    def private_file(self, prefix: str, content: str) -> Iterator[Path]:
        """A 0600 file in the work directory, removed afterwards (values may hold secrets)."""
        fd, name = tempfile.mkstemp(prefix=prefix, dir=self.workdir)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(content)
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    # -- running ---------------------------------------------------------------------------

    def run(
        self,
        args: Sequence[str],
        *,
        what: str,
        seconds: float = DEFAULT_CALL_SECONDS,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run ``helm <args>`` and return stdout; heartbeat while it runs."""
        if self._kubeconfig is None:
            raise RuntimeError("Helm must be used as a context manager")
        argv = [self.binary, *args, "--kubeconfig", str(self._kubeconfig)]
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**self._env, **(env or {})}
        )
        deadline = time.monotonic() + seconds
        try:
            while True:
                # communicate() returns the moment helm closes its output, unlike a polled
                # wait(), so short calls pay no polling delay.
                try:
                    out, err = proc.communicate(timeout=HEARTBEAT_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if self.heartbeat is not None:
                        self.heartbeat(what)
                    if time.monotonic() > deadline:
                        raise HelmError(
                            f"{what}: helm did not finish within {int(seconds)}s",
                            retryable=True,
                        ) from None
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
        stdout = out.decode("utf-8", errors="replace")
        stderr = err.decode("utf-8", errors="replace")
        if proc.returncode != 0:
            # Redact before shortening: a secret cut at the length limit would no longer match.
            raise HelmError(f"{what}: {one_line_stderr(self.redact(stderr))}")
        return stdout

    # -- commands --------------------------------------------------------------------------

    def upgrade_install(
        self,
        release: str,
        chart: Path,
        *,
        namespace: str,
        values: Path,
        flags: UpgradeFlags,
        deployment_label: str,
        description: str,
        bundle_label: str = "",
        service_account: str = "",
        post_renderer: Path | None = None,
        post_renderer_args: Sequence[str] = (),
        create_namespace: bool = True,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """``helm upgrade --install``; returns helm's release record (without printing it).
        Without ``create_namespace`` the namespace must exist (a ServiceAccount deploying
        into its own namespace may not create namespaces). ``post_renderer`` is the directory
        of a post-renderer plugin (see ``activities.render.kustomize_post_renderer``).
        ``dry_run`` renders against the live cluster (``lookup`` sees it) and changes
        nothing; the record's manifest is what an upgrade would apply."""
        args = [
            "upgrade",
            release,
            str(chart),
            "--install",
            "--namespace",
            namespace,
            *(["--create-namespace"] if create_namespace else []),
            "--values",
            str(values),
            "--labels",
            f"{DEPLOYMENT_ID_LABEL}={deployment_label}"
            + (f",{BUNDLE_LABEL}={bundle_label}" if bundle_label else "")
            + (f",{SERVICE_ACCOUNT_LABEL}={service_account}" if service_account else ""),
            "--description",
            description,
            "--output",
            "json",
            # The API server validates every field (field validation is GA since Kubernetes
            # 1.27); helm's client-side pass only asks it whether it does, from the OpenAPI
            # documents it parses afresh in each process: ~40 % of a small upgrade's CPU
            # (docs/deploy-engine.md "Helm 4").
            "--disable-openapi-validation",
            *flags.args(),
            *(["--dry-run=server"] if dry_run else []),
        ]
        env: dict[str, str] = {}
        if post_renderer is not None:
            # Helm 4 runs post-renderers as plugins only: the plugin's directory is put where
            # this call's helm looks for plugins, and named.
            env["HELM_PLUGINS"] = str(post_renderer.parent)
            args += ["--post-renderer", post_renderer.name]
            for arg in post_renderer_args:
                args += ["--post-renderer-args", arg]
        out = self.run(args, what=f"helm upgrade {release}", seconds=flags.call_seconds(), env=env)
        record: dict[str, Any] = json.loads(out)
        return record

    def rollback(self, release: str, revision: int, *, namespace: str, max_history: int) -> None:
        self.run(
            [
                "rollback",
                release,
                str(revision),
                "--namespace",
                namespace,
                "--history-max",
                str(max_history),
                # As Fleet's recovery rollback: Helm's three-way merge puts back every field
                # the revision sets, whoever changed it since.
                "--server-side=false",
            ],
            what=f"helm rollback {release} to {revision}",
        )

    def uninstall(self, release: str, *, namespace: str) -> None:
        self.run(
            # --debug: helm uninstall names what it could not delete only in its debug log.
            ["uninstall", release, "--namespace", namespace, "--ignore-not-found", "--debug"],
            what=f"helm uninstall {release}",
        )


# ---------------------------------------------------------------------------------------------
# Helm's release records on the cluster, read without starting helm
# ---------------------------------------------------------------------------------------------

_HELM_LABELS = {"app.kubernetes.io/managed-by": "Helm"}
RELEASE_NAME_ANNOTATION = "meta.helm.sh/release-name"
RELEASE_NAMESPACE_ANNOTATION = "meta.helm.sh/release-namespace"
_GZIP_MAGIC = b"\x1f\x8b\x08"
# Helm's release records: one Secret per revision, named by release and revision.
_RECORD_PREFIX = "sh.helm.release.v1."


def read_history(kube: Kube, release: str, namespace: str) -> list[ReleaseRevision]:
    """The release's revisions from Helm's own records (metadata only, never the payload)."""
    items = kube.list_metadata(
        "v1", "Secret", namespace, label_selector=f"owner=helm,name={release}"
    )
    history = []
    for item in items:
        labels = item.get("metadata", {}).get("labels") or {}
        try:
            status = ReleaseStatus(labels.get("status", ""))
        except ValueError:
            status = ReleaseStatus.UNKNOWN
        history.append(
            ReleaseRevision(
                revision=int(labels.get("version", "0")),
                status=status,
                deployment_id=labels.get(DEPLOYMENT_ID_LABEL, ""),
            )
        )
    return sorted(history, key=lambda r: r.revision)


def read_release_record(kube: Kube, release: str, namespace: str, revision: int) -> dict[str, Any]:
    """Helm's record of one revision, read from its release Secret without starting helm:
    Helm stores the release as base64 of gzipped JSON in the Secret's ``release`` key."""
    name = f"{_RECORD_PREFIX}{release}.v{revision}"
    secret = kube.get("v1", "Secret", namespace, name)
    if secret is None:
        raise FlotillaError(f"Helm's record {namespace}/{name} disappeared")
    try:
        data = base64.b64decode(base64.b64decode((secret.get("data") or {}).get("release", "")))
        if data[:3] == _GZIP_MAGIC:
            data = gzip.decompress(data)
        record = json.loads(data)
    except (ValueError, OSError):
        raise FlotillaError(f"Helm's record {namespace}/{name} cannot be decoded") from None
    return record if isinstance(record, dict) else {}


def read_release_manifest(kube: Kube, release: str, namespace: str, revision: int) -> str:
    """The manifest Helm applied for one revision (what ``helm get manifest`` prints, hooks
    excluded), without starting helm."""
    manifest = read_release_record(kube, release, namespace, revision).get("manifest", "")
    return manifest if isinstance(manifest, str) else ""


def release_service_account(kube: Kube, release: str, namespace: str) -> str:
    """The ServiceAccount the release's newest revision was deployed as ("" for the
    cluster's own credentials, or no record)."""
    items = kube.list_metadata(
        "v1", "Secret", namespace, label_selector=f"owner=helm,name={release}"
    )
    labels = [item.get("metadata", {}).get("labels") or {} for item in items]
    newest = max(labels, key=lambda found: int(found.get("version") or 0), default={})
    return str(newest.get(SERVICE_ACCOUNT_LABEL, ""))


def drop_release_records(kube: Kube, release: str, namespace: str) -> int:
    """Delete Helm's records of the release (its Secrets), never its objects; how many went."""
    records = kube.list_metadata(
        "v1", "Secret", namespace, label_selector=f"owner=helm,name={release}"
    )
    for record in records:
        kube.delete("v1", "Secret", namespace, record["metadata"]["name"])
    return len(records)


def drop_release_record(kube: Kube, release: str, namespace: str, revision: int) -> None:
    """Delete Helm's record of one revision (a stuck pending one), never its objects."""
    kube.delete("v1", "Secret", namespace, f"{_RECORD_PREFIX}{release}.v{revision}")


def find_release_objects(kube: Kube, release: str, namespace: str) -> list[dict[str, Any]]:
    """The live objects Helm labelled and annotated as the release's, found without its record.

    Helm puts ``app.kubernetes.io/managed-by: Helm`` and the ``meta.helm.sh/release-name`` and
    ``release-namespace`` annotations on every object it applies; the label narrows each list,
    the annotations (which no selector can match) pick the release's. Metadata only.
    """
    selector = ",".join(f"{k}={v}" for k, v in _HELM_LABELS.items())
    found = []
    for info in served_kinds(kube):
        for item in list_all_metadata(kube, info, label_selector=selector):
            annotations = (item.get("metadata") or {}).get("annotations") or {}
            if (
                annotations.get(RELEASE_NAME_ANNOTATION) == release
                and annotations.get(RELEASE_NAMESPACE_ANNOTATION) == namespace
            ):
                found.append(item)
    return found


def roll_back(helm: Helm, release: str, *, namespace: str, revision: int, max_history: int) -> str:
    """Roll back to ``revision``; returns what happened instead when Helm could not.

    Helm refuses to roll back from a stuck record whose manifest lacks objects that are live
    (its process died before applying anything). Its failed attempt still marks the stuck
    revision superseded and itself failed, so the upgrade that follows starts from the
    deployed revision and adopts whatever the dead operation left.
    """
    try:
        helm.rollback(release, revision, namespace=namespace, max_history=max_history)
    except HelmError as err:
        if err.retryable:
            raise
        return f"helm could not roll back ({err.problem}); upgrading from the deployed revision"
    return ""


def applied_revision(history: list[ReleaseRevision]) -> ReleaseRevision | None:
    deployed = [r for r in history if r.status is ReleaseStatus.DEPLOYED]
    return max(deployed, key=lambda r: r.revision, default=None)


def with_helm_ownership(obj: dict[str, Any], release: ReleaseRef) -> dict[str, Any]:
    """The object as Helm would have applied it, so a later upgrade still owns it."""
    metadata = dict(obj.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **_HELM_LABELS}
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        RELEASE_NAME_ANNOTATION: release.name,
        RELEASE_NAMESPACE_ANNOTATION: release.namespace,
    }
    return {**obj, "metadata": metadata}
