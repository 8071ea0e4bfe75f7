"""Deploy engine activities: a bundle becomes a Helm release on a cluster, then is watched.

Every deployment is a Helm release (raw YAML and Kustomize output are wrapped in a generated
chart). The release's own history decides how to get to the new version, so a stuck or pruned
history is recovered here, with the reason returned for the status. Readiness and drift are
judged by the pure core (``flotilla.readiness``, ``flotilla.drift``) on live objects.
"""

from __future__ import annotations

import base64
import posixpath
import shutil
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.content import ContentStore
from activities.deploy_models import (
    CHECK_DEPLOYMENT,
    DEPLOY_BUNDLE,
    REMOVE_DEPLOYMENT,
    WAIT_READY,
    Applied,
    DeploymentStatus,
    DeployRequest,
    DeployResult,
    ReleaseRef,
    RemoveRequest,
    RemoveResult,
    StatusRequest,
    WaitReadyRequest,
)
from activities.downstream import copy_to_cluster, remove_from_cluster
from activities.failures import to_application_error
from activities.helm import (
    Helm,
    UpgradeFlags,
    applied_revision,
    drop_release_record,
    drop_release_records,
    find_release_objects,
    read_history,
    read_release_manifest,
    read_release_record,
    release_service_account,
    roll_back,
)
from activities.kube import ForbiddenError, Kube, KubeClients, KubeError, parse_kubeconfig
from activities.liveness import heartbeating
from activities.releasewatch import WATCH_SECONDS, ReadinessWait, ReleaseWatch
from activities.render import (
    compute_values,
    kustomize_post_renderer,
    materialize_chart,
    release_name_for,
    release_namespace,
    render_bundle,
    write_resources,
)
from activities.rendersecrets import read_render_secrets
from activities.secrets import (
    KUBECONFIG_KEY,
    SecretStore,
    get_key,
    kubeconfig_secret_name,
)
from activities.sops import decrypt_bundle
from activities.tools import PATH_TOOLS, ToolPaths
from flotilla.bundles import Bundle, BundleStyle, detect_style
from flotilla.chart import wrap_manifests
from flotilla.credentials import RenderSecretRefs
from flotilla.deployment import (
    DEFAULT_VALUES_KEY,
    DeploymentOptions,
    Redactor,
    deployment_label,
    kubeconfig_secrets,
    max_history,
    namespace_removal_refusal,
    secret_strings,
)
from flotilla.downstream import check_copy_labels
from flotilla.drift import left_behind
from flotilla.errors import (
    CONTENT_MISSING,
    DEPLOY_FAILED,
    INVALID_BUNDLE,
    NOT_FOUND,
    SECRET_NOT_FOUND,
    WINDOW_CLOSED,
    FlotillaError,
    RenderError,
    SpecError,
)
from flotilla.helmhistory import (
    HistoryAction,
    ReleaseRevision,
    decide_release_action,
)
from flotilla.impersonation import impersonating, rbac_denial, service_account_user
from flotilla.kubenames import is_label_value
from flotilla.manifests import parse_manifests
from flotilla.models import BundleDeploymentOptions
from flotilla.restrictions import namespace_refusal
from flotilla.values import merge_values

# ---------------------------------------------------------------------------------------------
# Errors at the activity boundary
# ---------------------------------------------------------------------------------------------


# The C emitter when PyYAML has it: an impersonating kubeconfig is written on every call.
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# The deploy activities' names for the generic failures: an invalid bundle, and anything that
# fails the same way until someone fixes it (missing content, kubeconfig or valuesFrom source).
# The error's own type stays for the causes a person acts on differently (cluster, helm, store).
_DEPLOY_TYPES = {
    SpecError.type: INVALID_BUNDLE,
    RenderError.type: INVALID_BUNDLE,
    FlotillaError.type: DEPLOY_FAILED,
    CONTENT_MISSING: DEPLOY_FAILED,
    SECRET_NOT_FOUND: DEPLOY_FAILED,
}


def _application_error(err: FlotillaError, redact: Redactor) -> ApplicationError:
    """One line for a person, redacted; retryable only when the cause is transient."""
    return to_application_error(err, redact=redact, rename=_DEPLOY_TYPES)


def _heartbeat(what: str) -> None:
    activity.heartbeat(what)
    if activity.is_cancelled():
        raise CancelledError(f"cancelled during {what}")


def _check_window(request: DeployRequest) -> None:
    """A deploy never starts after its deployment window closed (it may have waited on its
    queue, or for a worker that was down): it applies nothing and waits for the next one."""
    if request.not_after is not None and datetime.now(UTC) >= request.not_after:
        raise FlotillaError(
            f"deployment window closed at {request.not_after:%Y-%m-%d %H:%M:%S} UTC before the "
            "deploy started; nothing was applied",
            type=WINDOW_CLOSED,
            retryable=False,
        )


