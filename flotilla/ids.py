"""Workflow ids and task-queue names, shared by workflows, activities, the worker and the CLI."""

from __future__ import annotations

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


def objectwatch_workflow_id(namespace: str, cluster: str) -> str:
    return f"objectwatch/{namespace}/{cluster}"
