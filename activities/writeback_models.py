"""Name, request and result of the write-back activity: pydantic only, so workflows import them."""

from __future__ import annotations

from pydantic import BaseModel

from activities.gitops_models import GitSource
from flotilla.imagepolicy import ImageUpdate
from flotilla.models import CommitSpec

# The activity's name, as the worker registers it (activities/writeback.py) and the image-policy
# workflow calls it.
WRITE_BACK = "write_back"


class WriteBackRequest(BaseModel):
    """Write ``update`` into the markers of scan ``scan`` in ``files`` (repo-relative paths)."""

    source: GitSource
    gitrepo: str
    bundle: str
    scan: str
    files: list[str]
    update: ImageUpdate
    # What the markers said before, for the commit message ("1.2.3").
    previous: str
    commit: CommitSpec | None = None


class WriteBackResult(BaseModel):
    commit: str = ""  # empty: the branch already had these values
    changed_lines: int = 0
    attempts: int = 0
