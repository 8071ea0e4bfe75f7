"""Name, request and result of the registry activity: pydantic only, so workflows import them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from flotilla.ids import DEFAULT_NAMESPACE

# The activity's name, as the worker registers it (activities/registry.py) and the image-policy
# workflow calls it.
POLL_REGISTRY = "poll_registry"


class PollRequest(BaseModel):
    """What to ask one registry: the tag list, the digest of one tag, or both."""

    registry: str
    repository: str
    secret_name: str | None = None
    # Where ``secret_name`` lives: the GitRepo's namespace, as Fleet reads image scan secrets.
    secret_namespace: str = DEFAULT_NAMESPACE
    list_tags: bool = True
    digest_of: str | None = None


class PollResult(BaseModel):
    tags: list[str] = Field(default_factory=list)
    digest: str | None = None
    # sha256 of the tag list as the registry sent it: equal digests mean nothing changed.
    listing_digest: str = ""
    # Requests sent to the registry itself (token requests to an auth server not counted).
    requests: int = 0
    not_modified: bool = False
