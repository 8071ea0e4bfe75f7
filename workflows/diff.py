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
    from flotilla.credentials import RenderSecretRefs
    from flotilla.errors import cause_message
    from flotilla.livediff import DeploymentDiff
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


@workflow.defn(name=DIFF_WORKFLOW)
class DiffWorkflow:
    @workflow.run
    async def run(self, request: DiffInput) -> DiffReport:
        report = DiffReport()
        spec = request.spec
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
            return report
        report.commit = fetched.commit
        bundles = [b for b in fetched.bundles if not request.bundle or b.name == request.bundle]
        if request.bundle and not bundles:
            report.errors.append(
                f"bundle {request.bundle!r} is not in gitrepo {request.gitrepo} at commit "
                f"{fetched.commit[:12]}"
            )
        gate = asyncio.Semaphore(max(1, request.concurrency))
        plans = await asyncio.gather(*(self._plan(request, b, gate) for b in bundles))
        diffs = [
            self._diff(request, bundle, target, gate)
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

    async def _plan(
        self, request: DiffInput, bundle: BundleRef, gate: asyncio.Semaphore
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
                        switches=GitRepoSwitches.from_spec(request.spec),
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
                        render_secrets=RenderSecretRefs.for_gitrepo(
                            request.namespace, request.spec
                        ),
                    ),
                    result_type=DeploymentDiff,
                    start_to_close_timeout=DEPLOY_TIMEOUT,
                    heartbeat_timeout=DEPLOY_HEARTBEAT,
                    retry_policy=DEPLOY_RETRY,
                )
            except ActivityError as err:
                return DeploymentDiff(bundle=bundle.name, cluster=where, error=cause_message(err))
        return diff
