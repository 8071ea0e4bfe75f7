"""The diff activity's name and request (``flotilla diff``); its result is the core's
``DeploymentDiff``."""

from __future__ import annotations

from activities.deploy_models import DeployRequest

DIFF_DEPLOYMENT = "diff_deployment"


class DiffRequest(DeployRequest):
    """Compare one planned bundle deployment with what runs on its cluster; nothing changes
    (the deploy's request: the same rendering; ``previous_release`` and the waits unused)."""
