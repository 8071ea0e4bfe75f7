"""HelmOps end to end: real Helm repositories (http.server + `helm repo index`) and a real OCI
registry, the Temporal dev server, a real API server with kwok, helm itself.

Two "clusters" are two registry entries of the one local cluster, each deploying into its own
namespace (a target per cluster), as tests/e2e/test_rollout.py does.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.cluster import LocalCluster
from devenv.registry import BASIC_PASSWORD, BASIC_USER, LocalRegistry, htpasswd_auth
from flotilla.errors import FlotillaError
from flotilla.ids import bundle_workflow_id, helmop_schedule_id, helmop_workflow_id
from starters.diff import EXIT_CHANGES, EXIT_SAME, print_report, run_diff
from starters.tables import describe_helmop, helmop_table
from tests.charts import ChartServer, package_chart, serve_charts, write_chart
from tests.conftest import CHART_PASSWORD, CHART_USER, locate
from tests.e2e.harness import (
    Flotilla,
    activity_calls,
    helm_history,
    history_text,
    releases,
    table_row,
)


def helmop_yaml(workspace: str, name: str, helm: dict[str, str], **spec: object) -> str:
    lines = [
        "apiVersion: fleet.cattle.io/v1alpha1",
        "kind: HelmOp",
        f"metadata: {{name: {name}, namespace: {workspace}}}",
        "spec:",
        "  helm: {" + ", ".join(f"{k}: {v!r}" for k, v in helm.items()) + "}",
    ]
    # Flow-style YAML is JSON.
    lines += [f"  {key}: {json.dumps(value)}" for key, value in spec.items()]
    return "\n".join(lines) + "\n"


# Without targets a HelmOp goes to the ClusterGroup "default", as in Fleet (none here).
EVERY_CLUSTER = [{"clusterSelector": {}}]


def per_cluster_targets(prefix: str, clusters: dict[str, str]) -> list[dict[str, object]]:
    """One target per cluster (by name), deploying into ``<prefix>-<cluster>``."""
    return [{"name": c, "clusterName": c, "namespace": f"{prefix}-{c}"} for c in clusters]


async def register(flotilla: Flotilla, local_cluster: LocalCluster, labels: dict[str, str]) -> None:
    """Register one registry entry per name of the one local cluster, labelled part=<value>."""
    kubeconfig = local_cluster.kubeconfig.read_text()
    for name, part in labels.items():
        await flotilla.control.add_cluster(
            flotilla.namespace, name, kubeconfig, labels={"part": part}
        )
    await flotilla.worker.refresh_clusters()


def chart_version_on(local_cluster: LocalCluster, namespace: str, release: str) -> str:
    cm = local_cluster.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{release}-info")
    return str(cm["data"]["chartVersion"])


def add_versions(server: ChartServer, tmp: Path, versions: list[str], *, name: str = "app") -> None:
    """Package more versions of the chart into the served repository and index it again."""
    helm = locate("helm")
    for version in versions:
        package_chart(write_chart(tmp / f"src-{version}", name, version), server.root, helm)
    subprocess.run([helm, "repo", "index", str(server.root), "--url", server.url], check=True)


async def test_a_constraint_follows_the_repository_through_partitions(
    flotilla: Flotilla, local_cluster: LocalCluster, tmp_path: Path, prefix: str
) -> None:
    ns = flotilla.namespace
    clusters = {"one": "p1", "two": "p2"}
    await register(flotilla, local_cluster, clusters)
    sources = [write_chart(tmp_path / "src", "app", v) for v in ("1.0.0", "1.1.0", "2.0.0")]
    with serve_charts(tmp_path / "repo", sources, locate("helm")) as server:
        await flotilla.control.apply_text(
            helmop_yaml(
                ns,
                "web",
                {"repo": server.url, "chart": "app", "version": "^1.0", "releaseName": "web"},
                pollingInterval="2s",
                targets=per_cluster_targets(prefix, clusters),
                rolloutStrategy={
                    "maxUnavailable": 1,
                    "partitions": [
                        {"name": p, "clusterSelector": {"matchLabels": {"part": p}}}
                        for p in ("p1", "p2")
                    ],
                },
            ),
            file="helmop.yaml",
        )
        first = await flotilla.eventually(
            lambda: flotilla.control.helmop_status(ns, "web"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "2/2",
            timeout=240,
        )
        # The newest version ^1.0 allows, not the newest there is.
        assert first.version == "1.1.0" and first.version_seen_at is not None
        for cluster in clusters:
            assert chart_version_on(local_cluster, f"{prefix}-{cluster}", "web") == "1.1.0"
        row = table_row(helmop_table(await flotilla.control.list_helmops(ns)), "web")
        assert row.split()[1:5] == [server.url, "app", "1.1.0", "2/2"], row

        # A newer match and a newer non-match: the schedule's next poll takes only the match.
        add_versions(server, tmp_path, ["1.2.0", "3.0.0"])
        second = await flotilla.eventually(
            lambda: flotilla.control.helmop_status(ns, "web"),
            lambda s: s.version == "1.2.0" and s.state == "Ready",
            timeout=240,
        )
        assert second.version_seen_at is not None and first.version_seen_at is not None
        assert second.version_seen_at > first.version_seen_at
        for cluster in clusters:
            assert chart_version_on(local_cluster, f"{prefix}-{cluster}", "web") == "1.2.0"
            history = helm_history(local_cluster.kubeconfig, "web", f"{prefix}-{cluster}")
            assert [h["revision"] for h in history] == [1, 2]  # upgraded in place
        # Partition p1 upgraded and Ready before p2 started (maxUnavailable 1), as a GitRepo's
        # bundle would be.
        calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "web"))
        deploys = [c for c in calls if c.name == "deploy_bundle"]
        first_digest = deploys[0].input["bundle_digest"]
        upgrade = [c for c in deploys if c.input["bundle_digest"] != first_digest]
        assert [c.input["cluster_name"] for c in upgrade] == ["one", "two"]
        one_ready = [
            c.completed
            for c in calls
            if c.found_ready and c.input["deployment_id"] == upgrade[0].input["deployment_id"]
        ]
        assert one_ready and one_ready[0] is not None and one_ready[0] <= upgrade[1].scheduled
        text = describe_helmop(second)
        assert "Wanted:      ^1.0" in text and "Version:     1.2.0" in text

        # `sync helmop` asks the repository at once.
        assert await flotilla.control.sync_helmop(ns, "web") == (
            f"helmop {ns}/web synced at chart version 1.2.0"
        )
        schedule = flotilla.client.get_schedule_handle(helmop_schedule_id(ns, "web"))
        assert (await schedule.describe()).info.num_actions >= 1

        assert await flotilla.control.delete_helmop(ns, "web") == f"helmop {ns}/web deleted"
        for cluster in clusters:
            out = subprocess.run(
                [
                    "helm",
                    "list",
                    "-q",
                    "-n",
                    f"{prefix}-{cluster}",
                    "--kubeconfig",
                    str(local_cluster.kubeconfig),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            assert out.stdout.split() == []
        ids = [s.id async for s in await flotilla.client.list_schedules()]
        assert helmop_schedule_id(ns, "web") not in ids


@pytest.fixture
def oci_registry(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A registry that wants BASIC_USER / BASIC_PASSWORD, with helm logged in to push to it:
    yields ``oci://HOST/charts`` and the environment helm pushes with."""
    helm = locate("helm")
    env = {**os.environ, "HELM_CONFIG_HOME": str(tmp_path / "helm-config")}
    with LocalRegistry(tmp_path / "registry", auth=htpasswd_auth(tmp_path / "auth")) as registry:
        subprocess.run(
            [
                helm,
                "registry",
                "login",
                registry.host,
                "--username",
                BASIC_USER,
                "--password-stdin",
                "--plain-http",
            ],
            input=BASIC_PASSWORD,
            text=True,
            check=True,
            capture_output=True,
            env=env,
        )
        yield f"oci://{registry.host}/charts", env


