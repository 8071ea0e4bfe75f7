"""Workflow ids and task-queue names, shared by workflows, activities, the worker and the CLI."""

from __future__ import annotations

# Fleet's namespace for objects that name none (the local workspace).
DEFAULT_NAMESPACE = "fleet-local"

# ---------------------------------------------------------------------------------------------
# Task queues
# ---------------------------------------------------------------------------------------------

# Workflows, git and planning activities run here; per-cluster work runs on the cluster's queue.
CONTROL_TASK_QUEUE = "flotilla"


def cluster_task_queue(namespace: str, cluster: str) -> str:
    """The task queue of one registered cluster, served by the central worker (push mode) or
    by that cluster's agent."""
    return f"cluster.{namespace}.{cluster}"


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


def registry_workflow_id(namespace: str) -> str:
    return f"registry/{namespace}"


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
