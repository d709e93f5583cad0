# The README's two commands: `make demo` and `make test`.
# Each creates .venv (python3 -m venv) and installs the package when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aurora-installed
LINT_PATHS := aurora_dcc tests examples bench hosts

.PHONY: test demo bench lint typecheck py39 clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict aurora_dcc

# The runtime runs in DCCs whose Python is 3.9 (Maya 2023, Houdini 19.5, Nuke 14,
# 3ds Max 2023): no newer syntax or stdlib API in aurora_dcc (README: "Supported DCC versions").
py39: $(STAMP)
	$(VENV)/bin/vermin -q --target=3.9- --no-tips --violations aurora_dcc

# Everything by default; e.g. `make test PYTEST_ARGS='-m "not slow"'` for a quick loop.
# tests/conftest.py fails the run if a test leaves a file in $TMPDIR.
PYTEST_ARGS ?=

test: lint typecheck py39
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) examples/demo.py

bench: $(STAMP)
	-$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) bench/run.py

# Blender. `make blender-deps` installs what tests/test_blender_app.py runs (the Blender
# application, Xvfb, xauth) with apt-get when missing (root on Debian/Ubuntu; elsewhere it
# says so and those tests are skipped). The bpy module comes with the test extra.
# `make blender-addon` builds dist/aurora_dcc_blender-<version>.zip (hosts/README.md).
.PHONY: blender-deps blender-addon

blender-deps:
	@if command -v blender >/dev/null && command -v xvfb-run >/dev/null && command -v xauth >/dev/null; then \
		echo "blender-deps: blender, xvfb-run and xauth are installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q blender xvfb xauth; \
	else \
		echo "blender-deps: cannot install blender xvfb xauth here (needs apt-get as root);" \
			"the Blender application tests will be skipped" >&2; exit 1; \
	fi

blender-addon:
	$(PYTHON) hosts/build_blender_addon.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
