# The two commands a new user needs: `make demo` (whole pipeline on generated data) and `make test`.
# Both build .venv themselves with the pinned dependencies (scripts/bootstrap.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= $(shell nproc)

.PHONY: venv demo test test-quick bench clean

venv:
	@VENV=$(VENV) scripts/bootstrap.sh

demo: venv
	$(PY) -m fashionai demo

test: venv
	$(PY) -m pytest -q

test-quick: venv
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) demo .pytest_cache
