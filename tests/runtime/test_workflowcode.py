"""Workflow modules compiled once per process: the real sandbox loads ``workflows.bundle`` for
every workflow run, and without bytecode on disk each load compiled the whole module again.

No Temporal server: ``SandboxedWorkflowRunner.prepare_workflow`` builds a sandboxed instance
exactly as a new workflow run does (the worker calls it once per workflow type at start)."""

from __future__ import annotations

import asyncio
import importlib.machinery
import sys
from pathlib import Path
from types import CodeType

import pytest
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import _Definition

import workflows
from runtime import workflowcode
from workflows.bundle import BundleWorkflow

BUNDLE_SOURCE = str(Path(workflowcode.__file__).parents[1] / "workflows" / "bundle.py")


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every real compile of a source file from now on, by path; no bytecode to read or
    write (as under PYTHONDONTWRITEBYTECODE with nothing compiled before)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    # An empty bytecode cache: whatever a developer's tree holds is not found.
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "pycache"))
    monkeypatch.setattr(workflowcode, "_CODE", {})
    # No finder from a worker an earlier test started in this process (the suite runs many
    # tests per process); each test installs its own, and the original list comes back.
    monkeypatch.setattr(
        sys,
        "meta_path",
        [f for f in sys.meta_path if not isinstance(f, workflowcode._WorkflowCodeFinder)],
    )
    seen: list[str] = []
    compile_source = importlib.machinery.SourceFileLoader.source_to_code

    def counted(
        self: importlib.machinery.SourceFileLoader, data: bytes, path: str, **kw: int
    ) -> CodeType:
        seen.append(str(path))
        return compile_source(self, data, path, **kw)

    monkeypatch.setattr(importlib.machinery.SourceFileLoader, "source_to_code", counted)
    return seen


def _load_three_runs() -> None:
    async def load() -> None:  # an instance is made on the worker's event loop
        runner = SandboxedWorkflowRunner()
        defn = _Definition.must_from_class(BundleWorkflow)
        for _ in range(3):
            runner.prepare_workflow(defn)

    asyncio.run(load())


def test_without_the_cache_the_sandbox_compiles_the_module_for_every_run(
    compiles: list[str],
) -> None:
    _load_three_runs()
    assert compiles.count(BUNDLE_SOURCE) == 3


def test_with_the_cache_the_module_is_compiled_once(compiles: list[str]) -> None:
    workflowcode.compile_workflows_once([BundleWorkflow.__module__])
    _load_three_runs()
    assert compiles.count(BUNDLE_SOURCE) == 1


def test_an_edited_source_is_compiled_again(
    compiles: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    package = tmp_path / "wfpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "flows.py"
    monkeypatch.syspath_prepend(str(tmp_path))
    workflowcode.compile_workflows_once(["wfpkg.flows"])
    loaded = []
    for text in ("VALUE = 1\n", "VALUE = 1\n", "VALUE = 2\n"):
        module.write_text(text)
        sys.modules.pop("wfpkg.flows", None)
        loaded.append(importlib.import_module("wfpkg.flows").VALUE)
    sys.modules.pop("wfpkg.flows", None)
    sys.modules.pop("wfpkg", None)
    assert loaded == [1, 1, 2]
    assert compiles.count(str(module)) == 2


def test_other_modules_load_as_before(compiles: list[str]) -> None:
    workflowcode.compile_workflows_once([BundleWorkflow.__module__])
    finder = sys.meta_path[0]
    where = list(workflows.__path__)
    assert finder.find_spec("workflows.gitrepo", where) is None
    spec = finder.find_spec("workflows.bundle", where)
    assert spec is not None and type(spec.loader).__name__ == "_CompiledOnceLoader"
