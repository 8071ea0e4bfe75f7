"""The worker's environment contract (issue 10): the only names the install files may set.

It is what ``flotilla.settings.settings_from_env`` reads (tests/unit/test_settings.py checks
that the two agree).
"""

from __future__ import annotations

from flotilla.settings import ENVIRONMENT

ENV_CONTRACT = ENVIRONMENT
# Variables that name a file the worker reads: they must point into a mounted volume.
FILE_VARIABLES = frozenset(name for name in ENV_CONTRACT if name.endswith("_FILE"))
