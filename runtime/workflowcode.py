"""Workflow modules compiled once per worker process, however often the sandbox imports them.

Temporal's workflow sandbox executes a workflow's module afresh for every workflow run it
loads (a new run, or one replayed after leaving the cache), on the worker's event loop. The
module's code comes from its cached bytecode when there is any; without it (the source tree
under ``PYTHONDONTWRITEBYTECODE``, as in development and the benchmarks) Python compiles the
source every time: ~25 ms of ``workflows/bundle.py`` per run against ~3 ms from bytecode,
during which the event loop answers nothing (heartbeats, polls, other activations). So the
worker keeps each workflow module's code object in memory, keyed by the source's digest,
and writes no file. With bytecode on disk (the container image compiles it at build time)
the loader reads that as before and this cache is never asked.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import sys
import threading
from collections.abc import Iterable, Sequence
from types import CodeType, ModuleType

# Compiled workflow modules, by source path and the source's sha256: an edited file (a
# worker restarted on new code re-imports nothing, but a test may) is compiled again.
_CODE: dict[tuple[str, bytes], CodeType] = {}
_LOCK = threading.Lock()


class _CompiledOnceLoader(importlib.machinery.SourceFileLoader):
    """A source loader whose compile step is shared by every import of the same source."""

    def source_to_code(  # type: ignore[override]
        self, data: bytes, path: str, *, _optimize: int = -1
    ) -> CodeType:
        key = (str(path), hashlib.sha256(data).digest())
        with _LOCK:
            code = _CODE.get(key)
        if code is None:
            code = super().source_to_code(data, path, _optimize=_optimize)
            with _LOCK:
                _CODE[key] = code
        return code


class _WorkflowCodeFinder:
    """Finds the named packages' modules as usual, then loads them with the shared compile."""

    def __init__(self, packages: Iterable[str]) -> None:
        self.packages = frozenset(packages)

    def _covers(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.packages)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not self._covers(fullname):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return spec
        if spec.origin is None:
            return spec
        spec.loader = _CompiledOnceLoader(fullname, spec.origin)
        return spec


def compile_workflows_once(packages: Iterable[str]) -> None:
    """From now on, modules of ``packages`` are compiled at most once per source version in
    this process (idempotent: a second call adds the packages not yet covered)."""
    for finder in sys.meta_path:
        if isinstance(finder, _WorkflowCodeFinder):
            finder.packages = finder.packages | frozenset(packages)
            return
    sys.meta_path.insert(0, _WorkflowCodeFinder(packages))


def compiled_count() -> int:
    """How many distinct sources were compiled through the cache (for tests)."""
    with _LOCK:
        return len(_CODE)
