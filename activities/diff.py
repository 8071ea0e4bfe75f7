"""``flotilla diff``'s activity: what deploying a planned bundle would change on its cluster.

Renders the release as a deploy would (same chart, values, valuesFrom, post-renderer) with
``helm upgrade --install --dry-run=server`` (so ``lookup`` sees the cluster), asks the API
server for each object after a dry-run server-side apply (defaults and admission webhooks
apply, nothing is stored), and compares with the live objects and the deployed revision
(``flotilla/livediff.py``). Secrets are compared, never shown.
"""

from __future__ import annotations

from typing import Any

import yaml
from temporalio import activity

from activities.deploy import (
    DeployActivities,
    _acting_user,
    _application_error,
    _read_values_from,
)
from activities.deploy_models import ReleaseRef
from activities.diff_models import DIFF_DEPLOYMENT, DiffRequest
from activities.helm import (
    HELM_MANAGER,
    applied_revision,
    read_history,
    read_release_manifest,
    with_helm_ownership,
)
from activities.kube import Kube
from activities.render import release_name_for, release_namespace
from flotilla.deployment import Redactor, deployment_label
from flotilla.drift import ObjectKey, object_key
from flotilla.errors import FlotillaError
from flotilla.helmhistory import HistoryAction
from flotilla.livediff import DeploymentDiff, compare_release
from flotilla.manifests import parse_manifests


class DiffActivities:
    """Diffs run where the cluster credentials are, with the deploy engine's own rendering."""

    def __init__(self, deploy: DeployActivities) -> None:
        self.deploy = deploy

    @activity.defn(name=DIFF_DEPLOYMENT)
    def diff_deployment(self, request: DiffRequest) -> DeploymentDiff:
        """Created, changed and deleted objects; a failure is the result's one-line error."""
        redact = Redactor()
        where = f"{request.cluster_namespace}/{request.cluster_name}"
        try:
            return self._diff(request, redact)
        except FlotillaError as err:
            failure = _application_error(err, redact)
            activity.logger.warning(
                "diff of bundle %s (gitrepo %s) on cluster %s failed: %s",
                request.bundle_name,
                request.gitrepo,
                where,
                failure.message,
            )
            return DeploymentDiff(bundle=request.bundle_name, cluster=where, error=failure.message)

    def _diff(self, request: DiffRequest, redact: Redactor) -> DeploymentDiff:
        engine = self.deploy
        bundle = engine._bundle(request.bundle_digest)
        payload = engine._options(request.options_digest)
        options = payload.options
        release = release_name_for(bundle, options)
        namespace = release_namespace(options)
        kubeconfig, parsed = engine._kubeconfig(
            request.cluster_namespace,
            request.cluster_name,
            redact,
            act_as=_acting_user(options),
        )
        with engine._kube(kubeconfig, parsed) as kube:
            history = read_history(kube, release, namespace)
            applied = applied_revision(history)
            previous = (
                read_release_manifest(kube, release, namespace, applied.revision) if applied else ""
            )
            values_from = _read_values_from(kube, options, namespace, redact)
            with engine._scratch(release) as scratch:
                chart = engine._prepare_chart(
                    bundle,
                    payload,
                    request=request,
                    release=release,
                    values_from=values_from,
                    scratch=scratch,
                    redact=redact,
                )
                action = HistoryAction.UPGRADE if applied else HistoryAction.INSTALL
                with (
                    engine.helm(kubeconfig, scratch, redact) as helm,
                    helm.private_file("values-", yaml.safe_dump(chart.values)) as values,
                ):
                    record = helm.upgrade_install(
                        release,
                        chart.path,
                        namespace=namespace,
                        values=values,
                        flags=engine._flags(options, action=action),
                        deployment_label=deployment_label(request.deployment_id),
                        description="flotilla diff",
                        post_renderer=chart.post_renderer,
                        post_renderer_args=chart.post_renderer_args,
                        dry_run=True,
                    )
            manifest = record.get("manifest")
            desired = parse_manifests(manifest if isinstance(manifest, str) else "", file=release)
            ref = ReleaseRef(name=release, namespace=namespace)
            planned: dict[ObjectKey, dict[str, Any]] = {}
            live: dict[ObjectKey, dict[str, Any] | None] = {}
            for obj in desired:
                key = object_key(obj, namespace)
                live[key] = _get(kube, key)
                planned[key] = _dry_run(kube, with_helm_ownership(obj, ref), namespace)
            old = [
                object_key(obj, namespace)
                for obj in parse_manifests(previous, file=f"{release} (deployed)")
            ]
            for key in old:
                if key not in live:
                    live[key] = _get(kube, key)
        changes, unchanged = compare_release(planned, live, old)
        for change in changes:
            change.diff = redact(change.diff)
        return DeploymentDiff(
            bundle=request.bundle_name,
            cluster=f"{request.cluster_namespace}/{request.cluster_name}",
            changes=changes,
            unchanged=unchanged,
        )


def _get(kube: Kube, key: ObjectKey) -> dict[str, Any] | None:
    try:
        return kube.get(key.api_version, key.kind, key.namespace, key.name)
    except FlotillaError:
        # A kind the cluster does not serve yet (its CRD comes with the release): absent.
        return None


def _dry_run(kube: Kube, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The object as the API server would store it, as Helm applies it; the manifest itself
    when the server cannot say (its namespace or CRD does not exist yet)."""
    try:
        return kube.apply(obj, namespace=namespace, force=True, manager=HELM_MANAGER, dry_run=True)
    except FlotillaError:
        return obj