def push_chart(reference: str, env: dict[str, str], tmp: Path, version: str) -> None:
    helm = locate("helm")
    package = package_chart(write_chart(tmp / f"oci-{version}", "app", version), tmp / "pkg", helm)
    subprocess.run(
        [helm, "push", str(package), reference, "--plain-http"],
        check=True,
        capture_output=True,
        env=env,
    )


async def test_an_oci_chart_with_credentials_from_the_secret_store(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    tmp_path: Path,
    prefix: str,
    oci_registry: tuple[str, dict[str, str]],
) -> None:
    ns = flotilla.namespace
    reference, env = oci_registry
    for version in ("0.9.0", "1.0.0", "1.1.0-rc.1"):
        push_chart(reference, env, tmp_path, version)
    await register(flotilla, local_cluster, {"one": "p1"})
    flotilla.control.secrets.put(
        ns, "oci-creds", {"username": BASIC_USER, "password": BASIC_PASSWORD}
    )
    await flotilla.control.apply_text(
        helmop_yaml(
            ns,
            "oci",
            {"repo": f"{reference}/app", "version": ">=0.5.0", "releaseName": "oci"},
            helmSecretName="oci-creds",
            namespace=f"{prefix}-oci",
            targets=EVERY_CLUSTER,
        ),
        file="helmop.yaml",
    )
    status = await flotilla.eventually(
        lambda: flotilla.control.helmop_status(ns, "oci"),
        lambda s: s.state == "Ready" and s.ready_bundle_deployments == "1/1",
        timeout=240,
    )
    assert status.version == "1.0.0"  # the pre-release is not a match of >=0.5.0
    assert chart_version_on(local_cluster, f"{prefix}-oci", "oci") == "1.0.0"
    # No pollingInterval: a new version is taken when asked (`flotilla sync helmop`).
    push_chart(reference, env, tmp_path, "1.1.0")
    assert await flotilla.control.sync_helmop(ns, "oci") == (
        f"helmop {ns}/oci synced at chart version 1.1.0"
    )
    await flotilla.eventually(
        lambda: flotilla.control.helmop_status(ns, "oci"),
        lambda s: s.state == "Ready" and s.version == "1.1.0",
        timeout=240,
    )
    assert chart_version_on(local_cluster, f"{prefix}-oci", "oci") == "1.1.0"
    # The password reached the registry from the secret store, never a workflow's history.
    for workflow_id in (helmop_workflow_id(ns, "oci"), bundle_workflow_id(ns, "oci")):
        history = await flotilla.client.get_workflow_handle(workflow_id).fetch_history()
        assert BASIC_PASSWORD not in history_text(history)


