"""The messages of content garbage collection, I/O-free: workflows import them."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field

# The activity's name, for workflows that call it by name.
COLLECT_GARBAGE = "collect_garbage"
# The workflow that runs it, for the CLI and its schedule (they start it by name).
CONTENT_GC_WORKFLOW = "ContentGarbageWorkflow"
CONTENT_REFS_QUERY = "content_refs"
REFERENCING_WORKFLOWS = ("GitRepoWorkflow", "BundleWorkflow", "HelmOpWorkflow")
DEFAULT_GRACE = timedelta(hours=24)
QUERY_CONCURRENCY = 16
# A workflow whose worker is gone would hold a query until the RPC deadline; fail sooner.
QUERY_TIMEOUT = timedelta(seconds=30)
# The result names at most this many of the deleted digests (history stays small).
MAX_LISTED = 50


class ContentRefsRequest(BaseModel):
    """Query input; a model so fields can be added later without breaking callers."""


class ContentRefs(BaseModel):
    """The content digests a workflow holds, each once."""

    digests: list[str] = Field(default_factory=list)


class CollectGarbageRequest(BaseModel):
    grace_seconds: float = DEFAULT_GRACE.total_seconds()
    dry_run: bool = False


class CollectGarbageResult(BaseModel):
    """What a sweep found; with ``dry_run`` the deleted ones are those it would delete."""

    dry_run: bool
    workflows: int
    stored: int
    referenced: int
    recent: int
    deleted: int
    # Unreferenced and old, but written again between the listing and the delete.
    spared: int = 0
    digests: list[str] = Field(default_factory=list)
