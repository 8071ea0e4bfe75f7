"""Notification config end to end on real components (dev server, in-process worker, the local
cluster, git daemon, HTTP receivers): a namespace without a config costs its GitRepos no
`notify` signal; Alerts select GitRepos by their labels; ClusterOffline comes once per
cluster, from the registry; Providers and Alerts are listed, described and deleted by the CLI;
each bundle deployment's state is exported as Fleet's fleet_bundledeployment_state."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, Histogram
from temporalio.api.enums.v1 import EventType

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.ids import gitrepo_workflow_id, notification_workflow_id, registry_workflow_id
from runtime.metrics import FleetStateCollector
from starters.cli import main
from tests.e2e.conftest import prefix
from tests.e2e.harness import Flotilla, history_text
from tests.e2e.test_rollout import CM, register
from tests.notifications.test_delivery import HMAC_KEY, Receiver, free_port, until
from workflows.gitrepo import NOTIFY_CONFIGURED_PATCH
from workflows.registry_models import ClustersSeen

__all__ = ["prefix"]  # the fixture, used by name


def gitrepo(ns: str, url: str) -> str:
    return (
        "apiVersion: fleet.cattle.io/v1alpha1\nkind: GitRepo\n"
        f"metadata: {{name: pay, namespace: {ns}, labels: {{team: pay}}}}\n"
        f"spec:\n  repo: {url}\n  branch: main\n  pollingInterval: 1s\n"
        "  targets: [{clusterSelector: {}}]\n"
    )


def notification_config(ns: str) -> str:
    provider = (
        "apiVersion: notifications.flotilla.dev/v1alpha1\nkind: Provider\n"
        "metadata: {{name: {name}, namespace: {ns}}}\n"
        "spec: {{type: webhook, secretRef: {{name: {name}-secret}}}}\n"
    )
    alert = (
        "apiVersion: notifications.flotilla.dev/v1alpha1\nkind: Alert\n"
        "metadata: {{name: {name}, namespace: {ns}}}\n"
        "spec:\n  providerRef: {{name: {provider}}}\n"
        "  eventKinds: [RolloutStarted, BundleReady, ClusterOffline]\n"
        "  eventSources: {sources}\n"
    )
    return "---\n".join(
        [
            provider.format(name="hook", ns=ns),
            provider.format(name="other", ns=ns),
            alert.format(
                name="by-label",
                ns=ns,
                provider="hook",
                sources="[{kind: GitRepo, matchLabels: {team: pay}}, {kind: Cluster, name: 'p*'}]",
            ),
            alert.format(
                name="not-us",
                ns=ns,
                provider="other",
                sources="[{kind: GitRepo, matchLabels: {team: other}}]",
            ),
        ]
    )


async def notify_signals(flotilla: Flotilla, workflow_id: str) -> int:
    history = await flotilla.client.get_workflow_handle(workflow_id).fetch_history()
    target = notification_workflow_id(flotilla.namespace)
    signalled = EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
    return sum(
        1
        for e in history.events
        if e.event_type == signalled
        and (
            e.signal_external_workflow_execution_initiated_event_attributes.workflow_execution
        ).workflow_id
        == target
    )


async def test_notifications_only_when_configured_by_labels_and_once_per_offline_cluster(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = flotilla.namespace
    await register(flotilla, local_cluster, {"p1": {"env": "prod"}})
    files: dict[str, str | bytes] = {}
    for d in ("a", "b"):
        files[f"{d}/fleet.yaml"] = f"defaultNamespace: {prefix}-{d}\n"
        files[f"{d}/cm.yaml"] = CM.format(name=d, version=1)
    url = git_daemon.create_repo(repo_name, files)
    await flotilla.control.apply_text(gitrepo(ns, url), file="gitrepo.yaml")
    first = await flotilla.eventually(
        lambda: flotilla.control.gitrepo_status(ns, "pay"),
        lambda s: s.state == "Ready" and s.ready_bundle_deployments == "2/2",
        timeout=240,
    )

    # 1. No notification config: the rollout's events were dropped without a signal.
    gitrepo_id = gitrepo_workflow_id(ns, "pay")
    assert await notify_signals(flotilla, gitrepo_id) == 0
    history = await flotilla.client.get_workflow_handle(gitrepo_id).fetch_history()
    assert NOTIFY_CONFIGURED_PATCH in history_text(history)

    # 7. describe gitrepo shows since when each bundle is in its state.
    assert all(b.since is not None for b in first.bundles), first.bundles

    # 5. fleet_bundledeployment_state: one series set per deployment, 1 for its state.
    # Read one deployment a page: the pages (bounded, so the query stays under Temporal's
    # payload limit at any fleet size) add up to every deployment once.
    collector = FleetStateCollector(
        flotilla.client,
        Histogram("t_rollouts", "t", ["namespace"], registry=CollectorRegistry()),
        functools.partial(flotilla.worker.read_deployments, page=1),
    )
    await collector.refresh()
    samples = [
        s
        for family in collector.collect()
        if family.name == "fleet_bundledeployment_state"
        for s in family.samples
        if s.labels["namespace"] == ns
    ]
    ones = sorted(
        (s.labels["bundle"], s.labels["cluster_name"], s.labels["state"])
        for s in samples
        if s.value == 1
    )
    assert ones == [("pay-a", "p1", "Ready"), ("pay-b", "p1", "Ready")], ones
    assert {s.labels["repo"] for s in samples} == {"pay"}
    assert {s.labels["commit"] for s in samples} == {first.commit}
    assert len(samples) == 2 * 7  # Fleet's seven states per deployment

    # 2. With a config: the GitRepo (selected by its labels) is heard, the other alert not.
    hook, other = Receiver(free_port()), Receiver(free_port())
    await hook.start()
    await other.start()
    try:
        for name, receiver in (("hook", hook), ("other", other)):
            flotilla.control.secrets.put(
                ns, f"{name}-secret", {"address": receiver.url("/"), "token": HMAC_KEY}
            )
        await flotilla.control.apply_text(notification_config(ns), file="notify.yaml")
        await flotilla.eventually(
            lambda: flotilla.control.registry(ns), lambda s: s.notifications, timeout=30
        )
        await asyncio.sleep(1.0)  # the registry's snapshot reaches the GitRepo
        second = git_daemon.commit(
            git_daemon.working_copy(repo_name),
            {
                "a/cm.yaml": CM.format(name="a", version=2),
                "b/cm.yaml": CM.format(name="b", version=2),
            },
            message="version 2",
        )
        await flotilla.control.sync_gitrepo(ns, "pay")

        def ready(bundle: str) -> bool:
            return any(
                m.json()["event"] == "BundleReady"
                and m.json()["commit"] == second
                and m.json()["bundle"] == bundle
                for m in hook.got
            )

        await until(lambda: ready("pay-a") and ready("pay-b"), "BundleReady of both bundles")
        assert await notify_signals(flotilla, gitrepo_id) >= 1

        # 3. The cluster goes offline (told twice): one ClusterOffline, from the registry,
        # though two bundles run on it.
        registry = flotilla.client.get_workflow_handle(registry_workflow_id(ns))
        down = ClustersSeen(seen={}, unreachable={"p1": "test: down"}, probed_at=datetime.now(UTC))
        await registry.signal("clusters_seen", down)
        await registry.signal("clusters_seen", down)
        for bundle in ("pay-a", "pay-b"):
            await flotilla.eventually(
                lambda b=bundle: flotilla.control.bundle_status(ns, b),  # type: ignore[misc]
                lambda s: [c.state for c in s.clusters] == ["Offline"],
                timeout=30,
            )
        await until(
            lambda: any(m.json()["event"] == "ClusterOffline" for m in hook.got), "ClusterOffline"
        )
        await asyncio.sleep(3.0)  # time for any per-bundle repeat to arrive
        offline = [m.json() for m in hook.got if m.json()["event"] == "ClusterOffline"]
        assert len(offline) == 1, offline
        assert offline[0]["message"] == f"cluster {ns}/p1: cluster offline (test: down)"
        assert offline[0]["clusters"] == ["p1"]
        assert not other.got, [m.json() for m in other.got]
    finally:
        await hook.stop()
        await other.stop()

    # 4. The CLI lists, describes and deletes Providers and Alerts.
    monkeypatch.setenv("TEMPORAL_ADDRESS", flotilla.client.service_client.config.target_host)
    monkeypatch.setenv("FLOTILLA_SECRETS_DIR", str(flotilla.settings.secrets_dir))
    common = ["-n", ns, "--task-queue", flotilla.config.task_queue]

    async def cli(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, [*argv, *common])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = await cli("get", "providers")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "TYPE",
        "SECRET",
        "QUEUED",
        "DELIVERED",
        "DROPPED",
        "LAST-ERROR",
    ]
    hook_row = next(line.split() for line in lines if line.startswith("hook "))
    assert hook_row[:3] == ["hook", "webhook", "hook-secret"]
    assert int(hook_row[4]) == len(hook.got)
    code, out, _ = await cli("get", "alerts")
    assert code == 0
    assert "by-label   hook" in out
    assert "GitRepo/*{team=pay},Cluster/p*" in out
    code, out, _ = await cli("get", "alerts", "-o", "yaml")
    assert code == 0 and "kind: Alert" in out
    code, out, _ = await cli("describe", "provider", "hook")
    assert code == 0 and "Alerts:      by-label" in out
    code, out, _ = await cli("describe", "alert", "not-us")
    assert code == 0 and "Provider:    other" in out
    code, _, err = await cli("delete", "provider", "hook")
    assert code == 1
    assert err.strip().endswith(
        "provider hook is used by alert(s) by-label: delete or re-point them first"
    )
    code, _, err = await cli("describe", "alert", "nope")
    assert code == 1 and "alert 'nope' does not exist" in err and "\n" not in err.strip()
    code, out, _ = await cli("delete", "alert", "by-label")
    assert code == 0 and "alert by-label deleted" in out
    code, out, _ = await cli("delete", "provider", "hook")
    assert code == 0 and "provider hook deleted" in out
    code, out, _ = await cli("get", "providers")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["other"]
