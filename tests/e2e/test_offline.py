"""A cluster whose agent never connected shows Offline instead of stalling the rollout (its
deploy waits, nothing is scheduled on its queue), and deploys once its agent serves the queue
and beats."""

from __future__ import annotations

import contextlib
import uuid
from concurrent.futures import ThreadPoolExecutor

from temporalio.worker import Worker

from activities.content import FileContentStore
from activities.deploy import DeployActivities
from activities.secrets import FileSecretStore, kubeconfig_secret_name
from devenv.cluster import LocalCluster
from devenv.gitserver import GitDaemon
from flotilla.agents import NEVER_CONNECTED
from flotilla.ids import bundle_workflow_id, cluster_task_queue
from flotilla.models import GitRepo, load_fleet_objects
from tests.e2e.harness import Flotilla, activity_calls, gitrepo_yaml, helm_history
from workflows.registry_models import AgentHeartbeat

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {k: v}\n"


async def test_unserved_cluster_is_offline_and_catches_up_when_its_agent_comes(
    flotilla: Flotilla, local_cluster: LocalCluster, git_daemon: GitDaemon, repo_name: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    ns = flotilla.namespace
    fleet = (
        f"defaultNamespace: {prefix}-default\n"
        "rolloutStrategy: {maxUnavailable: 1}\n"
        "targetCustomizations:\n"
        f"  - {{clusterName: online, namespace: {prefix}-online}}\n"
        f"  - {{clusterName: agent, namespace: {prefix}-agent}}\n"
    )
    url = git_daemon.create_repo(repo_name, {"app/fleet.yaml": fleet, "app/cm.yaml": CM})
    kubeconfig = local_cluster.kubeconfig.read_text()
    try:
        await flotilla.control.add_cluster(ns, "online", kubeconfig)
        # Agent mode: the central worker does not serve this cluster's queue.
        await flotilla.control.add_cluster(ns, "agent", None)
        await flotilla.worker.refresh_clusters()
        assert flotilla.worker.cluster_queues == [cluster_task_queue(ns, "online")]
        (gitrepo,), _ = load_fleet_objects(
            gitrepo_yaml(ns, "gone", url, targets=[{"clusterSelector": {}}]), file="g.yaml"
        )
        assert isinstance(gitrepo, GitRepo)
        # The 3 s switch of the old schedule-to-start timeout: never read for this cluster,
        # which waits for its agent's first beat instead of failing.
        await flotilla.control.apply_gitrepo(
            gitrepo, cluster_schedule_to_start_seconds=3, retry_seconds=5
        )
        bundle = await flotilla.eventually(
            lambda: flotilla.control.bundle_status(ns, "gone-app"),
            lambda s: (
                {c.cluster: c.state for c in s.clusters} == {"online": "Ready", "agent": "Offline"}
            ),
        )
        (agent,) = [c for c in bundle.clusters if c.cluster == "agent"]
        assert NEVER_CONNECTED in agent.message, agent
        calls, _ = await activity_calls(flotilla.client, bundle_workflow_id(ns, "gone-app"))
        assert not [c for c in calls if c.task_queue == cluster_task_queue(ns, "agent")]

        # The agent starts: same activities, its own credentials, only its own queue.
        agent_secrets = FileSecretStore(flotilla.config.workdir / "agent-secrets")
        agent_secrets.put(ns, kubeconfig_secret_name("agent"), {"value": kubeconfig})
        activities = DeployActivities(
            agent_secrets,
            FileContentStore(flotilla.settings.content_dir),
            flotilla.config.workdir / "agent",
        )
        threads = ThreadPoolExecutor(4, "agent")  # the agent's own, as `flotilla agent` has
        async with Worker(
            flotilla.client,
            task_queue=cluster_task_queue(ns, "agent"),
            activities=[
                activities.deploy_bundle,
                activities.wait_ready,
                activities.remove_deployment,
            ],
            activity_executor=threads,
        ):
            # Its first beat (as `flotilla agent` sends) releases the held deploy.
            await flotilla.control.agent_heartbeat(
                ns, AgentHeartbeat(name="agent", interval_seconds=60)
            )
            await flotilla.eventually(
                lambda: flotilla.control.gitrepo_status(ns, "gone"),
                lambda s: s.state == "Ready" and s.ready_bundle_deployments == "2/2",
                timeout=90,
            )
        threads.shutdown()
        history = helm_history(local_cluster.kubeconfig, "gone-app", f"{prefix}-agent")
        assert [h["revision"] for h in history] == [1]
    finally:
        for name in ("online", "agent", "default"):
            with contextlib.suppress(Exception):
                local_cluster.request("DELETE", f"/api/v1/namespaces/{prefix}-{name}")
