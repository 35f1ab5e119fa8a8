# `make demo` and `make test` each do all their own setup on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: demo test lint typecheck unit system-deps bench-deps bench clean lock

# The locked test set (requirements/test.txt holds the image's runtime pins too), checked against its
# hashes, then the service and the emulators themselves, built by the locked setuptools: CI tests
# exactly what the image ships.
$(STAMP): setup.cfg pyproject.toml sandbox/pyproject.toml requirements/build.txt requirements/test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements/build.txt
	$(BIN)/python -m pip install -q --require-hashes -r requirements/test.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . -e ./sandbox
	touch $(STAMP)

# The lock files, compiled with their hashes from setup.cfg's ranges (and the build-system requires
# of both pyproject.toml files) by pip-tools in a venv of its own. Run it after changing a dependency
# or a range; `make lock UPGRADE=1` takes the newest releases the ranges allow (see docs/deploy.md).
LOCK_VENV := .venv-lock
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade)

lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q pip-tools==7.7.0
	$(PIP_COMPILE) -o requirements/runtime.txt setup.cfg
	$(PIP_COMPILE) --extra test -c requirements/runtime.txt -o requirements/test.txt \
		setup.cfg sandbox/pyproject.toml
	$(PIP_COMPILE) --all-build-deps --only-build-deps -c requirements/test.txt -o requirements/build.txt \
		pyproject.toml sandbox/pyproject.toml

system-deps:
	bash scripts/system-deps.sh

bench-deps: system-deps
	bash scripts/bench-deps.sh

demo: $(STAMP)
	$(BIN)/python -m sandbox --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# pytest-xdist: the tests wait on processes, browsers and sockets as much as they compute, so three
# workers beat two on two cores (200 s against 220 s here). A module's tests stay on one worker
# (loadscope): its module-scoped Chromium or CAS server starts once.
PYTEST_WORKERS ?= 3
# The tests start well over a hundred Python processes (the CLI, the demo, the service), and each
# pytest worker rewrites every test module: where PYTHONDONTWRITEBYTECODE is set (as on our CI
# machines) each of them compiled all our modules from source again, about 0.3 s of CPU a process.
# Their bytecode is cached under the venv instead, out of the tree (a quarter of the suite's time).
PYCACHE := $(CURDIR)/$(VENV)/pycache
test: system-deps $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(PYCACHE) $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadscope

bench: bench-deps $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(LOCK_VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
