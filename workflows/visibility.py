"""flotilla's custom search attributes as typed keys, for the workflows that upsert them.

The names and types are listed once, in ``flotilla.ids.SEARCH_ATTRIBUTES``: the dev server
and installs register them from there, and the CLI reads them by name.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

from flotilla.errors import one_line
from flotilla.ids import (
    MAX_MESSAGE_SEARCH_ATTRIBUTE,
    SA_BUNDLE,
    SA_CLUSTER,
    SA_COMMIT,
    SA_DESIRED,
    SA_GITREPO,
    SA_KIND,
    SA_MESSAGE,
    SA_READY,
    SA_READY_DEPLOYMENTS,
    SA_REPO,
    SA_STATE,
    SEARCH_ATTRIBUTES,
)

GITREPO = SearchAttributeKey.for_keyword(SA_GITREPO)
BUNDLE = SearchAttributeKey.for_keyword(SA_BUNDLE)
COMMIT = SearchAttributeKey.for_keyword(SA_COMMIT)
STATE = SearchAttributeKey.for_keyword(SA_STATE)
CLUSTER = SearchAttributeKey.for_keyword(SA_CLUSTER)
KIND = SearchAttributeKey.for_keyword(SA_KIND)
READY = SearchAttributeKey.for_int(SA_READY)
DESIRED = SearchAttributeKey.for_int(SA_DESIRED)
MESSAGE = SearchAttributeKey.for_keyword(SA_MESSAGE)
REPO = SearchAttributeKey.for_keyword(SA_REPO)
READY_DEPLOYMENTS = SearchAttributeKey.for_keyword(SA_READY_DEPLOYMENTS)


def registrations() -> dict[str, str]:
    """``{name: type}`` for `temporal server start-dev --search-attribute` and the operator API."""
    return dict(SEARCH_ATTRIBUTES)


def message_value(message: str) -> str:
    """A status message as a Keyword value: one line, cut to fit."""
    return one_line(message, MAX_MESSAGE_SEARCH_ATTRIBUTE)
