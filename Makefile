# merkit: `make demo` and `make test` are the two commands; both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.merkit-installed
RUN ?= runs/demo

.PHONY: demo test lab bench clean-venv

# Reinstall only when the pins or the package metadata change; otherwise this is a no-op.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	# Kernels live inside the venv (--sys-prefix): a --user kernel does not exist on a fresh machine or in CI.
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (merkit)" >/dev/null
	$(PY) -m ipykernel install --sys-prefix --name merkit --display-name "merkit" >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m merkit.cli demo --run-dir $(RUN)

test: $(STAMP)
	$(PY) -m pytest -q

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
