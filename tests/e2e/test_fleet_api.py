"""Fleet's API on a real management cluster (etcd + kube-apiserver with the CRDs): objects
applied as kubectl applies them deploy through the workflows, and their status comes back in
Fleet's shape.

One flow, as a Fleet user lives it: two Clusters and a GitRepo applied, `get gitrepos -A`
shows Ready 2/2, a commit rolls out and the status follows, a label change re-targets,
invalid objects get one-line conditions and the rest carries on, a restarted controller
rebuilds status without a redeploy, a second controller (or Fleet's own) is refused, and
deleting the GitRepo uninstalls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio.client import Client

from activities.kube import KubeError
from controller.loop import ControllerRefused
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.fleetapi import FINALIZER
from tests.charts import serve_charts, write_chart
from tests.conftest import locate
from tests.e2e.fleetapi_harness import Kubectl, running_controller
from tests.e2e.harness import (
    Flotilla,
    helm_history,
    per_cluster_namespaces,
    releases,
    start_flotilla,
)
from tests.secrets.conftest import create_namespace, create_secret

T = TypeVar("T")
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {greeting: hello}\n"
CLUSTER = """\
apiVersion: fleet.cattle.io/v1alpha1
kind: Cluster
metadata: {{name: {name}, namespace: {ns}, labels: {{env: prod}}}}
spec: {{kubeConfigSecret: {name}-kubeconfig}}
"""
GITREPO = """\
apiVersion: fleet.cattle.io/v1alpha1
kind: GitRepo
metadata: {{name: {name}, namespace: {ns}}}
spec:
  repo: {url}
  branch: main
  pollingInterval: 1s
  paths: [app]
  targets:
  - clusterSelector: {{matchLabels: {{env: prod}}}}
{extra}"""


async def eventually(probe: Callable[[], T], check: Callable[[T], bool], timeout: float = 240) -> T:
    """``probe`` until ``check`` holds; an API server that asks to be asked again (429: a CRD
    just established while its storage initializes) is asked again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await asyncio.to_thread(probe)
        except KubeError as err:
            if not err.retryable or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
            continue
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.5)


async def management_flotilla(
    client: Client, task_queue: str, tmp_path: Path, management_cluster: LocalCluster
) -> Flotilla:
    """A worker for a fresh namespace of the management cluster, whose Secrets it reads."""
    ns = f"fl-{uuid.uuid4().hex[:8]}"
    create_namespace(management_cluster, ns)
    return await start_flotilla(
        client,
        task_queue,
        tmp_path,
        namespace=ns,
        FLOTILLA_SECRET_BACKEND="kubernetes",
        FLOTILLA_MANAGEMENT_KUBECONFIG=str(management_cluster.kubeconfig),
    )


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


def row(rows: list[dict[str, str]], name: str) -> dict[str, str]:
    return next((r for r in rows if r["Name"] == name), {})