# ---------------------------------------------------------------------------------------------
# History and objects on the cluster
# ---------------------------------------------------------------------------------------------


def _read_values_from(
    kube: Kube, options: BundleDeploymentOptions, namespace: str, redact: Redactor
) -> dict[str, Any]:
    """valuesFrom sources read on the cluster, merged in order (ConfigMap, then Secret)."""
    merged: dict[str, Any] = {}
    for entry in (options.helm.values_from if options.helm else None) or []:
        for ref, kind in (
            (entry.config_map_key_ref, "ConfigMap"),
            (entry.secret_key_ref, "Secret"),
        ):
            if ref is None:
                continue
            ns = ref.namespace or namespace
            key = ref.key or DEFAULT_VALUES_KEY
            where = f"helm.valuesFrom: {kind} {ns}/{ref.name} key {key!r}"
            obj = kube.get("v1", kind, ns, ref.name)
            data = (obj or {}).get("data") or {}
            if key not in data:
                raise FlotillaError("not found on the cluster", field=where)
            text = data[key]
            if kind == "Secret":
                text = base64.b64decode(text).decode("utf-8", errors="replace")
                redact.add([text])
            try:
                values = yaml.safe_load(text) or {}
            except yaml.YAMLError:
                raise FlotillaError("is not valid YAML", field=where) from None
            if not isinstance(values, dict):
                raise FlotillaError("is not a YAML mapping", field=where)
            if kind == "Secret":
                redact.add(secret_strings(values))
            merged = merge_values(merged, values)
    return merged


def _applied_server_side(
    kube: Kube, release: str, namespace: str, history: list[ReleaseRevision]
) -> bool:
    """Whether the release's newest revision was applied server-side (Helm 4 records it; a
    revision Helm 3 wrote says nothing and was a three-way merge)."""
    if not history:
        return True
    latest = max(history, key=lambda r: r.revision)
    try:
        record = read_release_record(kube, release, namespace, latest.revision)
    except FlotillaError:
        return True
    return record.get("apply_method") == "ssa"


def _latest_manifest(
    kube: Kube, release: str, namespace: str, history: list[ReleaseRevision]
) -> list[dict[str, Any]]:
    """The objects of the newest revision Helm recorded (what a dead operation may have left
    live), or none when it cannot be read."""
    if not history:
        return []
    latest = max(history, key=lambda r: r.revision)
    try:
        manifest = read_release_manifest(kube, release, namespace, latest.revision)
        return parse_manifests(manifest, file=f"release {release} revision {latest.revision}")
    except FlotillaError:
        return []


def _delete_left_behind(
    kube: Kube, stale: list[dict[str, Any]], record: dict[str, Any], namespace: str
) -> str:
    """Delete what the lost record had and the new release does not, as an upgrade would."""
    manifest = record.get("manifest")
    applied = parse_manifests(manifest, file="release") if isinstance(manifest, str) else []
    gone = [
        key
        for key in left_behind(stale, applied, namespace)
        if kube.delete(key.api_version, key.kind, key.namespace, key.name)
    ]
    if not gone:
        return ""
    return f"deleted {len(gone)} object(s) the new version no longer has"


def _remove_copies(kube: Kube, namespace: str, workspace: str, bundle: str) -> None:
    """Delete the bundle's downstreamResources copies in ``namespace`` (there are none when
    it lists none, or when its names cannot label copies). The release is gone already, so a
    failure here is said and left: the copies are labelled for whoever cleans up."""
    if check_copy_labels(workspace, bundle):
        return
    try:
        remove_from_cluster(kube, namespace, workspace=workspace, bundle=bundle)
    except FlotillaError as err:
        activity.logger.warning(
            "bundle %s: downstreamResources copies in namespace %s not removed: %s",
            bundle,
            namespace,
            err,
        )


@dataclass
class _Chart:
    path: Path
    values: dict[str, Any]
    post_renderer: Path | None = None
    post_renderer_args: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Activities
# ---------------------------------------------------------------------------------------------


def _acting_user(options: BundleDeploymentOptions) -> str:
    """Whom a bundle deploys and reads status as: its ServiceAccount in its namespace, or ""
    for the cluster's own credentials."""
    if not options.service_account:
        return ""
    return service_account_user(release_namespace(options), options.service_account)


