"""CLI tests render with the real helm and kustomize, as the render tests do."""

from __future__ import annotations

from tests.render.conftest import render_tools

__all__ = ["render_tools"]
