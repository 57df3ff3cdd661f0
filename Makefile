# galmix: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_output

# Python 3.12 comes from pyenv here and a bare python3.12 may fail through the shim: try in order.
PYTHON312 := $(shell \
	if python3.12 -c '' >/dev/null 2>&1; then echo python3.12; \
	elif PYENV_VERSION=3.12.1 python3.12 -c '' >/dev/null 2>&1; then echo "env PYENV_VERSION=3.12.1 python3.12"; \
	elif command -v pyenv >/dev/null 2>&1 && [ -x "$$(pyenv prefix 3.12.1 2>/dev/null)/bin/python" ]; then echo "$$(pyenv prefix 3.12.1)/bin/python"; \
	fi)

.PHONY: venv install build test demo bench clean lint

$(PY):
	@if [ -z "$(PYTHON312)" ]; then echo "galmix needs Python 3.12: install it (e.g. 'pyenv install 3.12') and retry." >&2; exit 1; fi
	$(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

venv: $(PY)

# Re-installs when pyproject.toml or any C++ file changes.
$(VENV)/.installed: $(PY) pyproject.toml setup.py $(wildcard src/*.cc include/lsst/galmix/*.h python/lsst/galmix/*.cc)
	$(PY) -m pip install -q -e '.[test,bench,production]'
	touch $@

install: $(VENV)/.installed

build: install
	$(PY) setup.py -q build_ext --inplace

test: install
	$(PY) -m pytest -n 2 tests

demo: install
	$(PY) -m lsst.galmix.demo --output $(DEMO_DIR)

bench: install
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: install
	$(PY) -m ruff check python tests benchmarks

clean:
	rm -rf build $(VENV) python/lsst/galmix/*.so *.egg-info python/*.egg-info $(DEMO_DIR)
