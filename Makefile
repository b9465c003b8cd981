# merkit: `make demo` and `make test` are the two commands; both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.merkit-installed
RUN ?= runs/demo
# What the install does not byte-compile ahead (the venv rule below says why).
NOT_PRECOMPILED := /(tests?|testing)/|site-packages/(sklearn|pip|setuptools|narwhals|joblib|fsspec|jedi)/
# Test workers (pytest-xdist): one per core by default; TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= auto

.PHONY: demo test lint lab bench clean-venv compile-kit

# JupyterLab refuses to start as root (as in many containers) unless told to.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root,)

# Reinstall only when the pins or the package metadata change; otherwise this is a no-op.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# pip byte-compiles on one core; compileall does it on all of them, and only for what runs import: Ray (its
	# executor, with protobuf and wcwidth) and sympy, mpmath, networkx (torch.compile) included, since where
	# PYTHONDONTWRITEBYTECODE is set a package left out is compiled again by every process that imports it. Left
	# out: the packages' own tests and what no run imports (scikit-learn: only SynthME's learnability probe; pip,
	# jedi, ...).
	# Its exit status is ignored: a few test files inside the packages use newer syntax, which pip skips too.
	$(PY) -m pip install --disable-pip-version-check -q --no-compile -r requirements.txt
	$(PY) -m compileall -q -j 0 -x '$(NOT_PRECOMPILED)' $(VENV)/lib >/dev/null 2>&1 || true
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	# Kernels live inside the venv (--sys-prefix): a --user kernel does not exist on a fresh machine or in CI.
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (merkit)" >/dev/null
	$(PY) -m ipykernel install --sys-prefix --name merkit --display-name "merkit" >/dev/null
	touch $(STAMP)

# The kit's own modules are byte-compiled before a run (a no-op when current): every notebook kernel imports them,
# and where PYTHONDONTWRITEBYTECODE is set no process would keep the compiled form.
compile-kit: $(STAMP)
	@$(PY) -m compileall -q merkit >/dev/null

demo: compile-kit
	$(PY) -m merkit.cli demo --run-dir $(RUN)

# --dist loadfile: a test file's module fixtures (a whole emulated-release run, say) run once, on one worker.
test: lint compile-kit
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lab: $(STAMP)
	@if [ -n "$(LAB_FLAGS)" ]; then echo "make lab: running as root, so JupyterLab is started with --allow-root"; fi
	$(VENV)/bin/jupyter lab $(LAB_FLAGS) notebooks/

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
