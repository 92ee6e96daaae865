# ODX Relay — every target sets itself up first (make setup is idempotent).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PY          := $(VENV)/bin/python
APT_PACKAGES := python3-qgis qgis-providers qgis redis-server python3-venv python3-gdal gdal-bin
STAMP       := $(VENV)/.installed
export QT_QPA_PLATFORM := offscreen

.PHONY: help setup test demo devnode clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP) ## Install apt packages, make .venv (with QGIS's Python) and install the project

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh "$(VENV)" $(APT_PACKAGES)
	@touch $@

test: setup ## Run the whole test suite headless (pytest)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup ## The main job: process the sample photos and print where the outputs are
	$(PY) -m scripts.demo

devnode: setup ## Start one development node on 127.0.0.1:3001 (Ctrl-C stops it)
	$(VENV)/bin/odx-devnode --port 3001 --data-dir var/devnode

clean: ## Remove the virtual environment and everything the targets wrote
	rm -rf $(VENV) var build dist *.egg-info .pytest_cache
