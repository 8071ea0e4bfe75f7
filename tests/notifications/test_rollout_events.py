"""A real rollout tells a real receiver: a GitRepo on the local cluster, two partitions, two
commits; the webhook receiver gets each event of each commit once, in words, with the link,
and the bundle workflow itself sends nothing for it."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType

from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.ids import bundle_workflow_id, notification_workflow_id
from tests.e2e.conftest import prefix
from tests.e2e.harness import Flotilla, gitrepo_yaml, per_cluster_namespaces
from tests.e2e.test_rollout import CM, register
from tests.notifications.test_delivery import HMAC_KEY, Receiver, check_signed, free_port, until

__all__ = ["prefix"]  # the fixture, used by name


async def test_a_rollout_sends_started_partitions_and_ready_once_per_commit(
    flotilla: Flotilla,
    local_cluster: LocalCluster,
    git_daemon: GitDaemon,
    repo_name: str,
    prefix: str,
) -> None:
    ns = flotilla.namespace
    receiver = Receiver(free_port())
    await receiver.start()
    flotilla.control.secrets.put(
        ns, "hook-secret", {"address": receiver.url("/hook"), "token": HMAC_KEY}
    )
    await flotilla.control.apply_text(
        f"""\
apiVersion: notifications.flotilla.dev/v1alpha1
kind: Provider
metadata: {{name: hook, namespace: {ns}}}
spec: {{type: webhook, secretRef: {{name: hook-secret}}}}
---
apiVersion: notifications.flotilla.dev/v1alpha1
kind: Alert
metadata: {{name: rollouts, namespace: {ns}}}
spec:
  providerRef: {{name: hook}}
  eventKinds: [RolloutStarted, PartitionDone, BundleReady, ErrApplied]
  eventSources: [{{kind: GitRepo, name: roll}}]
""",
        file="notify.yaml",
    )
    clusters = ["c1", "c2", "c3", "c4"]
    part = {c: "p1" if c in ("c1", "c2") else "p2" for c in clusters}
    await register(flotilla, local_cluster, {c: {"part": part[c]} for c in clusters})
    fleet = per_cluster_namespaces(prefix, clusters) + (
        "rolloutStrategy:\n  maxUnavailable: 1\n  partitions:\n"
        + "".join(
            f"    - name: {p}\n      clusterSelector: {{matchLabels: {{part: {p}}}}}\n"
            for p in ("p1", "p2")
        )
    )
    url = git_daemon.create_repo(
        repo_name, {"app/fleet.yaml": fleet, "app/cm.yaml": CM.format(name="cfg", version=1)}
    )
    try:
        await flotilla.control.apply_text(
            gitrepo_yaml(ns, "roll", url, targets=[{"clusterSelector": {}}]), file="g.yaml"
        )
        first = await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "roll"),
            lambda s: s.state == "Ready" and s.ready_bundle_deployments == "4/4",
            timeout=240,
        )
        second = git_daemon.commit(
            git_daemon.working_copy(repo_name),
            {"app/cm.yaml": CM.format(name="cfg", version=2)},
            message="version 2",
        )
        await flotilla.eventually(
            lambda: flotilla.control.gitrepo_status(ns, "roll"),
            lambda s: s.commit == second and s.state == "Ready",
            timeout=240,
        )

        def ready_for(commit: str) -> bool:
            return any(
                m.json()["event"] == "BundleReady" and m.json()["commit"] == commit
                for m in receiver.on("/hook")
            )

        await until(lambda: ready_for(first.commit) and ready_for(second), "BundleReady")
    finally:
        await receiver.stop()
        await flotilla.client.get_workflow_handle(notification_workflow_id(ns)).terminate()

    got = [
        (m.json()["commit"], m.json()["event"], m.json()["detail"]) for m in receiver.on("/hook")
    ]
    for commit in (first.commit, second):
        of_commit = sorted(g[1:] for g in got if g[0] == commit)
        assert of_commit == [
            ("BundleReady", ""),
            ("PartitionDone", "partition p1"),
            ("PartitionDone", "partition p2"),
            ("RolloutStarted", ""),
        ], got
    assert len({m.key for m in receiver.on("/hook")}) == len(got) == 8
    ready = next(m.json() for m in receiver.on("/hook") if m.json()["event"] == "BundleReady")
    check_signed(receiver.on("/hook")[0])
    assert ready["message"].startswith(f"bundle roll-app of gitrepo {ns}/roll: Ready on all")
    assert ready["clusters"] == clusters
    assert ready["temporalUI"].endswith(f"/workflows/bundle%2F{ns}%2Froll-app")
    # The bundle sends nothing to the notification workflow: its only signals are the
    # reports to its GitRepo (whose count test_rollout.py bounds per deployment).
    history = await flotilla.client.get_workflow_handle(
        bundle_workflow_id(ns, "roll-app")
    ).fetch_history()
    targets = {
        e.signal_external_workflow_execution_initiated_event_attributes.workflow_execution.workflow_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
    }
    assert targets == {f"gitrepo/{ns}/roll"}, targets
