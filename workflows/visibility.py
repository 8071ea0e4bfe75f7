"""flotilla's custom search attributes: one list, used to register them and to upsert them."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

GITREPO = SearchAttributeKey.for_keyword("FlotillaGitRepo")
BUNDLE = SearchAttributeKey.for_keyword("FlotillaBundle")
COMMIT = SearchAttributeKey.for_keyword("FlotillaCommit")
STATE = SearchAttributeKey.for_keyword("FlotillaState")
CLUSTER = SearchAttributeKey.for_keyword("FlotillaCluster")
KIND = SearchAttributeKey.for_keyword("FlotillaKind")
READY = SearchAttributeKey.for_int("FlotillaReady")
DESIRED = SearchAttributeKey.for_int("FlotillaDesired")

ALL = (GITREPO, BUNDLE, COMMIT, STATE, CLUSTER, KIND, READY, DESIRED)

# The names Temporal's CLI and operator API use for the value types above.
_TYPE_NAMES = {"KEYWORD": "Keyword", "INT": "Int"}


def registrations() -> dict[str, str]:
    """``{name: type}`` for `temporal server start-dev --search-attribute` and the operator API."""
    return {
        key.name: _TYPE_NAMES[key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")]
        for key in ALL
    }
