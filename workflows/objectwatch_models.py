"""The name the object watcher's workflow is started by; its input is the watch activity's
request (``activities.objectwatch_models.WatchObjectsRequest``)."""

from __future__ import annotations

OBJECTWATCH_WORKFLOW = "ObjectWatchWorkflow"