class EngineWait:
    """A readiness wait opened by ``DeployActivities.open_wait``: a look at a time, a watch
    between looks where the cluster allows one; ``close`` lets go of the cluster client.
    With ``map_errors`` (the push queues) its failures come out in one line, redacted, as
    the deploy activities raise them."""

    def __init__(
        self,
        wait: ReadinessWait,
        stack: ExitStack,
        redact: Redactor,
        *,
        map_errors: bool = True,
    ) -> None:
        self.wait = wait
        self._stack = stack
        self._redact = redact
        self._map_errors = map_errors
        self._watching = True

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except FlotillaError as err:
            if not self._map_errors:
                raise
            raise _application_error(err, self._redact) from None

    def step(self) -> DeploymentStatus | None:
        with self._errors():
            return self.wait.step()

    def watch(self, seconds: float) -> bool:
        """Block until the first object not Ready at the last look is (or ``seconds``);
        False when there is nothing to watch or the cluster will not let us (then poll)."""
        if not self._watching:
            return False
        watch = self.wait.watch
        with self._errors():
            try:
                return watch.watch_waiting(int(min(seconds, self.wait.remaining)))
            except KubeError as err:
                self._watching = False
                request = watch.request
                activity.logger.info(
                    "bundle %s on cluster %s/%s: polling readiness, cannot watch: %s",
                    request.bundle_name,
                    request.cluster_namespace,
                    request.cluster_name,
                    self._redact(str(err)),
                )
                return False

    def next_poll(self) -> float:
        return self.wait.next_poll()

    @property
    def not_ready(self) -> list[str]:
        return self.wait.not_ready

    def close(self) -> None:
        self._stack.close()