async def test_bad_sources_keep_what_runs_and_say_why_in_one_line(
    flotilla: Flotilla, local_cluster: LocalCluster, tmp_path: Path, prefix: str
) -> None:
    ns = flotilla.namespace
    await register(flotilla, local_cluster, {"one": "p1"})
    target = f"{prefix}-bad"
    sources = [write_chart(tmp_path / "src", "app", "1.0.0")]
    private = [write_chart(tmp_path / "private-src", "app", "1.0.0")]
    with (
        serve_charts(tmp_path / "repo", sources, locate("helm")) as server,
        serve_charts(
            tmp_path / "private",
            private,
            locate("helm"),
            username=CHART_USER,
            password=CHART_PASSWORD,
        ) as locked,
    ):

        def apply(name: str, helm: dict[str, str], **spec: object) -> str:
            return helmop_yaml(
                ns,
                name,
                {"releaseName": name, **helm},
                namespace=target,
                targets=EVERY_CLUSTER,
                **spec,
            )

        await flotilla.control.apply_text(
            apply("bad", {"repo": server.url, "chart": "app", "version": "1.0.0"}), file="h.yaml"
        )
        await flotilla.eventually(
            lambda: flotilla.control.helmop_status(ns, "bad"),
            lambda s: s.state == "Ready" and s.version == "1.0.0",
            timeout=240,
        )

        async def fails_with(helm: dict[str, str], words: str, **spec: object) -> str:
            await flotilla.control.apply_text(apply("bad", helm, **spec), file="h.yaml")
            status = await flotilla.eventually(
                lambda: flotilla.control.helmop_status(ns, "bad"),
                lambda s: s.state == "ChartError" and words in s.message,
                timeout=120,
            )
            assert "\n" not in status.message and status.version == "1.0.0"
            assert "still serving 1.0.0" in status.message, status.message
            return status.message

        await fails_with(
            {"repo": server.url, "chart": "app", "version": "^5"}, "no version matches '^5'"
        )
        await fails_with({"repo": server.url, "chart": "nope"}, "no chart 'nope' in the repository")
        message = await fails_with({"repo": locked.url, "chart": "app"}, "set spec.helmSecretName")
        assert CHART_PASSWORD not in message
        flotilla.control.secrets.put(ns, "wrong", {"username": CHART_USER, "password": "nope"})
        await fails_with(
            {"repo": locked.url, "chart": "app"}, "credentials of secret", helmSecretName="wrong"
        )
        await fails_with(
            {"repo": locked.url, "chart": "app"}, "not found", helmSecretName="missing"
        )
        down = server.url  # stopped below: a registry that is down
    message = await fails_with({"repo": down, "chart": "app"}, "Connection refused")
    assert "check" in message  # the fix for an unreachable chart source
    # Through all of it the first release stayed, untouched.
    history = helm_history(local_cluster.kubeconfig, "bad", target)
    assert [h["revision"] for h in history] == [1]
    assert chart_version_on(local_cluster, target, "bad") == "1.0.0"

    # A HelmOp that never found a version deploys nothing.
    await flotilla.control.apply_text(
        helmop_yaml(
            ns,
            "never",
            {"repo": down, "chart": "app", "releaseName": "never"},
            namespace=target,
            targets=EVERY_CLUSTER,
        ),
        file="h.yaml",
    )
    status = await flotilla.eventually(
        lambda: flotilla.control.helmop_status(ns, "never"),
        lambda s: s.state == "ChartError",
        timeout=120,
    )
    assert status.message.endswith("nothing deployed)") and status.version == ""
    assert status.ready_bundle_deployments == "0/0" and status.bundles == []


