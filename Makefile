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

.PHONY: venv install build test demo bench clean lint fuzz sanitize

$(PY):
	@if [ -z "$(PYTHON312)" ]; then echo "galmix needs Python 3.12: install it (e.g. 'pyenv install 3.12') and retry." >&2; exit 1; fi
	$(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

venv: $(PY)

# Re-installs when pyproject.toml or any C++ file changes.
$(VENV)/.installed: $(PY) pyproject.toml setup.py $(wildcard src/*.cc src/*.h src/*.inc include/lsst/galmix/*.h python/lsst/galmix/*.cc python/lsst/galmix/*.h)
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
	$(PY) -m ruff check python tests benchmarks examples
	$(PY) -m mypy python/lsst/galmix/fitting

# Fuzz suite (tests/fuzz, hypothesis): `make test` runs a fixed handful of examples per test; here
# FUZZ_EXAMPLES per test, newly random each run. The last line sums the fuzzed calls over the workers.
FUZZ_EXAMPLES ?= 2000
SANITIZE_EXAMPLES ?= 0
FUZZ_STATS := build/fuzz_stats.txt
FUZZ_SUM = awk '{c+=$$1; e+=$$2; if ($$3>t) t=$$3; if ($$4>m) m=$$4} END {printf "fuzzed calls: %d (%d clean errors) in %.0f s wall; longest call %.2f s\n", c, e, t, m}' $(FUZZ_STATS)

fuzz: install
	@mkdir -p build && rm -f $(FUZZ_STATS)
	GALMIX_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) GALMIX_FUZZ_STATS=$(CURDIR)/$(FUZZ_STATS) \
		$(PY) -m pytest -n 2 -p no:cacheprovider tests/fuzz
	@$(FUZZ_SUM)

# AddressSanitizer + UBSan build of the extension in build/sanitize (the in-place .so is left alone), then
# the engine tests and the fuzz suite against it. Python itself is not instrumented, so libasan is
# preloaded, with libstdc++ (ASan's __cxa_throw interceptor must find the real one at start-up, or the
# first C++ exception aborts); CPython's deliberate leaks are not reported. Reports go to files (pytest
# would swallow them with the aborted worker's output). SANITIZE_EXAMPLES=N: fuzz examples per test (0:
# the `make test` handful).
SANITIZE_DIR := build/sanitize
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g
SAN_ENV = PYTHONPATH=$(CURDIR)/$(SANITIZE_DIR) \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so)" \
	ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1:log_path=$(CURDIR)/$(SANITIZE_DIR)/report \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$(CURDIR)/$(SANITIZE_DIR)/report

sanitize: install
	rm -rf $(SANITIZE_DIR) && mkdir -p $(SANITIZE_DIR) && cp -r python/lsst $(SANITIZE_DIR)/
	rm -f $(SANITIZE_DIR)/lsst/galmix/*.so $(SANITIZE_DIR)/report.* $(FUZZ_STATS)
	CFLAGS="$(SAN_FLAGS)" CXXFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" \
		$(PY) setup.py -q build_ext --force --build-lib $(SANITIZE_DIR) --build-temp build/sanitize-tmp
	$(SAN_ENV) $(PY) -c "import lsst.galmix._galmix as m; assert '$(SANITIZE_DIR)/' in m.__file__, m.__file__"
	$(SAN_ENV) GALMIX_FUZZ_EXAMPLES=$(SANITIZE_EXAMPLES) GALMIX_FUZZ_STATS=$(CURDIR)/$(FUZZ_STATS) \
		$(PY) -m pytest -n 2 -p no:cacheprovider tests/test_engine_eval.py tests/test_engine_model.py \
		tests/test_engine_fit.py tests/test_engine_normal_sparse.py tests/test_engine_reference.py \
		tests/test_fit_stamps_rule.py tests/test_fit_fast_paths.py tests/test_fit_exactness.py tests/fuzz; status=$$?; \
	if ls $(SANITIZE_DIR)/report.* >/dev/null 2>&1; then \
		cat $(SANITIZE_DIR)/report.*; echo "make sanitize: sanitizer findings (above)" >&2; exit 1; fi; \
	exit $$status
	@$(FUZZ_SUM)
	@echo "make sanitize: 0 sanitizer findings"

clean:
	rm -rf build $(VENV) python/lsst/galmix/*.so *.egg-info python/*.egg-info $(DEMO_DIR)
