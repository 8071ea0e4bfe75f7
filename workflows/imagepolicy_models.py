"""The messages and state of ``workflows/imagepolicy.py``, in a module of their own.

The workflow sandbox re-runs a workflow's module for every new workflow run, and building
pydantic models is most of that cost; this module is imported once, passed through.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

# What clients call the image-policy workflow's messages; workflows/imagepolicy.py registers
# them under these names.
APPROVE_UPDATE = "approve"
REJECT_UPDATE = "reject"
IMAGE_POLICY_STATUS_QUERY = "status"


class ApprovalRequest(BaseModel):
    """An approval or rejection of the update waiting in this run, by a named person."""

    by: str
    reason: str = ""


class ApprovalResult(BaseModel):
    approvals: int
    required: int
    message: str


class ImagePolicyStatusRequest(BaseModel):
    """Query input; a model so fields can be added later."""


class ImagePolicyStatus(BaseModel):
    policy_id: str
    phase: str
    image: str
    current: str
    latest_seen: str
    pending: str = ""
    approvals: list[str] = Field(default_factory=list)
    required_approvals: int = 0
    deadline: datetime | None = None
    message: str = ""
    error: str = ""


class ImagePolicyResult(BaseModel):
    """How the run ended: ``unchanged``, ``committed``, ``declined``, ``skipped`` or ``error``."""

    outcome: str
    message: str
    commit: str = ""
