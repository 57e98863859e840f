# `make run`: set up and start the app. `make test`: set up and run the whole test suite.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: setup run test

$(STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q torch==2.13.0
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements.txt
	@echo "compiling pymatting's numba kernels once (about a minute; otherwise the first generation pays it)"
	$(PY) -c "import pymatting"
	touch $(STAMP)

setup: $(STAMP)
	$(PY) -m core models fetch u2netp

run: setup
	$(PY) -m streamlit run streamlit_app.py --server.port $(PORT)

test: setup
	bash scripts/system-deps.sh
	$(PY) -m pytest -q
