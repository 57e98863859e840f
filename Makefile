# `make run`: set up and start the app (on 127.0.0.1; HOST=... to serve a network). `make test`: set up and run the whole test suite;
# `make test-fast`: the tests that need no browser, no PostgreSQL and no long run (a few minutes), for a developer's loop.
# `make test-soak`: the one Chromium tab soaked with 40 uploads and 200 changes (about 7 minutes), which `make test` leaves out.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed
PORT ?= 8501
# 127.0.0.1: this machine only. HOST=0.0.0.0 serves every interface and needs accounts
# (`.venv/bin/backdrop users add NAME --admin`) or an OIDC provider: `backdrop app` refuses otherwise.
HOST ?= 127.0.0.1

.PHONY: setup run test test-fast test-soak

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -r requirements.txt -r requirements-test.txt
	@echo "installing this project (the backdrop command) without resolving its dependencies again"
	$(PIP) install --no-deps --no-build-isolation -e .
	@echo "compiling pymatting's numba kernels once (about a minute; otherwise the first generation pays it)"
	$(PY) -c "import pymatting"
	touch $(STAMP)

setup: $(STAMP)
	$(VENV)/bin/backdrop models fetch u2netp

run: setup
	$(VENV)/bin/backdrop app --host $(HOST) --port $(PORT)

test: setup
	bash scripts/system-deps.sh
	$(PY) -m pytest -q -m "not soak"

test-soak: setup
	bash scripts/system-deps.sh
	$(PY) -m pytest -q -m soak

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser and not postgres"