class DeployActivities:
    """Deploy, check, watch and remove bundle deployments on clusters."""

    def __init__(
        self,
        secrets: SecretStore,
        content: ContentStore,
        workdir: Path,
        *,
        tools: ToolPaths = PATH_TOOLS,
    ) -> None:
        self.secrets = secrets
        self.tools = tools
        # Clusters whose kubeconfig Secret is not ``<cluster>-kubeconfig`` (a Fleet Cluster's
        # ``spec.kubeConfigSecret``), by (namespace, cluster); the worker keeps it current.
        self.kubeconfig_secrets: dict[tuple[str, str], str] = {}
        self.content = content
        self.workdir = workdir
        self.clients = KubeClients()

    # -- shared plumbing -------------------------------------------------------------------

    def kubeconfig_secret(self, cluster_namespace: str, cluster: str) -> str:
        """The name of the Secret that holds the cluster's kubeconfig."""
        known = self.kubeconfig_secrets.get((cluster_namespace, cluster))
        return known or kubeconfig_secret_name(cluster)

    def _kubeconfig(
        self, cluster_namespace: str, cluster: str, redact: Redactor, *, act_as: str = ""
    ) -> tuple[str, dict[str, Any]]:
        """The cluster's kubeconfig, as text (for helm) and parsed (for the API client); with
        ``act_as``, one that impersonates that user (a bundle's ServiceAccount)."""
        secret = self.kubeconfig_secret(cluster_namespace, cluster)
        text = get_key(self.secrets, cluster_namespace, secret, KUBECONFIG_KEY)
        redact.add([text])
        parsed = parse_kubeconfig(text)
        redact.add(kubeconfig_secrets(parsed))
        if act_as:
            parsed = impersonating(parsed, act_as)
            text = yaml.dump(parsed, Dumper=_YAML_DUMPER)
            redact.add([text])
        return text, parsed

    def _preflight(
        self, request: DeployRequest, payload: DeploymentOptions, redact: Redactor
    ) -> None:
        """Fail in one line, before anything is applied, when the bundle's ServiceAccount does
        not exist or its target namespace does not match the workspace's
        allowedTargetNamespaceSelector: both asked with the cluster's own credentials, as
        Fleet's agent asks with its own."""
        options = payload.options
        selector = payload.namespace_selector
        if not options.service_account and selector is None:
            return
        namespace = release_namespace(options)
        where = f"cluster {request.cluster_namespace}/{request.cluster_name}"
        text, parsed = self._kubeconfig(request.cluster_namespace, request.cluster_name, redact)
        with self._kube(text, parsed) as kube:
            if selector is not None:
                found = kube.get("v1", "Namespace", "", namespace)
                labels = ((found or {}).get("metadata") or {}).get("labels") or {}
                refusal = namespace_refusal(namespace, labels if found else None, selector)
                if refusal:
                    raise FlotillaError(f"{where}: {refusal}", type=NOT_FOUND)
            account = options.service_account
            if account and kube.get("v1", "ServiceAccount", namespace, account) is None:
                raise FlotillaError(
                    f"serviceAccount: ServiceAccount {namespace}/{account} does not exist on "
                    f"{where}; create it with the RBAC the bundle needs",
                    type=NOT_FOUND,
                )
            if account and not is_label_value(account):
                raise SpecError(
                    f"{account!r} is longer than 63 characters: flotilla records it on the "
                    "Helm release (a label) so the release is removed as the same account",
                    field="serviceAccount",
                )

    def cluster_kubeconfig(
        self, cluster_namespace: str, cluster: str, redact: Redactor
    ) -> dict[str, Any]:
        """The cluster's parsed kubeconfig (for a client of its own, such as a watcher's)."""
        return self._kubeconfig(cluster_namespace, cluster, redact)[1]

    def probe(self, cluster_namespace: str, cluster: str) -> str:
        """Ask the cluster's API for its version with its kubeconfig: "" when it answers,
        else why not, in one line (for last-seen times; not an activity)."""
        redact = Redactor()
        try:
            text, parsed = self._kubeconfig(cluster_namespace, cluster, redact)
            with self._kube(text, parsed) as kube:
                kube.request("GET", "/version", what="the API server version")
        except FlotillaError as err:
            return redact(str(err))
        return ""

    def _kube(self, kubeconfig: str, parsed: dict[str, Any]) -> AbstractContextManager[Kube]:
        """The cluster's shared API client (kept open: see ``KubeClients``)."""
        return nullcontext(self.clients.get(kubeconfig, parsed))

    def helm(self, kubeconfig: str, scratch: Path, redact: Redactor) -> Helm:
        """The pinned helm against one cluster, heartbeating and redacting (a context manager)."""
        return Helm(
            kubeconfig,
            scratch,
            heartbeat=_heartbeat,
            redact=redact,
            binary=self.tools.require("helm"),
        )

    def _options(self, digest: str) -> DeploymentOptions:
        try:
            return DeploymentOptions.model_validate_json(self.content.get(digest))
        except ValidationError as err:
            # The payload may hold values: name the problem's size, never the input.
            raise FlotillaError(
                f"deployment options {digest[:12]} are not a DeploymentOptions payload "
                f"({err.error_count()} errors)"
            ) from None

    def _bundle(self, digest: str) -> Bundle:
        try:
            return self.content.get_bundle(digest)
        except ValidationError as err:
            raise FlotillaError(
                f"content {digest[:12]} is not a stored bundle ({err.error_count()} errors)"
            ) from None

    @contextmanager
    def _scratch(self, release: str) -> Iterator[Path]:
        """A private directory for one call's files (kubeconfig, values, charts), then gone."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / f"{release}-{uuid.uuid4().hex[:12]}"
        path.mkdir(mode=0o700)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # -- deploy ----------------------------------------------------------------------------

    @activity.defn(name=DEPLOY_BUNDLE)
    def deploy_bundle(self, request: DeployRequest) -> DeployResult:
        """Install or upgrade the bundle's release to ``deployment_id``; a no-op when it runs."""
        redact = Redactor()
        with self._deploy_errors(request, redact), heartbeating():
            return self._deploy_and_watch(request, redact)

    def apply_bundle(self, request: DeployRequest) -> Applied:
        """``deploy_bundle`` without its readiness wait: the result (no status yet) and the
        manifest to wait on (``open_wait``). The push queues wait apart from the apply, so a
        wait holds none of their engine threads (``activities.pushqueue``)."""
        redact = Redactor()
        with self._deploy_errors(request, redact):
            result, manifest = self._deploy(request, redact)
        return Applied(result=result, manifest=None if request.check_drift else manifest)

    @contextmanager
    def _deploy_errors(self, request: DeployRequest, redact: Redactor) -> Iterator[None]:
        """A closed window refuses the deploy; a failure is logged and raised in one line."""
        try:
            _check_window(request)
            yield
        except FlotillaError as err:
            activity.logger.warning(
                "deploy of bundle %s (gitrepo %s) to cluster %s/%s failed: %s",
                request.bundle_name,
                request.gitrepo,
                request.cluster_namespace,
                request.cluster_name,
                redact(str(err)),
            )
            raise _application_error(err, redact) from None

    def _deploy_and_watch(self, request: DeployRequest, redact: Redactor) -> DeployResult:
        result, manifest = self._deploy(request, redact)
        if request.wait_ready_seconds > 0:
            # A failure while watching retries the whole activity, which is safe: the
            # release is then already deployed, and the retry goes straight to watching.
            result.status = self._wait_ready(
                StatusRequest.model_validate({**request.model_dump(), "release": result.release}),
                request.wait_ready_seconds,
                redact,
                applied_manifest=None if request.check_drift else manifest,
            )
        return result

    def _deploy(self, request: DeployRequest, redact: Redactor) -> tuple[DeployResult, str | None]:
        """The deploy, and the manifest Helm applied (None when nothing was applied)."""
        bundle = self._bundle(request.bundle_digest)
        payload = self._options(request.options_digest)
        options = payload.options
        release = release_name_for(bundle, options)
        namespace = release_namespace(options)
        label = deployment_label(request.deployment_id)
        act_as = _acting_user(options)
        self._preflight(request, payload, redact)
        kubeconfig, parsed = self._kubeconfig(
            request.cluster_namespace, request.cluster_name, redact, act_as=act_as
        )
        log_args = (request.bundle_name, request.cluster_namespace, request.cluster_name)
        with self._kube(kubeconfig, parsed) as kube:
            history = read_history(kube, release, namespace)
            previous = request.previous_release
            # A new releaseName or namespace makes a new release; the old one goes after it.
            moved = previous is not None and (previous.name, previous.namespace) != (
                release,
                namespace,
            )
            moved_from = previous if moved else None
            recorded = previous.revision if previous and not moved_from else None
            decision = decide_release_action(history, recorded or None, label)
            if decision.action is HistoryAction.ALREADY_DEPLOYED:
                applied = applied_revision(history)
                revision = applied.revision if applied else 0
                activity.logger.info("bundle %s on cluster %s/%s: %s", *log_args, decision.reason)
                unchanged = DeployResult(
                    release=ReleaseRef(name=release, namespace=namespace, revision=revision),
                    deployment_id=request.deployment_id,
                    changed=False,
                    action=decision.action,
                    reason=decision.reason,
                )
                return unchanged, None
            if payload.downstream is not None:
                self._copy_downstream(
                    kube,
                    payload,
                    namespace,
                    bundle=request.bundle_name,
                    redact=redact,
                    may_create_namespace=not act_as or bool(payload.allow_namespace_creation),
                )
            values_from = _read_values_from(kube, options, namespace, redact)
            fallback = ""
            stale: list[dict[str, Any]] = []
            with self._scratch(release) as scratch:
                chart = self._prepare_chart(
                    bundle,
                    payload,
                    request=request,
                    release=release,
                    values_from=values_from,
                    scratch=scratch,
                    redact=redact,
                )
                with self.helm(kubeconfig, scratch, redact) as helm:
                    history_size = max_history(options)
                    if decision.action is HistoryAction.ROLLBACK_THEN_UPGRADE:
                        assert decision.rollback_revision is not None
                        activity.logger.warning(
                            "bundle %s on cluster %s/%s: %s", *log_args, decision.reason
                        )
                        fallback = roll_back(
                            helm,
                            release,
                            namespace=namespace,
                            revision=decision.rollback_revision,
                            max_history=history_size,
                        )
                    elif decision.action is HistoryAction.CONTINUE_PENDING:
                        # Helm numbers the next revision after the newest record: without the
                        # stuck one, the upgrade takes its number. Objects the stopped helm
                        # already applied carry the release's ownership, so helm adopts them.
                        assert decision.pending_revision is not None
                        activity.logger.warning(
                            "bundle %s on cluster %s/%s: %s", *log_args, decision.reason
                        )
                        # What it applied beyond the new version goes, as after an adoption.
                        stale = _latest_manifest(kube, release, namespace, history)
                        drop_release_record(kube, release, namespace, decision.pending_revision)
                    elif decision.action is HistoryAction.ADOPT:
                        activity.logger.warning(
                            "bundle %s on cluster %s/%s: %s", *log_args, decision.reason
                        )
                        stale = _latest_manifest(kube, release, namespace, history)
                        drop_release_records(kube, release, namespace)
                    with helm.private_file("values-", yaml.safe_dump(chart.values)) as values:
                        record = helm.upgrade_install(
                            release,
                            chart.path,
                            namespace=namespace,
                            values=values,
                            flags=self._flags(
                                options,
                                action=decision.action,
                                server_side_before=_applied_server_side(
                                    kube, release, namespace, history
                                ),
                            ),
                            deployment_label=label,
                            description=f"flotilla deployment {label}",
                            # Names the bundle to the object watcher (activities/objectwatch.py).
                            bundle_label=(
                                request.bundle_name if is_label_value(request.bundle_name) else ""
                            ),
                            service_account=options.service_account or "",
                            post_renderer=chart.post_renderer,
                            post_renderer_args=chart.post_renderer_args,
                            # An account acting for a team creates no namespace unless a
                            # Policy allows it (allowNamespaceCreation, as in Fleet).
                            create_namespace=not act_as or bool(payload.allow_namespace_creation),
                        )
                    if moved_from is not None:
                        helm.uninstall(moved_from.name, namespace=moved_from.namespace)
                        _remove_copies(
                            kube,
                            moved_from.namespace,
                            request.cluster_namespace,
                            request.bundle_name,
                        )
            if stale:
                fallback = _delete_left_behind(kube, stale, record, namespace)
            self._label_namespace(kube, options, namespace)
        revision = int(record.get("version", 0))
        reason = decision.reason
        if fallback:
            reason += f"; {fallback}"
        if moved_from is not None:
            reason += f"; removed the previous release {moved_from.namespace}/{moved_from.name}"
        activity.logger.info(
            "bundle %s on cluster %s/%s: release %s/%s at revision %s (%s)",
            *log_args,
            namespace,
            release,
            revision,
            reason,
        )
        result = DeployResult(
            release=ReleaseRef(name=release, namespace=namespace, revision=revision),
            deployment_id=request.deployment_id,
            changed=True,
            action=decision.action,
            reason=reason,
            recovered=decision.action
            in (
                HistoryAction.ROLLBACK_THEN_UPGRADE,
                HistoryAction.ADOPT,
                HistoryAction.CONTINUE_PENDING,
            ),
        )
        manifest = record.get("manifest")
        return result, manifest if isinstance(manifest, str) else None

    def _copy_downstream(
        self,
        kube: Kube,
        payload: DeploymentOptions,
        namespace: str,
        *,
        bundle: str,
        redact: Redactor,
        may_create_namespace: bool,
    ) -> None:
        """Copy the bundle's downstreamResources into its namespace before anything reads
        them (valuesFrom, the release's pods), creating the namespace as Helm would."""
        copy = payload.downstream
        assert copy is not None
        refusal = check_copy_labels(copy.namespace, bundle)
        if refusal:
            raise SpecError(refusal)
        if kube.get("v1", "Namespace", "", namespace) is None:
            if not may_create_namespace:
                raise FlotillaError(
                    f"namespace {namespace!r} does not exist and the bundle's ServiceAccount "
                    "may not create it (allowNamespaceCreation)",
                    field="downstreamResources",
                    type=NOT_FOUND,
                )
            kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        copied = copy_to_cluster(kube, self.secrets, copy, namespace, bundle=bundle, redact=redact)
        activity.logger.info(
            "bundle %s: copied %d downstream resource(s) of %s into namespace %s",
            bundle,
            copied,
            copy.namespace,
            namespace,
        )

    @staticmethod
    def _flags(
        options: BundleDeploymentOptions,
        *,
        action: HistoryAction = HistoryAction.UPGRADE,
        server_side_before: bool = True,
    ) -> UpgradeFlags:
        """The upgrade's flags; ``server_side_before``: the release's newest revision was
        applied server-side (what Helm's "auto" would read)."""
        helm = options.helm
        correct_drift = options.correct_drift
        adopt = action is HistoryAction.ADOPT
        # As in Fleet, correctDrift.force also forces the upgrade itself.
        force = bool(helm and helm.force) or bool(correct_drift and correct_drift.force)
        # Adopting the live objects of a lost record: they carry this release's
        # annotations already, unless someone stripped them; take them either way.
        take_ownership = adopt or bool(helm and helm.take_ownership)
        installs = action in (HistoryAction.INSTALL, HistoryAction.ADOPT)
        return UpgradeFlags(
            max_history=max_history(options),
            timeout_seconds=(helm.timeout_seconds or 0) if helm else 0,
            atomic=bool(helm and helm.atomic),
            force=force,
            take_ownership=take_ownership,
            wait_for_jobs=bool(helm and helm.wait_for_jobs),
            skip_schema_validation=bool(helm and helm.skip_schema_validation),
            enable_dns=not (helm and helm.disable_dns),
            # Fleet 0.15: replacing objects, or installing over objects it takes over, is
            # done with Helm's three-way merge; otherwise a new release is applied
            # server-side and an upgrade keeps the method of the revision before it.
            server_side=not force
            and (not (take_ownership and installs))
            and (installs or server_side_before),
        )

    def _prepare_chart(
        self,
        bundle: Bundle,
        payload: DeploymentOptions,
        *,
        request: DeployRequest,
        release: str,
        values_from: dict[str, Any],
        scratch: Path,
        redact: Redactor,
    ) -> _Chart:
        refs = request.render_secrets or RenderSecretRefs(namespace=request.cluster_namespace)
        secrets = read_render_secrets(self.secrets, refs, bundle, payload.options)
        if secrets.chart is not None:
            redact.add([secrets.chart.password])
        # Decrypted here, not in render_bundle, so that every plaintext is known to ``redact``.
        decrypted = decrypt_bundle(bundle, secrets.age_key, workdir=scratch, tools=self.tools)
        redact.add(decrypted.secrets)
        bundle = decrypted.bundle
        options = decrypted.reveal_options(payload.options)
        style = detect_style(
            bundle.resources, options, file=posixpath.join(bundle.path, "fleet.yaml")
        )
        if style is BundleStyle.HELM:
            chart_path = materialize_chart(
                bundle, scratch / "chart", options=options, tools=self.tools, access=secrets.chart
            )
            values = compute_values(options, payload.cluster, values_from=values_from)
            post = kustomize_post_renderer(bundle, options, scratch, self.tools)
            if post is None:
                return _Chart(path=chart_path, values=values)
            return _Chart(
                path=chart_path, values=values, post_renderer=post[0], post_renderer_args=post[1]
            )
        rendered = render_bundle(
            bundle, payload.cluster, workdir=scratch / "render", options=options, tools=self.tools
        )
        generated = scratch / "generated"
        files = wrap_manifests(release, rendered.manifests, version=request.deployment_id)
        write_resources(files, generated)
        return _Chart(path=generated, values={})

    @staticmethod
    def _label_namespace(kube: Kube, options: BundleDeploymentOptions, namespace: str) -> None:
        labels = options.namespace_labels or {}
        annotations = options.namespace_annotations or {}
        if not labels and not annotations:
            return
        kube.merge_patch(
            "v1",
            "Namespace",
            "",
            namespace,
            {"metadata": {"labels": labels, "annotations": annotations}},
        )

    # -- status ----------------------------------------------------------------------------

    @activity.defn(name=CHECK_DEPLOYMENT)
    def check_deployment(self, request: StatusRequest) -> DeploymentStatus:
        """Readiness and drift of the release's objects; corrects drift when asked to."""
        redact = Redactor()
        try:
            with self._watch(request, redact) as watch:
                status = watch.observe()
                options = watch.options
                correct = bool(options.correct_drift and options.correct_drift.enabled)
                if watch.drift and correct and request.correct:
                    activity.logger.info(
                        "bundle %s on cluster %s/%s: correcting drift of %s objects",
                        request.bundle_name,
                        request.cluster_namespace,
                        request.cluster_name,
                        len(watch.drift),
                    )
                    watch.correct(force=bool(options.correct_drift and options.correct_drift.force))
                    corrected = status.drift
                    status = watch.observe()
                    status.corrected = corrected
                return status
        except FlotillaError as err:
            raise _application_error(err, redact) from None

    @activity.defn(name=WAIT_READY)
    def wait_ready(self, request: WaitReadyRequest) -> DeploymentStatus:
        """Poll until the release's objects are Ready or the timeout passes (then NotReady)."""
        redact = Redactor()
        try:
            with heartbeating():
                return self._wait_ready(request, request.timeout_seconds, redact)
        except FlotillaError as err:
            raise _application_error(err, redact) from None

    def _wait_ready(
        self,
        request: StatusRequest,
        timeout_seconds: float,
        redact: Redactor,
        *,
        applied_manifest: str | None = None,
    ) -> DeploymentStatus:
        """Look at readiness until Ready or the timeout, watching between looks; then the
        full status. ``applied_manifest``: see ``ReadinessWait``."""
        wait = self._open_wait(
            request, timeout_seconds, redact, applied_manifest=applied_manifest, map_errors=False
        )
        try:
            while (status := wait.step()) is None:
                activity.heartbeat(f"{len(wait.not_ready)} not ready")
                if not wait.watch(WATCH_SECONDS):
                    activity.wait_for_cancelled_sync(timeout=wait.next_poll())
                if activity.is_cancelled():
                    raise CancelledError("readiness watch cancelled")
            return status
        finally:
            wait.close()

    def open_wait(
        self, request: StatusRequest, timeout_seconds: float, *, applied_manifest: str | None
    ) -> EngineWait:
        """A readiness wait to step from outside (``activities.pushqueue``): each ``step``
        one look on the calling thread; the waiting between looks is the caller's."""
        redact = Redactor()
        try:
            return self._open_wait(
                request, timeout_seconds, redact, applied_manifest=applied_manifest
            )
        except FlotillaError as err:
            raise _application_error(err, redact) from None

    def _open_wait(
        self,
        request: StatusRequest,
        timeout_seconds: float,
        redact: Redactor,
        *,
        applied_manifest: str | None,
        map_errors: bool = True,
    ) -> EngineWait:
        with ExitStack() as stack:
            watch = stack.enter_context(self._watch(request, redact, manifest=applied_manifest))
            wait = ReadinessWait(watch, timeout_seconds, applied=applied_manifest is not None)
            return EngineWait(wait, stack.pop_all(), redact, map_errors=map_errors)

    @contextmanager
    def _watch(
        self, request: StatusRequest, redact: Redactor, *, manifest: str | None = None
    ) -> Iterator[ReleaseWatch]:
        payload = self._options(request.options_digest)
        text, parsed = self._kubeconfig(
            request.cluster_namespace,
            request.cluster_name,
            redact,
            act_as=_acting_user(payload.options),
        )
        with self._kube(text, parsed) as kube:
            release = request.release
            desired: list[dict[str, Any]] = []
            if manifest is not None:
                desired = parse_manifests(manifest, file=f"release {release.name}")
                yield ReleaseWatch(kube, request, payload.options, desired)
                return
            # Without a deployed revision there is nothing to compare; saying so (instead of
            # failing) lets the workflow see the version as not applied and deploy it again.
            applied = applied_revision(read_history(kube, release.name, release.namespace))
            if applied is not None:
                manifest = read_release_manifest(
                    kube, release.name, release.namespace, applied.revision
                )
                desired = parse_manifests(manifest, file=f"release {release.name}")
            yield ReleaseWatch(kube, request, payload.options, desired)

    # -- removal ---------------------------------------------------------------------------

    @staticmethod
    def _delete_namespace(kube: Kube, request: RemoveRequest, result: RemoveResult) -> RemoveResult:
        """deleteNamespace, unless protected or keepResources; an account that may not delete
        namespaces keeps it, said in the result (the release is gone either way)."""
        namespace = request.release.namespace
        refusal = namespace_removal_refusal(namespace)
        if request.keep_resources:
            refusal = "namespace kept: keepResources keeps the objects in it"
        if not refusal:
            try:
                result.namespace_deleted = kube.delete("v1", "Namespace", "", namespace)
            except ForbiddenError as err:
                refusal = f"namespace kept: {rbac_denial(str(err)) or err}"
        if refusal:
            result.message = "; ".join(filter(None, (result.message, refusal)))
        return result

    @staticmethod
    def _sweep(kube: Kube, request: RemoveRequest) -> int:
        """Delete the release's objects when Helm's record cannot (it has no deployed
        revision, or is gone): found by the labels and annotations Helm puts on each."""
        release = request.release
        if applied_revision(read_history(kube, release.name, release.namespace)) is not None:
            return 0  # helm uninstall deletes what the deployed revision's manifest names
        found = find_release_objects(kube, release.name, release.namespace)
        for item in found:
            meta = item["metadata"]
            kube.delete(item["apiVersion"], item["kind"], meta.get("namespace", ""), meta["name"])
        if found:
            activity.logger.warning(
                "bundle %s on cluster %s/%s: release %s/%s had no deployed record; deleted %s "
                "object(s) found by its annotations",
                request.bundle_name,
                request.cluster_namespace,
                request.cluster_name,
                release.namespace,
                release.name,
                len(found),
            )
        return len(found)

    @activity.defn(name=REMOVE_DEPLOYMENT)
    def remove_deployment(self, request: RemoveRequest) -> RemoveResult:
        """Uninstall the release (or, with keepResources, drop only its records), as the
        ServiceAccount it was deployed as: a team's release is removed with the team's rights,
        so a record naming objects it never owned cannot make the worker delete them."""
        redact = Redactor()
        release = request.release
        unswept = ""
        try:
            kubeconfig, parsed = self._kubeconfig(
                request.cluster_namespace, request.cluster_name, redact
            )
            with self._kube(kubeconfig, parsed) as kube:
                account = release_service_account(kube, release.name, release.namespace)
            if account:
                kubeconfig, parsed = self._kubeconfig(
                    request.cluster_namespace,
                    request.cluster_name,
                    redact,
                    act_as=service_account_user(release.namespace, account),
                )
            with heartbeating(), self._kube(kubeconfig, parsed) as kube:
                if request.keep_resources:
                    # Helm's records are its release Secrets; without them the objects are
                    # nobody's release, and Helm never touches them again.
                    drop_release_records(kube, release.name, release.namespace)
                    swept = 0
                else:
                    try:
                        swept = self._sweep(kube, request)
                    except ForbiddenError as err:
                        # An account sees only its own namespaces, and the sweep looks in all.
                        swept = 0
                        unswept = f"objects without a deployed record not swept: {err}"
                    with (
                        self._scratch(release.name) as scratch,
                        self.helm(kubeconfig, scratch, redact) as helm,
                    ):
                        helm.uninstall(release.name, namespace=release.namespace)
                    _remove_copies(
                        kube, release.namespace, request.cluster_namespace, request.bundle_name
                    )
                result = RemoveResult(
                    release_removed=True, resources_kept=request.keep_resources, message=unswept
                )
                if swept:
                    result.message = (
                        f"Helm's record was gone: deleted {swept} object(s) found by the "
                        "release's annotations"
                    )
                if request.delete_namespace:
                    result = self._delete_namespace(kube, request, result)
        except FlotillaError as err:
            raise _application_error(err, redact) from None
        activity.logger.info(
            "bundle %s removed from cluster %s/%s: release %s/%s%s",
            request.bundle_name,
            request.cluster_namespace,
            request.cluster_name,
            release.namespace,
            release.name,
            f" ({result.message})" if result.message else "",
        )
        return result
