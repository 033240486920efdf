# make demo  -- set up .venv if needed and run a real job end to end on the local host
# make ui    -- the same job, longer, with its loss curve live in the browser (tether ui)
# make test  -- set up .venv if needed and run the test suite
# make bench -- benchmarks; results in bench/RESULTS.md

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo ui test bench clean

venv: $(STAMP)

# torch goes in first, pinned to the CPU build on this disk, so the resolver does not
# fetch a multi-GB CUDA build for the rest; pyproject leaves torch unpinned for users.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,train,hub]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tether demo

ui: $(STAMP)
	$(BIN)/tether demo --ui

# Three workers on two cores: most tests wait on real processes and sshd, not the CPU.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 3 --durations=15

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) demo-result .pytest_cache
