"""flotilla's custom search attributes as typed keys, for the workflows that upsert them.

The names and types are listed once, in ``flotilla.ids.SEARCH_ATTRIBUTES``: the dev server
and installs register them from there, and the CLI reads them by name.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributeUpdate

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


def publish_summary(
    *,
    commit: str,
    shown: str,
    state: str,
    ready: int,
    desired: int,
    ready_deployments: str,
    message: str,
    repo: str | None = None,
) -> None:
    """A GitRepo's (or HelmOp's) summary where people look: the search attributes the CLI's
    tables and the Temporal UI list, and the workflow's current details (``shown`` names the
    version: "commit abc123", "version 1.2.0")."""
    updates: list[SearchAttributeUpdate[Any]] = [
        COMMIT.value_set(commit),
        STATE.value_set(state),
        READY.value_set(ready),
        DESIRED.value_set(desired),
    ]
    if repo is not None:
        updates.append(REPO.value_set(repo))
    updates += [
        READY_DEPLOYMENTS.value_set(ready_deployments),
        MESSAGE.value_set(message_value(message)),
    ]
    workflow.upsert_search_attributes(updates)
    workflow.set_current_details(
        f"{shown}: {ready_deployments} bundle deployments ready, {state}"
        + (f" ({message})" if message else "")
    )


def publish_bundle(
    *,
    gitrepo: str,
    bundle: str,
    commit: str,
    state: str,
    message: str,
    ready: int,
    desired: int,
) -> None:
    """A bundle's summary as search attributes (what `get bundles` and the Temporal UI list);
    the same for a bundle that drives shards as for one that deploys itself."""
    workflow.upsert_search_attributes(
        [
            GITREPO.value_set(gitrepo),
            COMMIT.value_set(commit),
            STATE.value_set(state),
            MESSAGE.value_set(message_value(message)),
            READY.value_set(ready),
            DESIRED.value_set(desired),
            KIND.value_set("Bundle"),
            BUNDLE.value_set(bundle),
        ]
    )