# One flow through every step a Fleet user takes: 4-5 minutes on a loaded machine, over the
# suite's default of 300 s per test.
@pytest.mark.timeout(900)
async def test_fleet_api_round_trip(
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    tools_on_path: list[Path],
    local_cluster: LocalCluster,
    management_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
) -> None:
    fl = await management_flotilla(temporal_client, task_queue, tmp_path, management_cluster)
    ns = fl.namespace
    kubectl = Kubectl.for_kubeconfig(management_cluster.kubeconfig)
    kubeconfig = management_cluster.kubeconfig
    prefix = f"t{uuid.uuid4().hex[:6]}"
    url = git_daemon.create_repo(
        repo_name,
        {"app/fleet.yaml": per_cluster_namespaces(prefix, ["one", "two"]), "app/cm.yaml": CM},
    )
    for name in ("one", "two"):
        create_secret(
            management_cluster,
            ns,
            f"{name}-kubeconfig",
            {"value": local_cluster.kubeconfig.read_text()},
        )
    try:
        async with running_controller(kubeconfig, fl.control, ns, "controller-a") as ctl:
            # --- apply, deploy to two clusters, `get gitrepos -A` ---------------------------
            kubectl.apply(
                CLUSTER.format(name="one", ns=ns) + "---\n" + CLUSTER.format(name="two", ns=ns)
            )
            kubectl.apply(GITREPO.format(name="web", ns=ns, url=url, extra=""))
            rows = await eventually(
                lambda: kubectl.table("GitRepo"),
                lambda rows: row(rows, "web").get("BundleDeployments-Ready") == "2/2",
            )
            assert list(row(rows, "web")) == [
                "Name",
                "Repo",
                "Commit",
                "BundleDeployments-Ready",
                "Status",
            ]
            assert row(rows, "web")["Repo"] == url
            web = kubectl.get("GitRepo", ns, "web")
            assert web is not None
            status = web["status"]
            assert condition(web, "Ready")["status"] == "True"
            assert (status["readyClusters"], status["desiredReadyClusters"]) == (2, 2)
            assert status["display"]["readyBundleDeployments"] == "2/2"
            assert status["summary"]["desiredReady"] == 2
            assert FINALIZER in web["metadata"]["finalizers"]
            assert releases(local_cluster.kubeconfig, f"{prefix}-one") == ["web-app"]
            assert releases(local_cluster.kubeconfig, f"{prefix}-two") == ["web-app"]
            await eventually(
                lambda: kubectl.table("Bundle", ns),
                lambda r: row(r, "web-app").get("BundleDeployments-Ready") == "2/2",
            )
            deployments = await eventually(
                lambda: kubectl.table("BundleDeployment", ns),
                lambda r: (
                    sorted(x["Name"] for x in r) == ["web-app-one", "web-app-two"]
                    and all(x["Deployed"] == "Yes" for x in r)
                ),
            )
            assert {x["Status"] for x in deployments} == {""}
            # Both clusters' counts, each as it comes: at load the second's lags the first's.
            clusters = await eventually(
                lambda: kubectl.table("Cluster", ns),
                lambda r: all(row(r, c).get("Bundles-Ready") == "1/1" for c in ("one", "two")),
            )
            assert row(clusters, "two")["Bundles-Ready"] == "1/1"

            # --- a commit rolls out, the status follows -------------------------------------
            first = (kubectl.get("BundleDeployment", ns, "web-app-one") or {})["spec"]
            work = git_daemon.working_copy(repo_name)
            commit = git_daemon.commit(
                work, {"app/cm.yaml": CM.replace("hello", "bonjour")}, message="bonjour"
            )
            web = await eventually(
                lambda: kubectl.get("GitRepo", ns, "web"),
                lambda o: (
                    (o or {}).get("status", {}).get("commit") == commit
                    and condition(o, "Ready").get("status") == "True"
                ),
            )
            assert row(kubectl.table("GitRepo", ns), "web")["Commit"] == commit
            # The children's specs follow too: the Bundle's commit, each deployment's ID.
            await eventually(
                lambda: kubectl.get("Bundle", ns, "web-app"),
                lambda o: (o or {}).get("spec", {}).get("commit") == commit,
            )
            deployment = await eventually(
                lambda: kubectl.get("BundleDeployment", ns, "web-app-one"),
                lambda o: (
                    (o or {}).get("status", {}).get("appliedDeploymentID")
                    == (o or {}).get("spec", {}).get("deploymentID")
                ),
            )
            assert (deployment or {})["spec"]["deploymentID"] != first["deploymentID"]
            # All Ready: no count of another state is left over from the rollout (a merge
            # patch keeps the keys it does not name).
            for kind, name in (("Bundle", "web-app"), ("GitRepo", "web")):
                summary = (
                    await eventually(
                        lambda kind=kind, name=name: kubectl.get(kind, ns, name),
                        lambda o: condition(o, "Ready").get("status") == "True",
                    )
                    or {}
                )["status"]["summary"]
                assert set(summary) == {"desiredReady", "ready", "nonReadyResources"}, summary
            for name in ("one", "two"):
                assert (
                    len(helm_history(local_cluster.kubeconfig, "web-app", f"{prefix}-{name}")) == 2
                )

            # --- labels re-target -----------------------------------------------------------
            kubectl.label("Cluster", ns, "two", {"env": "dev"})
            await eventually(
                lambda: kubectl.get("GitRepo", ns, "web"),
                lambda o: (
                    (o or {}).get("status", {}).get("display", {}).get("readyBundleDeployments")
                    == "1/1"
                ),
            )
            await eventually(
                lambda: releases(local_cluster.kubeconfig, f"{prefix}-two"), lambda r: r == []
            )
            assert releases(local_cluster.kubeconfig, f"{prefix}-one") == ["web-app"]
            # The untargeted cluster's BundleDeployment goes with its release.
            await eventually(
                lambda: kubectl.table("BundleDeployment", ns),
                lambda r: sorted(x["Name"] for x in r) == ["web-app-one"],
            )

            # --- a broken fleet.yaml: the Bundle says why, its clusters keep running --------
            history = helm_history(local_cluster.kubeconfig, "web-app", f"{prefix}-one")
            good = per_cluster_namespaces(prefix, ["one", "two"])
            # A Bundle deleted by hand comes back at its next change (this one).
            kubectl.delete("Bundle", ns, "web-app")
            broken = git_daemon.commit(
                work, {"app/fleet.yaml": good + "dependsOn: [{name: nope}]\n"}, message="typo"
            )
            bundle = await eventually(
                lambda: kubectl.get("Bundle", ns, "web-app"),
                lambda o: condition(o, "Ready").get("reason") == "ErrApplied",
            )
            message = condition(bundle, "Ready")["message"]
            assert f"commit {broken[:12]} not deployed" in message and "nope" in message
            assert (bundle or {})["spec"]["commit"] == commit  # what its clusters run
            commit = git_daemon.commit(work, {"app/fleet.yaml": good}, message="fix the typo")
            await eventually(
                lambda: kubectl.get("Bundle", ns, "web-app"),
                lambda o: condition(o, "Ready").get("status") == "True",
            )
            # The fix reads as the bundle was before the typo: nothing deployed again.
            assert helm_history(local_cluster.kubeconfig, "web-app", f"{prefix}-one") == history

            # --- invalid objects: one-line conditions, the rest carries on ------------------
            kubectl.apply(
                GITREPO.format(name="bad", ns=ns, url=url, extra="").replace("1s", "soon")
            )
            kubectl.apply(
                GITREPO.format(name="typo", ns=ns, url=url, extra="  branchh: main\n").replace(
                    "env: prod", "env: none"
                )
            )
            kubectl.apply(
                CLUSTER.format(name="three", ns=ns).replace("three-kubeconfig", "missing")
            )
            bad = await eventually(
                lambda: kubectl.get("GitRepo", ns, "bad"),
                lambda o: condition(o, "Accepted").get("status") == "False",
            )
            message = condition(bad, "Ready")["message"]
            assert "spec.pollingInterval" in message and "'soon'" in message
            assert "\n" not in message
            typo = await eventually(
                lambda: kubectl.get("GitRepo", ns, "typo"),
                lambda o: bool(condition(o, "Warning")),
            )
            assert "spec.branchh: unknown field" in condition(typo, "Warning")["message"]
            assert "did you mean 'branch'" in condition(typo, "Warning")["message"]
            three = await eventually(
                lambda: kubectl.get("Cluster", ns, "three"),
                lambda o: condition(o, "Accepted").get("status") == "False",
            )
            assert f"{ns}/missing does not exist" in condition(three, "Ready")["message"]
            # Applied without the unknown field (its deploy is its own business).
            assert condition(typo, "Accepted")["status"] == "True"
            kubectl.delete("GitRepo", ns, "typo")
            kubectl.delete("GitRepo", ns, "bad")
            kubectl.delete("Cluster", ns, "three")

            # --- a second controller, or Fleet's, is refused --------------------------------
            with pytest.raises(ControllerRefused, match="controller-a"):
                async with running_controller(kubeconfig, fl.control, ns, "controller-b"):
                    pass
            applies_before = ctl.requests["POST"]
        assert applies_before > 0

        fleet_ns = f"fleet-{uuid.uuid4().hex[:6]}"
        create_namespace(management_cluster, fleet_ns)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "fleet-controller-leader-election-shard"},
            "spec": {"holderIdentity": "fleet", "leaseDurationSeconds": 300, "renewTime": now},
        }
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{fleet_ns}/leases"
        management_cluster.request("POST", lease_path, lease)
        try:
            with pytest.raises(ControllerRefused, match="Fleet's controller is running"):
                async with running_controller(kubeconfig, fl.control, ns, "controller-c"):
                    pass
        finally:
            management_cluster.request(
                "DELETE", f"{lease_path}/fleet-controller-leader-election-shard"
            )

        # --- restart: status rebuilt, nothing redeploys -------------------------------------
        history = helm_history(local_cluster.kubeconfig, "web-app", f"{prefix}-one")
        kubectl.patch_status("GitRepo", ns, "web", None)
        assert "status" not in (kubectl.get("GitRepo", ns, "web") or {})
        async with running_controller(kubeconfig, fl.control, ns, "controller-d"):
            web = await eventually(
                lambda: kubectl.get("GitRepo", ns, "web"),
                lambda o: (
                    (o or {}).get("status", {}).get("display", {}).get("readyBundleDeployments")
                    == "1/1"
                    and condition(o, "Ready").get("status") == "True"
                ),
            )
            assert (web or {})["status"]["commit"] == commit
            await asyncio.sleep(3)
            assert helm_history(local_cluster.kubeconfig, "web-app", f"{prefix}-one") == history

            # --- `kubectl delete gitrepo` uninstalls ----------------------------------------
            kubectl.delete("GitRepo", ns, "web")
            await eventually(lambda: kubectl.get("GitRepo", ns, "web"), lambda o: o is None)
            assert releases(local_cluster.kubeconfig, f"{prefix}-one") == []
            assert kubectl.table("Bundle", ns) == []
            assert kubectl.table("BundleDeployment", ns) == []
    finally:
        await fl.cleanup()
        await fl.worker.stop()


