# Two commands from a fresh clone: `make demo` and `make test`.
# The first of these that is Python >= 3.11, unless PYTHON=... is given.
PYTHON_CANDIDATES := python3.14 python3.13 python3.12 python3.11 python3
NEW_ENOUGH := import sys; sys.exit(sys.version_info < (3, 11))
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword $(foreach candidate,$(PYTHON_CANDIDATES),\
	$(shell $(candidate) -c '$(NEW_ENOUGH)' >/dev/null 2>&1 && echo $(candidate))))
endif
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_output

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -c '$(NEW_ENOUGH)' 2>/dev/null || { echo "make: mmdlr needs Python >= 3.11 \
	($(if $(PYTHON),$(PYTHON) is $$($(PYTHON) --version 2>&1 | head -n 1),none of $(PYTHON_CANDIDATES) is)): install one, or \
	name it: make PYTHON=/path/to/python3.12" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned to the local CPU build first so nothing pulls a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps monailabel==0.8.5
	touch $(STAMP)

demo: setup
	$(BIN)/mmdlr demo --out $(DEMO_DIR)

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=25 tests

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
