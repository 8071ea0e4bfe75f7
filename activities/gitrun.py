"""Network git commands with a time bound: ls-remote, fetch, push.

Not GitPython's ``execute(kill_after_timeout=...)``: that arms a non-daemon
``threading.Timer`` per command and cancels it only when the command returns normally. An
activity cancelled mid-command (the SDK raises ``CancelledError`` inside the activity's
thread, as it does to every running activity when a worker shuts down) left the timer waiting
out the whole bound (50 s for ls-remote, 500 s for a fetch): the interpreter's exit joins
non-daemon threads, so the worker could not exit (seen in CI: the worker's 20 s shutdown
bound fired with that timer the only thread left), and the timer would then have killed
whatever process had been given the command's pid by then. ``subprocess.run`` kills and
reaps the child on any exception, its timeout included, with no thread of its own.

Errors are GitPython's ``GitCommandError``, built as GitPython builds them (the command with
passwords masked, the exit status, git's stderr), so callers read them as before.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

import git
from git.util import remove_password_if_present


def run_git(
    args: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> str:
    """Run ``args`` (``["git", ...]``) in ``cwd`` with the worker's environment plus ``env``
    and git's messages in English (``LC_ALL=C``, as GitPython runs git, so that callers can
    recognise them); return its standard output without the final newline.

    Raises ``git.GitCommandError`` when git fails or runs past ``timeout`` seconds (then it
    is killed)."""
    command = list(args)
    environ = {**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **(env or {})}
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise git.GitCommandError(
            remove_password_if_present(command),
            "timeout",
            f"did not complete in {timeout:g} s",
        ) from None
    if done.returncode != 0:
        raise git.GitCommandError(
            remove_password_if_present(command),
            done.returncode,
            done.stderr.removesuffix("\n"),
            done.stdout.removesuffix("\n"),
        )
    return done.stdout.removesuffix("\n")
