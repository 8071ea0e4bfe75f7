"""Name, request and result of the object watcher, and the signal it sends bundle workflows."""

from __future__ import annotations

from pydantic import BaseModel, Field

# The activity (activities/objectwatch.py): on the central worker's watch queue for push-mode
# clusters, on an agent-mode cluster's own queue for its agent.
WATCH_OBJECTS = "watch_objects"
# BundleWorkflow's signal: objects of this bundle on ``cluster`` changed; check it now.
OBJECTS_CHANGED_SIGNAL = "objects_changed"
# A label on Helm's release records naming the bundle, so a watcher knows whom to tell.
BUNDLE_LABEL = "flotilla.dev/bundle"


class WatchObjectsRequest(BaseModel):
    """Watch what flotilla deployed on one cluster for ``run_seconds``, then return."""

    cluster_namespace: str
    cluster_name: str
    run_seconds: float = 3600.0
    # Where the watch runs: an agent-mode cluster's own queue (its agent watches with its own
    # credentials); empty for a push-mode cluster (the central worker's watch queue).
    task_queue: str = ""
    # Changes within this window reach a bundle as one signal.
    debounce_seconds: float = 1.0


class WatchObjectsResult(BaseModel):
    """How many signals went out, and which kinds were watched."""

    signals: int = 0
    kinds: list[str] = Field(default_factory=list)


class ObjectsChanged(BaseModel):
    """Some of the bundle's objects on ``cluster`` changed or went (at most five named);
    an empty ``cluster`` asks for a check of every cluster (``flotilla sync gitrepo``)."""

    cluster: str
    objects: list[str] = Field(default_factory=list)
