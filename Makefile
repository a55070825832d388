# plp's human entry points: a thin shim over tasks.py (uv run invoke --list shows every task).
# Every target that needs Python first makes sure uv exists and the locked venv is synced.

SHELL := /bin/bash
# Recursive (=) so it is re-evaluated after `setup` installs uv with pip.
UV = $(shell command -v uv >/dev/null 2>&1 && echo uv || echo python3 -m uv)

.DEFAULT_GOAL := help
.PHONY: help setup train test test-fast lint bench

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

# --compile-bytecode: the .py files of the environment are compiled once, here (as pip does),
# not again by the first command, nor by every command where PYTHONDONTWRITEBYTECODE is set
# (~10 CPU seconds of torch, Lightning & co. per process); later syncs skip what is compiled.
setup: ## Install uv if missing and sync the locked environment (.venv)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --compile-bytecode

train: setup ## Set up, then run the offline demo (digits): train, test, report
	$(UV) run invoke train --config configs/digits.toml

test: setup ## Set up, then run lint and every test (the 15 slowest are listed at the end)
	$(UV) run invoke test

test-fast: setup ## Set up, then lint and the tests not marked slow (~2.5 min on 2 cores)
	$(UV) run invoke test --fast

lint: setup ## Set up, then run ruff and mypy
	$(UV) run invoke lint

bench: setup ## Set up, then run the benchmarks (small sizes; `uv run invoke bench --full` for all)
	$(UV) run invoke bench
