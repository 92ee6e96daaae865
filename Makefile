# ODX Relay — every target sets itself up first (make setup is idempotent).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PY          := $(VENV)/bin/python
APT_PACKAGES := python3-qgis qgis-providers qgis redis-server python3-venv python3-gdal gdal-bin xvfb
STAMP       := $(VENV)/.installed
NODEODX     := var/nodeodx
export QT_QPA_PLATFORM := offscreen

.PHONY: help setup lint test test-quick demo devnodes run package bench faults clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP) ## Install apt packages, make .venv (with QGIS's Python), install the project, build the real NodeODX
	@bash scripts/build_nodeodx.sh $(NODEODX)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh "$(VENV)" $(APT_PACKAGES)
	@touch $@

lint: setup ## The linter (ruff, rules in pyproject.toml) over the whole tree
	$(VENV)/bin/ruff check .

test: setup lint ## The linter, then the whole test suite headless (pytest)
	$(PY) -m pytest $(PYTEST_ARGS)

test-quick: setup ## The edit-test loop: the tests not marked slow (no fuzz, scale, conformance or long server tests), under a minute
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: setup ## The main job: process the sample photos, print where the outputs are, a PNG of QGIS with them
	@command -v Xvfb >/dev/null || bash scripts/setup.sh "$(VENV)" $(APT_PACKAGES)  # a .venv made before xvfb was listed
	$(PY) -m scripts.demo

devnodes: setup ## Start two development nodes on 127.0.0.1:3001 and :3002 (Ctrl-C stops them)
	trap 'kill 0' EXIT; \
	$(VENV)/bin/odx-devnode --port 3001 --data-dir var/devnode-3001 & \
	$(VENV)/bin/odx-devnode --port 3002 --slots 2 --data-dir var/devnode-3002 & \
	wait

run: setup ## Start the relay on 127.0.0.1:3000 with the nodes listed in relay.nodes (NODES=file)
	$(VENV)/bin/odx-relay --port 3000 --nodes-file $(or $(NODES),relay.nodes) --data-dir var/relay

bench: setup ## Benchmarks, relay vs direct to a node, and streamed vs downloaded into QGIS: a table and var/bench/results.json (BENCH_ARGS=--quick)
	$(PY) -m bench $(BENCH_ARGS)

faults: setup ## The fault suite: nodes, Redis and two relay replicas under faults; a table; fails if a task is lost (FAULTS_ARGS=--quick)
	$(PY) -m scripts.faults $(FAULTS_ARGS)

package: setup ## Build the QGIS plugin zip dist/odx_relay-<version>.zip, checked against plugins.qgis.org's rules
	$(PY) -m scripts.package

clean: ## Remove the virtual environment and everything the targets wrote
	rm -rf $(VENV) var build dist *.egg-info .pytest_cache .qgis-settings
