"""The settings of this process, read from the environment: the one place that reads it.

Kept apart from the stores and the Temporal client so that a command which needs only the
settings (the CLI's fast tables) does not import them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from flotilla.settings import Settings, settings_from_env


def load_settings(env: Mapping[str, str] | None = None, home: Path | None = None) -> Settings:
    """The settings of this process, from ``env`` (default ``os.environ``) and the home."""
    return settings_from_env(os.environ if env is None else env, home or Path.home())
