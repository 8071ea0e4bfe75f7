"""Find helm, kustomize and sops: an explicit setting, the pinned build, then PATH."""

from __future__ import annotations

import shutil
from pathlib import Path

from activities.tools import ToolPaths
from devenv.tools import BINARY_TO_TOOL
from flotilla.settings import ToolSettings


def locate_tools(settings: ToolSettings) -> ToolPaths:
    """Resolve each tool once; a tool found nowhere stays None and fails, with a hint, at use."""
    return ToolPaths(
        helm=_locate("helm", settings.helm, settings.tools_dir),
        kustomize=_locate("kustomize", settings.kustomize, settings.tools_dir),
        sops=_locate("sops", settings.sops, settings.tools_dir),
    )


def _locate(binary: str, explicit: Path | None, tools_dir: Path) -> str | None:
    if explicit is not None:
        return str(explicit)
    tool = BINARY_TO_TOOL.get(binary)
    if tool is not None:
        # The layout `make tools` writes (devenv/tools.py): <tools_dir>/<tool>-<version>/<bin>.
        cached = tools_dir / tool.key / binary
        if cached.is_file():
            return str(cached)
    return shutil.which(binary)
