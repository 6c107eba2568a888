# Two commands do all the set-up on a fresh Debian machine with Python 3.11:
#   make demo   — install, then run the server with embedded defaults and simulated NVRs
#   make test   — install what the tests need (Debian packages too) and run the whole suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# opencv-doc ships vtest.avi, the real pedestrian clip the media and analyzer tests use;
# mosquitto is the MQTT broker the sensor collector tests start; fonts-noto-cjk renders the
# Chinese labels in the browser tests' screenshots.
DEB_PACKAGES := ffmpeg sip-tester postgresql chromium chromium-driver opencv-doc mosquitto fonts-noto-cjk nats-server
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo serve test lint bench sysdeps models testdata clean

# A venv that really has pip: Debian's python3 lacks ensurepip until python3-venv is installed,
# and a failed `venv` leaves a half-made folder behind, so retry from scratch after installing it.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
	  || { echo "Python 3.11 is required (found $$($(PYTHON) -V 2>&1)); set PYTHON=..." >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null && [ -x $(BIN)/pip ] || { \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "cannot create $(VENV): install python3-venv (apt-get install python3-venv)" >&2; exit 1; fi; \
	  echo "installing Debian package python3-venv"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
	    && $(PYTHON) -m venv $(VENV); }

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests use; installed only when one is missing (needs root, as on CI).
sysdeps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "missing Debian packages:$$missing (run make test as root, or apt-get install them)" >&2; \
	    exit 1; fi; \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Detector ONNX files in var/models (exported in a separate venv, .venv-models); skipped when
# every file is present and matches the sha256 recorded in var/models/models.lock.json.
models: install
	$(BIN)/vms models build

# The development photos and the pedestrian clip in var/testdata, from the packages that ship
# them (opencv-doc, scikit-image's wheel, ultralytics' assets): a clone alone runs every test.
testdata: sysdeps install
	$(BIN)/python -m tests.testdata

demo: install models
	$(BIN)/vms demo

serve: install
	$(BIN)/vms serve

# pytest exits non-zero on any failure and with 5 when it collects nothing: both fail the target.
test: sysdeps install models testdata
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# make bench BENCH_ARGS=--quick for a short run of every benchmark.
bench: install models testdata
	@shopt -s nullglob; failed=""; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b $(BENCH_ARGS) || failed="$$failed $$b"; done; \
	  if [ -n "$$failed" ]; then echo "benchmarks below their goal or failed:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) var .pytest_cache