POLICY = """\
apiVersion: fleet.cattle.io/v1alpha1
kind: Policy
metadata: {{name: {name}, namespace: {ns}}}
requireServiceAccount: true
gitRepo: {{defaultServiceAccount: {account}}}
"""


@pytest.mark.timeout(600)
async def test_policies_and_gitreporestrictions_through_the_api(
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    management_cluster: LocalCluster,
) -> None:
    """Policy and GitRepoRestriction objects take the path `flotilla apply -f` takes into
    the workspace's registry; a bad or conflicting one gets a one-line condition and changes
    nothing; deleting one removes it."""
    fl = await management_flotilla(temporal_client, task_queue, tmp_path, management_cluster)
    ns = fl.namespace
    kubectl = Kubectl.for_kubeconfig(management_cluster.kubeconfig)
    try:
        async with running_controller(management_cluster.kubeconfig, fl.control, ns, "ctl-p"):
            kubectl.apply(
                POLICY.format(name="team", ns=ns, account="deployer")
                + "---\n"
                + "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepoRestriction\n"
                f"metadata: {{name: namespaces, namespace: {ns}}}\n"
                "allowedTargetNamespaces: [apps]\n"
                "allowedTargetNamespaceSelector: {matchLabels: {team: a}}\n"
            )
            snapshot = await fl.eventually(
                lambda: fl.control.registry(ns),
                lambda s: len(s.policies) == 1 and len(s.restrictions) == 1,
            )
            (policy,) = snapshot.policies
            assert policy.require_service_account and policy.git_repo is not None
            assert policy.git_repo.default_service_account == "deployer"
            (restriction,) = snapshot.restrictions
            assert restriction.allowed_target_namespaces == ["apps"]
            assert restriction.allowed_target_namespace_selector is not None
            accepted = await eventually(
                lambda: kubectl.get("Policy", ns, "team"),
                lambda o: condition(o, "Accepted").get("status") == "True",
            )
            assert (accepted or {})["status"]["appliedDigest"]
            columns = set(row(kubectl.table("GitRepoRestriction", ns), "namespaces"))
            assert {"Default-ServiceAccount", "Allowed-ServiceAccounts"} <= columns

            # A misspelt field and a conflicting default: refused with one line, not applied.
            kubectl.apply(
                "apiVersion: fleet.cattle.io/v1alpha1\nkind: Policy\n"
                f"metadata: {{name: typo, namespace: {ns}}}\nallowedServiceAcounts: [x]\n"
            )
            kubectl.apply(POLICY.format(name="zz-other", ns=ns, account="admin"))
            for name, message in (
                ("typo", f"policy {ns}/typo: allowedServiceAcounts: unknown field; did you mean"),
                ("zz-other", "defaultServiceAccount 'admin' conflicts with 'deployer'"),
            ):
                obj = await eventually(
                    lambda name=name: kubectl.get("Policy", ns, name),
                    lambda o: condition(o, "Accepted").get("status") == "False",
                )
                text = condition(obj, "Accepted")["message"]
                assert message in text and "\n" not in text, text
            snapshot = await fl.control.registry(ns)
            assert [p.metadata.name for p in snapshot.policies] == ["team"]

            # Deleting objects removes them from the workspace.
            for kind, name in (("Policy", "team"), ("GitRepoRestriction", "namespaces")):
                kubectl.delete(kind, ns, name)
            await fl.eventually(
                lambda: fl.control.registry(ns),
                lambda s: not s.policies and not s.restrictions,
            )
            for kind, name in (("Policy", "typo"), ("Policy", "zz-other")):
                kubectl.delete(kind, ns, name)
                await eventually(lambda k=kind, n=name: kubectl.get(k, ns, n), lambda o: o is None)
    finally:
        await fl.cleanup()
        await fl.worker.stop()


HELMOP = """\
apiVersion: fleet.cattle.io/v1alpha1
kind: HelmOp
metadata: {{name: {name}, namespace: {ns}}}
spec:
  helm: {{repo: "{url}", chart: app, version: "{version}", releaseName: {name}}}
  targets:
  - {{clusterName: one, namespace: {target}}}
"""


@pytest.mark.timeout(900)
async def test_helmops_through_the_api(
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    tools_on_path: list[Path],
    local_cluster: LocalCluster,
    management_cluster: LocalCluster,
) -> None:
    """A HelmOp object deploys its chart as `flotilla apply -f` would, follows a changed
    version, shows Fleet's status (`version`, ready counts, conditions) in `get helmops`,
    has its Bundle and BundleDeployment written and counted in its Cluster, refuses
    valuesFiles in one line, and uninstalls on delete (its Bundle objects with it)."""
    fl = await management_flotilla(temporal_client, task_queue, tmp_path, management_cluster)
    ns = fl.namespace
    kubectl = Kubectl.for_kubeconfig(management_cluster.kubeconfig)
    target = f"t{uuid.uuid4().hex[:6]}-one"
    create_secret(
        management_cluster, ns, "one-kubeconfig", {"value": local_cluster.kubeconfig.read_text()}
    )
    helm = locate("helm")
    sources = [write_chart(tmp_path / "src", "app", v) for v in ("1.0.0", "1.1.0")]
    try:
        with serve_charts(tmp_path / "repo", sources, helm) as server:
            async with running_controller(management_cluster.kubeconfig, fl.control, ns, "ctl-h"):
                kubectl.apply(CLUSTER.format(name="one", ns=ns))
                web = HELMOP.format(
                    name="web", ns=ns, url=server.url, version="1.0.0", target=target
                )
                kubectl.apply(web)
                rows = await eventually(
                    lambda: kubectl.table("HelmOp", ns),
                    lambda r: (
                        row(r, "web").get("BundleDeployments-Ready") == "1/1"
                        and row(r, "web").get("Status") == ""
                    ),
                )
                assert row(rows, "web") == {
                    "Name": "web",
                    "Repo": server.url,
                    "Chart": "app",
                    "Version": "1.0.0",
                    "BundleDeployments-Ready": "1/1",
                    "Status": "",
                    **{k: v for k, v in row(rows, "web").items() if k == "Age"},
                }
                obj = kubectl.get("HelmOp", ns, "web")
                assert obj is not None
                status = obj["status"]
                assert (status["readyClusters"], status["desiredReadyClusters"]) == (1, 1)
                assert status["display"]["state"] == "" and status["display"]["error"] is False
                assert condition(obj, "Ready")["status"] == "True"
                assert condition(obj, "Polled")["type"] == "Polled"
                assert FINALIZER in obj["metadata"]["finalizers"]
                assert releases(local_cluster.kubeconfig, target) == ["web"]
                # Its bundle has a Bundle and a BundleDeployment, as a GitRepo's do (labelled
                # with the HelmOp, as Fleet labels them), and the Cluster counts it.
                bundle = await eventually(
                    lambda: kubectl.get("Bundle", ns, "web"),
                    lambda o: condition(o, "Ready").get("status") == "True",
                )
                assert (bundle or {})["metadata"]["labels"] == {
                    "fleet.cattle.io/fleet-helm-name": "web"
                }
                await eventually(
                    lambda: kubectl.table("BundleDeployment", ns),
                    lambda r: [x["Name"] for x in r] == ["web-one"] and r[0]["Deployed"] == "Yes",
                )
                await eventually(
                    lambda: kubectl.table("Cluster", ns),
                    lambda r: row(r, "one").get("Bundles-Ready") == "1/1",
                )

                # A new version in the spec is deployed, and the status follows.
                kubectl.apply(web.replace('version: "1.0.0"', 'version: "1.1.0"'))
                await eventually(
                    lambda: kubectl.get("HelmOp", ns, "web"),
                    lambda o: (
                        (o or {}).get("status", {}).get("version") == "1.1.0"
                        and condition(o, "Ready").get("status") == "True"
                    ),
                )
                info = local_cluster.request(
                    "GET", f"/api/v1/namespaces/{target}/configmaps/web-info"
                )
                assert info["data"]["chartVersion"] == "1.1.0"
                assert len(helm_history(local_cluster.kubeconfig, "web", target)) == 2

                # valuesFiles have no files to be read from: one line, nothing else stops.
                kubectl.apply(
                    "apiVersion: fleet.cattle.io/v1alpha1\nkind: HelmOp\n"
                    f"metadata: {{name: files, namespace: {ns}}}\n"
                    f'spec:\n  helm: {{repo: "{server.url}", chart: app,\n'
                    "    valuesFiles: [prod.yaml]}\n"
                )
                bad = await eventually(
                    lambda: kubectl.get("HelmOp", ns, "files"),
                    lambda o: condition(o, "Accepted").get("status") == "False",
                )
                assert condition(bad, "Accepted")["message"] == (
                    f"helmop {ns}/files: spec.helm.valuesFiles: ['prod.yaml']: an object in the "
                    "API has no files beside it; put the values in spec.helm.values"
                )

                # Delete: the release is uninstalled before the object goes.
                kubectl.delete("HelmOp", ns, "web")
                kubectl.delete("HelmOp", ns, "files")
                await eventually(lambda: kubectl.get("HelmOp", ns, "web"), lambda o: o is None)
                assert releases(local_cluster.kubeconfig, target) == []
                assert kubectl.table("Bundle", ns) == []
                assert kubectl.table("BundleDeployment", ns) == []
    finally:
        await fl.cleanup()
        await fl.worker.stop()
        with contextlib.suppress(Exception):
            local_cluster.request("DELETE", f"/api/v1/namespaces/{target}")