async def test_depends_on_waits_for_another_helmops_bundle(
    flotilla: Flotilla, local_cluster: LocalCluster, tmp_path: Path, prefix: str
) -> None:
    ns = flotilla.namespace
    await register(flotilla, local_cluster, {"one": "p1"})
    sources = [write_chart(tmp_path / "src", "app", "1.0.0")]
    with serve_charts(tmp_path / "repo", sources, locate("helm")) as server:

        def helmop(name: str, **spec: object) -> str:
            helm = {"repo": server.url, "chart": "app", "releaseName": name}
            return helmop_yaml(
                ns, name, helm, namespace=f"{prefix}-{name}", targets=EVERY_CLUSTER, **spec
            )

        # base starts paused, so app visibly waits for it.
        await flotilla.control.apply_text(helmop("base", paused=True), file="h.yaml")
        await flotilla.control.apply_text(
            helmop("app", dependsOn=[{"name": "base"}]), file="h.yaml"
        )
        await flotilla.eventually(
            lambda: flotilla.control.helmop_status(ns, "app"),
            lambda s: s.state == "WaitingForDependency",
            timeout=120,
        )
        await flotilla.control.apply_text(helmop("base", paused=False), file="h.yaml")
        for name in ("base", "app"):
            await flotilla.eventually(
                lambda name=name: flotilla.control.helmop_status(ns, name),  # type: ignore[misc]
                lambda s: s.state == "Ready" and s.ready_bundle_deployments == "1/1",
                timeout=240,
            )
    base_calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "base"))
    app_calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "app"))
    base_ready = min(c.completed for c in base_calls if c.found_ready and c.completed)
    (app_deploy,) = [c for c in app_calls if c.name == "deploy_bundle"]
    assert app_deploy.scheduled >= base_ready


