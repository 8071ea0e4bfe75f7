"""The diff activity's name, request and result (``flotilla diff``)."""

from __future__ import annotations

from pydantic import BaseModel

from flotilla.credentials import RenderSecretRefs
from flotilla.livediff import DeploymentDiff

DIFF_DEPLOYMENT = "diff_deployment"


class DiffRequest(BaseModel):
    """Compare one planned bundle deployment with what runs on its cluster; nothing changes."""

    gitrepo: str
    bundle_name: str
    cluster_namespace: str
    cluster_name: str
    deployment_id: str
    bundle_digest: str
    options_digest: str
    render_secrets: RenderSecretRefs | None = None


__all__ = ["DIFF_DEPLOYMENT", "DeploymentDiff", "DiffRequest"]
