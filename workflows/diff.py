"""``flotilla diff``: a short workflow that plans a commit as a GitRepo would, then asks each
targeted cluster what deploying it would change (the diff activity runs where the cluster
credentials are). It changes nothing and keeps no state after it returns."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.diff_models import DIFF_DEPLOYMENT, DiffRequest
    from activities.gitops_models import (
        FETCH_BUNDLES,
        LS_REMOTE,
        PLAN_BUNDLE,
        BundleRef,
        FetchRequest,
        FetchResult,
        GitSource,
        LsRemoteRequest,
        LsRemoteResult,
        PlanCluster,
        PlannedTarget,
        PlanRequest,
        PlanResult,
    )
    from activities.helmops_models import RESOLVE_HELMOP, ResolveRequest, ResolveResult
    from flotilla.credentials import RenderSecretRefs
    from flotilla.errors import cause_message
    from flotilla.helmops import helmop_targets, render_secret_refs
    from flotilla.livediff import DeploymentDiff
    from flotilla.models import GitRepoSpec, HelmOpSpec
    from flotilla.targeting import GitRepoSwitches
    from workflows.common import (
        DEPLOY_HEARTBEAT,
        DEPLOY_RETRY,
        DEPLOY_TIMEOUT,
        FETCH_HEARTBEAT,
        FETCH_TIMEOUT,
        GIT_RETRY,
        LS_REMOTE_RETRY,
        LS_REMOTE_TIMEOUT,
        PLAN_RETRY,
        PLAN_TIMEOUT,
    )
    from workflows.diff_models import DIFF_WORKFLOW, DiffInput, DiffReport
    from workflows.helmop import CHART_SOURCE_RETRY, RESOLVE_TIMEOUT

# `flotilla diff helmop`: the HelmOp's spec is resolved to its chart version and diffed as its
# one bundle. Asked only by diffs of HelmOps.
HELMOP_DIFF_PATCH = "diff-helmop"


@workflow.defn(name=DIFF_WORKFLOW)
class DiffWorkflow:
    @workflow.run
    async def run(self, request: DiffInput) -> DiffReport:
        report = DiffReport()
        if request.helmop is not None:
            workflow.patched(HELMOP_DIFF_PATCH)
            helmop = request.helmop
            switches = GitRepoSwitches(targets=helmop_targets(helmop))
            render_secrets = render_secret_refs(request.namespace, helmop)
            bundles = await self._helmop_bundles(request, helmop, report)
        elif request.spec is not None:
            switches = GitRepoSwitches.from_spec(request.spec)
            render_secrets = RenderSecretRefs.for_gitrepo(request.namespace, request.spec)
            bundles = await self._gitrepo_bundles(request, request.spec, report)
        else:
            report.errors.append("diff: neither a GitRepo nor a HelmOp spec was given")
            return report
        if bundles is None:
            return report
        gate = asyncio.Semaphore(max(1, request.concurrency))
        plans = await asyncio.gather(*(self._plan(request, b, switches, gate) for b in bundles))
        diffs = [
            self._diff(request, bundle, target, render_secrets, gate)
            for bundle, plan in zip(bundles, plans, strict=True)
            if plan is not None
            for target in plan.targets
            if not request.cluster or target.cluster == request.cluster
        ]
        for bundle, plan in zip(bundles, plans, strict=True):
            if bundle.error:
                report.errors.append(f"bundle {bundle.name}: {bundle.error}")
            elif plan is None:
                report.errors.append(f"bundle {bundle.name}: could not be planned")
            else:
                report.errors += [f"bundle {bundle.name}: {e}" for e in plan.errors.values()]
        report.deployments = sorted(
            await asyncio.gather(*diffs), key=lambda d: (d.cluster, d.bundle)
        )
        return report

    async def _gitrepo_bundles(
        self, request: DiffInput, spec: GitRepoSpec, report: DiffReport
    ) -> list[BundleRef] | None:
        """The bundles of the GitRepo's commit (its branch head, or ``request.commit``)."""
        source = GitSource.from_spec(spec, request.namespace)
        if request.commit:
            source = source.model_copy(update={"revision": request.commit})
        try:
            head: LsRemoteResult = await workflow.execute_activity(
                LS_REMOTE,
                LsRemoteRequest(source=source),
                result_type=LsRemoteResult,
                start_to_close_timeout=LS_REMOTE_TIMEOUT,
                retry_policy=LS_REMOTE_RETRY,
            )
            if request.commit:
                # A branch or tag named by --commit: fetch the commit it resolved to.
                source = source.model_copy(update={"revision": head.commit})
            fetched: FetchResult = await workflow.execute_activity(
                FETCH_BUNDLES,
                FetchRequest(
                    namespace=request.namespace,
                    gitrepo=request.gitrepo,
                    source=source,
                    commit=head.commit,
                    paths=spec.paths,
                ),
                result_type=FetchResult,
                start_to_close_timeout=FETCH_TIMEOUT,
                heartbeat_timeout=FETCH_HEARTBEAT,
                retry_policy=GIT_RETRY,
            )
        except ActivityError as err:
            report.errors.append(f"gitrepo {request.gitrepo}: {cause_message(err)}")
            return None
        report.commit = fetched.commit
        bundles = [b for b in fetched.bundles if not request.bundle or b.name == request.bundle]
        if request.bundle and not bundles:
            report.errors.append(
                f"bundle {request.bundle!r} is not in gitrepo {request.gitrepo} at commit "
                f"{fetched.commit[:12]}"
            )
        return bundles

    async def _helmop_bundles(
        self, request: DiffInput, spec: HelmOpSpec, report: DiffReport
    ) -> list[BundleRef] | None:
        """The HelmOp's one bundle at the chart version its spec resolves to now."""
        try:
            resolved: ResolveResult = await workflow.execute_activity(
                RESOLVE_HELMOP,
                ResolveRequest(namespace=request.namespace, name=request.gitrepo, spec=spec),
                result_type=ResolveResult,
                start_to_close_timeout=RESOLVE_TIMEOUT,
                retry_policy=CHART_SOURCE_RETRY,
            )
        except ActivityError as err:
            report.errors.append(f"helmop {request.gitrepo}: {cause_message(err)}")
            return None
        # What the report calls the version (a tarball has none: its bundle's digest).
        report.commit = resolved.version or resolved.digest
        return [BundleRef(name=request.gitrepo, path=".", digest=resolved.digest)]

    async def _plan(
        self,
        request: DiffInput,
        bundle: BundleRef,
        switches: GitRepoSwitches,
        gate: asyncio.Semaphore,
    ) -> PlanResult | None:
        if bundle.error or not bundle.digest:
            return None
        clusters = request.clusters
        async with gate:
            try:
                result: PlanResult = await workflow.execute_activity(
                    PLAN_BUNDLE,
                    PlanRequest(
                        namespace=request.namespace,
                        bundle=bundle.name,
                        bundle_digest=bundle.digest,
                        switches=switches,
                        clusters=[
                            PlanCluster(name=c.name, labels=c.labels) for c in clusters.clusters
                        ],
                        groups=[g.to_fleet() for g in clusters.groups],
                    ),
                    result_type=PlanResult,
                    start_to_close_timeout=PLAN_TIMEOUT,
                    retry_policy=PLAN_RETRY,
                )
            except ActivityError:
                return None
        return result

    async def _diff(
        self,
        request: DiffInput,
        bundle: BundleRef,
        target: PlannedTarget,
        render_secrets: RenderSecretRefs | None,
        gate: asyncio.Semaphore,
    ) -> DeploymentDiff:
        where = f"{request.namespace}/{target.cluster}"
        agent = {c.name for c in request.clusters.clusters if c.agent}
        if target.cluster in agent:
            # The central worker holds no agent cluster's credentials.
            return DeploymentDiff(
                bundle=bundle.name,
                cluster=where,
                error="agent-mode cluster: flotilla diff reads push-mode clusters only",
            )
        async with gate:
            try:
                diff: DeploymentDiff = await workflow.execute_activity(
                    DIFF_DEPLOYMENT,
                    DiffRequest(
                        gitrepo=request.gitrepo,
                        bundle_name=bundle.name,
                        cluster_namespace=request.namespace,
                        cluster_name=target.cluster,
                        deployment_id=target.deployment_id,
                        bundle_digest=bundle.digest,
                        options_digest=target.options_digest,
                        render_secrets=render_secrets,
                    ),
                    result_type=DeploymentDiff,
                    start_to_close_timeout=DEPLOY_TIMEOUT,
                    heartbeat_timeout=DEPLOY_HEARTBEAT,
                    retry_policy=DEPLOY_RETRY,
                )
            except ActivityError as err:
                return DeploymentDiff(bundle=bundle.name, cluster=where, error=cause_message(err))
        return diff
