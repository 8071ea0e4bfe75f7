"""Workflow ids and task-queue names, shared by workflows, activities, the worker and the CLI."""

from __future__ import annotations

import zlib

# Fleet's namespace for objects that name none (the local workspace).
DEFAULT_NAMESPACE = "fleet-local"

# ---------------------------------------------------------------------------------------------
# Task queues
# ---------------------------------------------------------------------------------------------

# Workflows, git and planning activities run here; per-cluster work runs on the push queues
# (push mode) or on the cluster's own queue (agent mode).
CONTROL_TASK_QUEUE = "flotilla"

# Push-mode clusters share this many queues, whatever the fleet's size: one poller per cluster
# did not scale (issue 12). A cluster always lands on the same one (a stable hash of its name).
PUSH_TASK_QUEUES = 4


def push_task_queues(control_queue: str) -> list[str]:
    """The shared queues the central worker serving ``control_queue`` polls for push-mode
    clusters' deploy activities (named after the control queue, so workers never mix)."""
    return [f"{control_queue}.push.{index}" for index in range(PUSH_TASK_QUEUES)]


def watch_task_queue(control_queue: str) -> str:
    """The queue of the push-mode clusters' object watchers: long-running async activities,
    each holding a slot for as long as it runs, so apart from the deploy activities."""
    return f"{control_queue}.watch"


def cluster_task_queue(namespace: str, cluster: str) -> str:
    """The task queue of one agent-mode cluster, polled by that cluster's agent only."""
    return f"cluster.{namespace}.{cluster}"


def deploy_task_queue(control_queue: str, namespace: str, cluster: str, *, agent: bool) -> str:
    """Where a cluster's deploy activities go: its own queue when an agent serves it, else one
    of the central worker's shared push queues, picked by a hash that never changes."""
    if agent:
        return cluster_task_queue(namespace, cluster)
    index = zlib.crc32(f"{namespace}/{cluster}".encode()) % PUSH_TASK_QUEUES
    return push_task_queues(control_queue)[index]


def cluster_of_task_queue(queue: str) -> tuple[str, str]:
    """(namespace, cluster) of a ``cluster_task_queue`` name (both are DNS labels, no dots)."""
    _, namespace, cluster = queue.split(".", 2)
    return namespace, cluster


# ---------------------------------------------------------------------------------------------
# Workflow ids: stable and readable, so a person can find a workflow by what it manages
# ---------------------------------------------------------------------------------------------


def gitrepo_workflow_id(namespace: str, name: str) -> str:
    return f"gitrepo/{namespace}/{name}"


def bundle_workflow_id(namespace: str, bundle: str) -> str:
    return f"bundle/{namespace}/{bundle}"


def bundle_shard_workflow_id(bundle_workflow: str, index: int) -> str:
    """One shard of a sharded bundle (docs/orchestration.md, "Shards")."""
    return f"{bundle_workflow}/shard-{index}"


def registry_workflow_id(namespace: str) -> str:
    return f"registry/{namespace}"


def helmop_workflow_id(namespace: str, name: str) -> str:
    return f"helmop/{namespace}/{name}"


def helmop_schedule_id(namespace: str, name: str) -> str:
    """The schedule polling a HelmOp's chart versions (its runs are named after it)."""
    return f"helmop-poll/{namespace}/{name}"


# One content garbage collection at a time, fleet-wide (the CLI and its schedule share it).
CONTENT_GC_WORKFLOW_ID = "content-gc"


# ---------------------------------------------------------------------------------------------
# Search attributes: what the Temporal UI filters on and the CLI's tables are read from
# ---------------------------------------------------------------------------------------------

SA_GITREPO = "FlotillaGitRepo"
SA_BUNDLE = "FlotillaBundle"
SA_COMMIT = "FlotillaCommit"
SA_STATE = "FlotillaState"
SA_CLUSTER = "FlotillaCluster"
SA_KIND = "FlotillaKind"
SA_READY = "FlotillaReady"
SA_DESIRED = "FlotillaDesired"
# The one-line reason next to the state, the GitRepo's repository URL and its bundle
# deployments ready ("3/4"): with them `flotilla get` and the UI's columns show the same table.
SA_MESSAGE = "FlotillaMessage"
SA_REPO = "FlotillaRepo"
SA_READY_DEPLOYMENTS = "FlotillaReadyDeployments"

# Each with the type Temporal registers it as (`temporal operator search-attribute create`).
SEARCH_ATTRIBUTES: dict[str, str] = {
    SA_GITREPO: "Keyword",
    SA_BUNDLE: "Keyword",
    SA_COMMIT: "Keyword",
    SA_STATE: "Keyword",
    SA_CLUSTER: "Keyword",
    SA_KIND: "Keyword",
    SA_READY: "Int",
    SA_DESIRED: "Int",
    SA_MESSAGE: "Keyword",
    SA_REPO: "Keyword",
    SA_READY_DEPLOYMENTS: "Keyword",
}
# A Keyword value is at most 2 KB in Temporal; a status line is cut well below that.
MAX_MESSAGE_SEARCH_ATTRIBUTE = 240


def objectwatch_workflow_id(namespace: str, cluster: str) -> str:
    return f"objectwatch/{namespace}/{cluster}"


def notification_workflow_id(namespace: str) -> str:
    """The namespace's notification config and outbox (Providers, Alerts, queued messages)."""
    return f"notifications/{namespace}"
