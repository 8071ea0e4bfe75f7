"""The external programs a render runs (helm, kustomize, sops): where they are, and running one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flotilla.errors import RenderError, one_line
from flotilla.hints import Target, ending_with_fix

TOOL_TIMEOUT_SECONDS = 300
_MAX_MESSAGE = 300
# user:password@ after a scheme; kustomize also prints URLs with one slash after cleaning them
# as paths ("https:/user:pw@host").
_URL_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*:/{1,2})[^/@\s'\"]+@")
# Secrets shorter than this are not searched for in messages (they would garble them).
_MIN_REDACTED = 4


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


def tool_message(text: str, redact: Sequence[str] = ()) -> str:
    """A tool's stderr as one short line: credentials in URLs masked, ``redact`` strings hidden."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    for secret in sorted(redact, key=len, reverse=True):
        if len(secret) >= _MIN_REDACTED:
            text = text.replace(secret, "[redacted]")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = "; ".join(line.removeprefix("Error: ") for line in lines) or "no message"
    return one_line(message, _MAX_MESSAGE)


def run_tool(
    args: Sequence[str],
    *,
    what: str,
    file: str,
    env: Mapping[str, str],
    stdin: str | None = None,
    cwd: Path | None = None,
    redact: Sequence[str] = (),
    note: str = "",
    target: Target | None = None,
) -> str:
    """Run a tool and return its stdout; a failure is a one-line RenderError about ``file``.

    Secrets go in through ``stdin`` or ``env``, never ``args``; ``note`` (which secret was
    used) ends the message of a failure.
    """
    try:
        done = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            env=dict(env),
            cwd=cwd,
            timeout=TOOL_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RenderError(
            f"{what} timed out after {TOOL_TIMEOUT_SECONDS}s{note}", file=file
        ) from None
    if done.returncode != 0:
        message = tool_message(done.stderr, redact)
        if target is not None:
            room = len(file) + len(what) + len(note) + 20
            message = ending_with_fix(message, target, reserve=room)
        raise RenderError(f"{what} failed: {message}{note}", file=file)
    return done.stdout
