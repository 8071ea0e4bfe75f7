"""HelmOp activities: list a chart's versions, store the bundle of the one chosen, keep the
HelmOp's polling schedule.

Versions come from a Helm repository's ``index.yaml`` (basic auth, CA bundle and TLS switches
of the HelmOp's ``helmSecretName``, read here from the secret store) or from an OCI
repository's tag list (through the registry activity's client, the same credentials). A
tarball URL has no versions: its bundle names the URL. Errors are one line naming the chart's
URL, never a credential; an unreachable source is retryable, a refused login, an unknown
chart or no matching version are not.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from datetime import timedelta

from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.content import ContentError, ContentStore
from activities.failures import to_application_error
from activities.helmops_models import (
    BUNDLE_STATES,
    HELMOP_POLL_WORKFLOW,
    RESOLVE_HELMOP,
    SELECT_BUNDLES,
    SYNC_HELMOP_SCHEDULE,
    BundleStatesRequest,
    BundleStatesResult,
    ResolveRequest,
    ResolveResult,
    SelectBundlesRequest,
    SelectBundlesResult,
    SyncScheduleRequest,
    SyncScheduleResult,
)
from activities.registry import RegistryActivities
from activities.registry_models import PollRequest
from activities.secrets import SecretStore
from flotilla.credentials import ChartAccess, access_from_helm_secret
from flotilla.errors import (
    REGISTRY_AUTH_FAILED,
    REGISTRY_NOT_FOUND,
    REGISTRY_UNAVAILABLE,
    FlotillaError,
)
from flotilla.helmops import (
    ChartKind,
    ChartSource,
    chart_source,
    choose_chart_version,
    helmop_bundle,
    index_versions,
    oci_tag_versions,
    wanted_version,
)
from flotilla.hints import Target, ending_with_fix
from flotilla.ids import bundle_workflow_id
from flotilla.targeting import match_selector

INDEX_TIMEOUT_SECONDS = 30.0
MAX_INDEX_BYTES = 20 * 1024 * 1024
# A worker outage should not end in a burst of make-up polls: one late poll is enough.
CATCHUP_WINDOW = timedelta(minutes=1)
# The bundle workflow's status query (workflows/bundle_models.BUNDLE_STATUS_QUERY; activities
# may not import workflow modules) and how long one answer may take.
BUNDLE_STATUS_QUERY = "status"
QUERY_TIMEOUT = timedelta(seconds=10)


class HelmOpActivities:
    """Chart version lookups and the HelmOps' schedules."""

    def __init__(
        self,
        secrets: SecretStore,
        content: ContentStore,
        registry: RegistryActivities,
        client: Client | None = None,
    ) -> None:
        self.secrets = secrets
        self.content = content
        self.registry = registry
        self.client = client

    @activity.defn(name=RESOLVE_HELMOP)
    def resolve_helmop(self, request: ResolveRequest) -> ResolveResult:
        """Choose the version ``helm.version`` allows and store the bundle it becomes."""
        where = f"helmop {request.namespace}/{request.name}"
        try:
            source = chart_source(request.spec, file=where)
            version = self._choose(request, source)
            bundle = helmop_bundle(request.name, request.spec, version)
            digest = self.content.put_bundle(bundle)
        except (FlotillaError, ContentError) as err:
            raise to_application_error(err) from None
        activity.logger.info(
            "%s: %s at version %s (bundle %s)", where, source.describe(), version, digest[:12]
        )
        return ResolveResult(version=version, digest=digest)

    def _choose(self, request: ResolveRequest, source: ChartSource) -> str:
        if source.kind is ChartKind.TARBALL:
            return ""
        wanted = wanted_version(request.spec)
        if source.kind is ChartKind.OCI:
            host, repository = source.oci_repository
            # The registry client reads the secret's username and password itself.
            result = self.registry.poll_registry(
                PollRequest(
                    registry=host,
                    repository=repository,
                    secret_name=request.spec.helm_secret_name,
                    secret_namespace=request.namespace,
                )
            )
            versions = oci_tag_versions(result.tags)
        else:
            access = self._access(request)
            versions = index_versions(self._index(source, access), source.chart, where=source.url)
        return choose_chart_version(versions, wanted, where=source.describe())

    def _access(self, request: ResolveRequest) -> ChartAccess:
        spec = request.spec
        access = ChartAccess(insecure_skip_verify=spec.insecure_skip_tls_verify)
        if spec.helm_secret_name:
            secret = f"{request.namespace}/{spec.helm_secret_name}"
            data = self.secrets.get(request.namespace, spec.helm_secret_name)
            found = access_from_helm_secret(data, secret=secret)
            access = ChartAccess(
                username=found.username,
                password=found.password,
                ca_bundle=found.ca_bundle,
                insecure_skip_verify=found.insecure_skip_verify or spec.insecure_skip_tls_verify,
                secret=secret,
            )
        return access

    def _index(self, source: ChartSource, access: ChartAccess) -> str:
        """The repository's index.yaml; credentials go to that URL only (not to a redirect)."""
        url = f"{source.url}/index.yaml"
        handlers: list[urllib.request.BaseHandler] = []
        if access.sends_credentials:
            passwords = urllib.request.HTTPPasswordMgrWithPriorAuth()
            passwords.add_password(
                None, url, access.username, access.password, is_authenticated=True
            )
            handlers.append(urllib.request.HTTPBasicAuthHandler(passwords))
        try:
            context = ssl.create_default_context(cadata=access.ca_bundle or None)
        except (ssl.SSLError, ValueError):
            raise FlotillaError(f"the CA bundle of secret {access.secret} is not PEM") from None
        if access.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=context))
        try:
            with urllib.request.build_opener(*handlers).open(
                url, timeout=INDEX_TIMEOUT_SECONDS
            ) as response:
                data: bytes = response.read(MAX_INDEX_BYTES + 1)
        except urllib.error.HTTPError as err:
            raise _http_error(url, err.code, err.reason, access) from None
        except (OSError, urllib.error.URLError) as err:
            problem = ending_with_fix(
                str(getattr(err, "reason", err)), Target.CHART_SOURCE, reserve=len(url) + 20
            )
            raise FlotillaError(
                f"{url}: {problem}", type=REGISTRY_UNAVAILABLE, retryable=True
            ) from None
        if len(data) > MAX_INDEX_BYTES:
            raise FlotillaError(f"{url}: larger than {MAX_INDEX_BYTES} bytes")
        return data.decode("utf-8", errors="replace")

    @activity.defn(name=BUNDLE_STATES)
    async def bundle_states(self, request: BundleStatesRequest) -> BundleStatesResult:
        """Each named bundle's state on each cluster, from its workflow's status query."""
        if self.client is None:
            raise to_application_error(
                FlotillaError("bundle_states needs a Temporal client: a worker wiring bug")
            )
        result = BundleStatesResult()
        for bundle in request.bundles:
            handle = self.client.get_workflow_handle(bundle_workflow_id(request.namespace, bundle))
            try:
                status = await handle.query(
                    BUNDLE_STATUS_QUERY, {}, result_type=dict, rpc_timeout=QUERY_TIMEOUT
                )
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                continue  # not running (yet): its dependents wait
            result.states[bundle] = {
                str(c["cluster"]): str(c["state"]) for c in status.get("clusters") or []
            }
        return result

    @activity.defn(name=SELECT_BUNDLES)
    async def select_bundles(self, request: SelectBundlesRequest) -> SelectBundlesResult:
        """The bundles of the namespace each ``dependsOn`` selector selects: every running
        bundle workflow of the namespace (visibility), its labels from its status query."""
        if self.client is None:
            raise to_application_error(
                FlotillaError("select_bundles needs a Temporal client: a worker wiring bug")
            )
        prefix = bundle_workflow_id(request.namespace, "")
        query = f"WorkflowId STARTS_WITH '{prefix}' AND ExecutionStatus = 'Running'"
        labels: dict[str, dict[str, str]] = {}
        async for listed in self.client.list_workflows(query):
            name = listed.id.removeprefix(prefix)
            if name == request.exclude or name in labels:
                continue
            activity.heartbeat(name)
            try:
                status = await self.client.get_workflow_handle(listed.id).query(
                    BUNDLE_STATUS_QUERY, {}, result_type=dict, rpc_timeout=QUERY_TIMEOUT
                )
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                continue  # ended since it was listed
            labels[name] = {str(k): str(v) for k, v in (status.get("labels") or {}).items()}
        return SelectBundlesResult(
            selected=[
                sorted(n for n, found in labels.items() if match_selector(selector, found))
                for selector in request.selectors
            ]
        )

    @activity.defn(name=SYNC_HELMOP_SCHEDULE)
    async def sync_helmop_schedule(self, request: SyncScheduleRequest) -> SyncScheduleResult:
        """Make the HelmOp's polling schedule match its interval and pause (or delete it)."""
        if self.client is None:
            raise to_application_error(
                FlotillaError("sync_helmop_schedule needs a Temporal client: a worker wiring bug")
            )
        handle = self.client.get_schedule_handle(request.schedule_id)
        if request.interval_seconds <= 0:
            try:
                await handle.delete()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                return SyncScheduleResult(outcome="absent")
            return SyncScheduleResult(outcome="deleted")
        schedule = Schedule(
            action=ScheduleActionStartWorkflow(
                HELMOP_POLL_WORKFLOW,
                request.poll,
                id=request.schedule_id,
                task_queue=request.task_queue,
                static_summary=f"chart versions of helmop {request.poll.namespace}/"
                f"{request.poll.name}",
            ),
            spec=ScheduleSpec(
                intervals=[ScheduleIntervalSpec(every=timedelta(seconds=request.interval_seconds))]
            ),
            policy=SchedulePolicy(
                overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW
            ),
            state=ScheduleState(
                paused=request.paused, note="helmop paused" if request.paused else None
            ),
        )
        try:
            await self.client.create_schedule(request.schedule_id, schedule)
            return SyncScheduleResult(outcome="created")
        except ScheduleAlreadyRunningError:
            pass

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        # The HelmOp workflow calls this only when the spec, interval or pause changed.
        await handle.update(replace)
        return SyncScheduleResult(outcome="updated")


def _http_error(url: str, code: int, reason: str, access: ChartAccess) -> FlotillaError:
    if code in (401, 403):
        if access.sends_credentials:
            problem = f"HTTP {code}: the credentials of secret {access.secret} were refused"
        else:
            problem = f"HTTP {code}: the repository wants credentials; set spec.helmSecretName"
        return FlotillaError(f"{url}: {problem}", type=REGISTRY_AUTH_FAILED)
    if code == 404:
        return FlotillaError(
            f"{url}: HTTP 404: no Helm repository here (check spec.helm.repo)",
            type=REGISTRY_NOT_FOUND,
        )
    return FlotillaError(f"{url}: HTTP {code} {reason}", type=REGISTRY_UNAVAILABLE, retryable=True)
