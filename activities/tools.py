"""Where the external programs are (helm, kustomize, sops): resolved once, passed to renders."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from flotilla.errors import RenderError


@dataclass(frozen=True)
class ToolPaths:
    """Paths of the programs a render runs; None means "look it up on PATH when needed".

    The worker and the CLI build this from the settings (``runtime.tools.locate_tools``):
    an explicit ``FLOTILLA_<TOOL>``, else the pinned build ``make tools`` made, else PATH.
    """

    helm: str | None = None
    kustomize: str | None = None
    sops: str | None = None

    def require(self, name: str) -> str:
        """The program's path, or a RenderError that says how to get it."""
        configured: str | None = getattr(self, name)
        if configured:
            if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
                raise RenderError(
                    f"FLOTILLA_{name.upper()}={configured!r} is not an executable file; "
                    f"point it at a {name} binary or unset it"
                )
            return configured
        found = shutil.which(name)
        if found is None:
            raise RenderError(
                f"{name} not found on PATH: install it, set FLOTILLA_{name.upper()} to its "
                "path, or run `make tools` to build the pinned version"
            )
        return found


# Every tool looked up on PATH when it is needed: for tests and library use.
PATH_TOOLS = ToolPaths()
