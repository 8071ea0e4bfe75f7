"""``flotilla diff``'s workflow: its name, input and report."""

from __future__ import annotations

from pydantic import BaseModel, Field

from flotilla.livediff import DeploymentDiff
from flotilla.models import GitRepoSpec, HelmOpSpec
from workflows.registry_models import ClusterSnapshot

DIFF_WORKFLOW = "DiffWorkflow"


class DiffInput(BaseModel):
    """Diff a GitRepo's bundles (or one) at a commit against their clusters (or one).

    ``spec`` and ``clusters`` are read by the CLI from the GitRepo and the registry; the
    commit is the branch's head (or ``spec.revision``) unless ``commit`` names another ref.
    With ``helmop`` (a HelmOp's spec; ``gitrepo`` is then its name), the chart version the
    spec resolves to now is diffed instead, as the HelmOp's one bundle.
    """

    namespace: str
    gitrepo: str
    spec: GitRepoSpec | None = None
    helmop: HelmOpSpec | None = Field(default=None, exclude_if=lambda value: value is None)
    clusters: ClusterSnapshot
    commit: str = ""
    bundle: str = ""
    cluster: str = ""
    # Diffs run at once, at most (a diff is one helm render and a few API calls per object).
    concurrency: int = 8


class DiffReport(BaseModel):
    """Per targeted cluster: changes (or none); errors are one line each."""

    commit: str = ""
    deployments: list[DeploymentDiff] = Field(default_factory=list)
    # Bundles of the commit that cannot deploy, or clusters diffs cannot reach: one line each.
    errors: list[str] = Field(default_factory=list)