async def test_diff_helmop_shows_what_the_newest_allowed_version_would_change(
    flotilla: Flotilla, local_cluster: LocalCluster, tmp_path: Path, prefix: str
) -> None:
    ns = flotilla.namespace
    clusters = {"one": "p1"}
    await register(flotilla, local_cluster, clusters)
    sources = [write_chart(tmp_path / "src", "app", "1.0.0")]
    with serve_charts(tmp_path / "repo", sources, locate("helm")) as server:
        # No pollingInterval: the version is chosen when applied or synced, never polled.
        await flotilla.control.apply_text(
            helmop_yaml(
                ns,
                "web",
                {"repo": server.url, "chart": "app", "version": "^1.0", "releaseName": "web"},
                targets=per_cluster_targets(prefix, clusters),
            ),
            file="helmop.yaml",
        )
        await flotilla.eventually(
            lambda: flotilla.control.helmop_status(ns, "web"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "1/1",
            timeout=240,
        )
        same = await run_diff(flotilla.control, "helmop", ns, "web")
        out = io.StringIO()
        assert print_report(same, out) == EXIT_SAME, out.getvalue()
        assert f"cluster {ns}/one: no change (1 bundles at 1.0.0)" in out.getvalue()

        add_versions(server, tmp_path, ["1.1.0", "2.0.0"])
        report = await run_diff(flotilla.control, "helmop", ns, "web")
        out = io.StringIO()
        assert print_report(report, out) == EXIT_CHANGES, out.getvalue()
        text = out.getvalue()
        assert f"cluster {ns}/one: bundle web at 1.1.0" in text
        assert f"changed ConfigMap {prefix}-one/web-info" in text
        assert '+  chartVersion: "1.1.0"' in text or "+  chartVersion: 1.1.0" in text, text
        # Nothing was deployed: the HelmOp and the cluster are still at 1.0.0.
        assert chart_version_on(local_cluster, f"{prefix}-one", "web") == "1.0.0"
        assert (await flotilla.control.helmop_status(ns, "web")).version == "1.0.0"

        with pytest.raises(FlotillaError, match=f"helmop {ns}/nope not found"):
            await run_diff(flotilla.control, "helmop", ns, "nope")
        with pytest.raises(FlotillaError, match="--commit is for GitRepos"):
            await run_diff(flotilla.control, "helmop", ns, "web", commit="main")
        await flotilla.control.delete_helmop(ns, "web")


async def test_depends_on_by_selector_waits_for_the_labelled_bundle(
    flotilla: Flotilla, local_cluster: LocalCluster, tmp_path: Path, prefix: str
) -> None:
    ns = flotilla.namespace
    await register(flotilla, local_cluster, {"one": "p1"})
    sources = [write_chart(tmp_path / "src", "app", "1.0.0")]
    with serve_charts(tmp_path / "repo", sources, locate("helm")) as server:

        def helmop(name: str, **spec: object) -> str:
            helm = {"repo": server.url, "chart": "app", "releaseName": name}
            return helmop_yaml(
                ns, name, helm, namespace=f"{prefix}-{name}", targets=EVERY_CLUSTER, **spec
            )

        # Nothing carries the label yet: app waits, saying so, and deploys nothing.
        selector = {"selector": {"matchLabels": {"tier": "base"}}}
        await flotilla.control.apply_text(helmop("app", dependsOn=[selector]), file="h.yaml")
        waiting = await flotilla.eventually(
            lambda: flotilla.control.helmop_status(ns, "app"),
            lambda s: s.state == "WaitingForDependency" and "selects no bundle" in s.message,
            timeout=120,
        )
        assert waiting.message == (
            "spec.dependsOn: selector {'matchLabels': {'tier': 'base'}} selects no bundle of "
            "the namespace yet; the chart waits for one"
        )
        # base appears paused with the label: app now waits for its readiness.
        await flotilla.control.apply_text(
            helmop("base", paused=True, labels={"tier": "base"}), file="h.yaml"
        )
        await flotilla.eventually(
            lambda: flotilla.control.helmop_status(ns, "app"),
            lambda s: s.state == "WaitingForDependency" and "selects no bundle" not in s.message,
            timeout=120,
        )
        assert releases(local_cluster.kubeconfig, f"{prefix}-app") == []
        await flotilla.control.apply_text(
            helmop("base", paused=False, labels={"tier": "base"}), file="h.yaml"
        )
        for name in ("base", "app"):
            await flotilla.eventually(
                lambda name=name: flotilla.control.helmop_status(ns, name),  # type: ignore[misc]
                lambda s: s.state == "Ready" and s.ready_bundle_deployments == "1/1",
                timeout=240,
            )
    base_calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "base"))
    app_calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "app"))
    base_ready = min(c.completed for c in base_calls if c.found_ready and c.completed)
    (app_deploy,) = [c for c in app_calls if c.name == "deploy_bundle"]
    assert app_deploy.scheduled >= base_ready
