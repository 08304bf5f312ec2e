# The command surface of the project: CI workflows call these targets, so every
# CI step can be reproduced locally. `make` alone lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
# Stamps make the environment refresh only when the lock files change.
# Hooks and scripts find the project's tools first.
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(PATH)
PY_STAMP := $(VENV)/.synced
NODE_STAMP := node_modules/.synced

.PHONY: help install lint test test-fast test-slow act-pr act-deploy demo bench render validate graph lock clean

help: ## list the targets
	@echo "Targets:"
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(PY_STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

$(NODE_STAMP): package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(PY_STAMP) $(NODE_STAMP) ## create/refresh .venv and node_modules from the lock files

lock: ## re-resolve requirements.lock from pyproject.toml (then commit it)
	$(BIN)/uv pip compile pyproject.toml --all-extras --python-version 3.11 --no-annotate --no-header -q -o requirements.lock

lint: install ## pre-commit on every file (ruff, YAML/JSON, secrets, ASL, workflows)
	$(BIN)/pre-commit run --all-files --show-diff-on-failure

# The pull-request workflow runs lint and the fast tests; make test runs that workflow under act
# instead of a second copy of its steps, then the slow tests, then the deploy workflow.
test: install act-pr test-slow act-deploy ## everything: PR workflow (lint, fast tests, dry run), slow tests, deploy workflow

test-fast: install ## unit and functional tests only (what the pull-request workflow runs)
	$(BIN)/pytest -m "not slow"

test-slow: install ## the end-to-end tests on the local cloud
	$(BIN)/pytest -m slow

act-pr: install ## run .github/workflows/pr.yml locally with act; every job must succeed
	$(BIN)/python -m pipeline.actrun pull_request

act-deploy: install ## run the push workflow (deploy.yml) with act against a local cloud
	$(BIN)/python -m pipeline.actrun push

demo: install ## run the retraining story on the embedded local cloud
	$(BIN)/mlops demo

bench: install ## benchmarks (BENCH_RUNS=N, BENCH_MAKE_TEST_RUNS=N); writes bench/results.json and .md
	$(BIN)/python -m pipeline.bench

clean: ## remove the environments and caches
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
