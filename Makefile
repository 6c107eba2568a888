# Two commands do all the set-up on a fresh Debian machine with Python 3.11:
#   make demo   — install, then run the server with embedded defaults and simulated NVRs
#   make test   — install what the tests need (Debian packages too) and run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEB_PACKAGES := ffmpeg sip-tester postgresql chromium chromium-driver
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo serve test lint bench sysdeps models clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests use; installed only when one is missing (needs root, as on CI).
sysdeps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

models: install

demo: install models
	$(BIN)/vms demo

serve: install
	$(BIN)/vms serve

test: sysdeps install models
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check .

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache
