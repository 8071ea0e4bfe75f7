# flotilla: the two commands are `make dev` (set up + demo) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest processes for `make test` (pytest-xdist; 0: this one). The tests mostly wait on
# servers, not the CPU, so the default is one more than the cores, at most 4 (3 on the
# two-core CI machine). Each process starts its own servers on its own block of ports.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n + 1 < 4 ? n + 1 : 4 )))

.PHONY: dev dev-down install system-deps tools lint test test-unit temporal-postgres clean

## dev: install everything, build or reuse tools, start Temporal + UI, a worker, a cluster, deploy the example
dev: install tools
	$(VENV)/bin/flotilla dev up

## dev-down: stop everything `make dev` started
dev-down:
	$(VENV)/bin/flotilla dev down

## install: Debian packages (docker-registry, git, openssl, postgresql) and the Python virtualenv
install: system-deps $(STAMP)

system-deps:
	@hack/install-system-deps.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## tools: build (first time, with Go) or reuse kube-apiserver, controller-manager, etcd, kwok, helm (4), helm3 (upgrade test), kustomize, sops, age-keygen, temporal-server, temporal-sql-tool, temporal-ui-server
tools: $(STAMP)
	$(PY) -m devenv.tools

## lint: ruff, mypy and the import boundaries
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy flotilla workflows activities starters devenv runtime controller worker.py
	$(VENV)/bin/lint-imports

## test: the whole suite, lint included (what CI runs), in TEST_WORKERS processes (default:
## cores + 1, at most 4; TEST_WORKERS=0 runs it in this one)
test: install tools lint
	$(VENV)/bin/pytest -p no:cacheprovider --durations=40 -n $(TEST_WORKERS) --dist loadgroup

## test-unit: the pure core only, in seconds
test-unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit -q

## temporal-postgres: Temporal as production runs it (PostgreSQL, 4 shards) with its UI, until Ctrl-C
temporal-postgres: install tools
	$(PY) -m devenv.temporal

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