@pytest.mark.timeout(600)
async def test_a_bundle_rolled_out_in_shards_has_a_bundledeployment_per_cluster(
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
    tools_on_path: list[Path],
    local_cluster: LocalCluster,
    management_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
) -> None:
    """A bundle on more clusters than the shard size keeps its clusters in its shards; its
    Bundle, BundleDeployments and Clusters show them all, and a re-target removes one."""
    fl = await management_flotilla(temporal_client, task_queue, tmp_path, management_cluster)
    ns = fl.namespace
    kubectl = Kubectl.for_kubeconfig(management_cluster.kubeconfig)
    names = ["one", "two", "three"]
    prefix = f"t{uuid.uuid4().hex[:6]}"
    url = git_daemon.create_repo(
        repo_name, {"app/fleet.yaml": per_cluster_namespaces(prefix, names), "app/cm.yaml": CM}
    )
    for name in names:
        create_secret(
            management_cluster,
            ns,
            f"{name}-kubeconfig",
            {"value": local_cluster.kubeconfig.read_text()},
        )
    try:
        async with running_controller(
            management_cluster.kubeconfig, fl.control, ns, "controller-s", bundle_shard_size=2
        ):
            kubectl.apply("---\n".join(CLUSTER.format(name=n, ns=ns) for n in names))
            kubectl.apply(GITREPO.format(name="web", ns=ns, url=url, extra=""))
            deployments = await eventually(
                lambda: kubectl.table("BundleDeployment", ns),
                lambda r: (
                    sorted(x["Name"] for x in r) == ["web-app-one", "web-app-three", "web-app-two"]
                    and all(x["Deployed"] == "Yes" for x in r)
                ),
            )
            assert {x["Status"] for x in deployments} == {""}
            # Sharded indeed: the bundle's own status lists no cluster, its two shards do.
            own = await fl.control.bundle_status(ns, "web-app")
            assert (own.shards, own.clusters) == (2, [])
            listed = await fl.control.bundle_status(ns, "web-app", clusters=True)
            assert sorted(c.cluster for c in listed.clusters) == sorted(names)
            for name in names:
                deployment = kubectl.get("BundleDeployment", ns, f"web-app-{name}") or {}
                assert deployment["spec"]["deploymentID"]
                assert (
                    deployment["status"]["appliedDeploymentID"]
                    == (deployment["spec"]["deploymentID"])
                )
                assert releases(local_cluster.kubeconfig, f"{prefix}-{name}") == ["web-app"]
            await eventually(
                lambda: kubectl.table("Bundle", ns),
                lambda r: row(r, "web-app").get("BundleDeployments-Ready") == "3/3",
            )
            await eventually(
                lambda: kubectl.table("Cluster", ns),
                lambda r: all(row(r, n).get("Bundles-Ready") == "1/1" for n in names),
            )

            # A cluster leaves the targets: its BundleDeployment goes with its release.
            kubectl.label("Cluster", ns, "three", {"env": "dev"})
            await eventually(
                lambda: kubectl.table("BundleDeployment", ns),
                lambda r: sorted(x["Name"] for x in r) == ["web-app-one", "web-app-two"],
            )
            await eventually(
                lambda: releases(local_cluster.kubeconfig, f"{prefix}-three"), lambda r: r == []
            )
            assert releases(local_cluster.kubeconfig, f"{prefix}-one") == ["web-app"]
            kubectl.delete("GitRepo", ns, "web")
            await eventually(lambda: kubectl.get("GitRepo", ns, "web"), lambda o: o is None)
            assert kubectl.table("BundleDeployment", ns) == []
    finally:
        await fl.cleanup()
        await fl.worker.stop()
