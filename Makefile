# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: demo test test-long bench lint system-deps venv lock clean

# requirements.lock pins every package `make venv` (hence `make test` and CI) installs,
# with hashes, for every platform; pyproject.toml keeps compatible ranges for library
# users. After changing dependencies in pyproject.toml (or after merging branches that
# did), run `make lock` and commit requirements.lock.
LOCK       := requirements.lock
LOCK_TOOLS := .lock-tools
UV         := $(LOCK_TOOLS)/bin/uv

venv: $(VENV)/.installed

# The first run takes a minute or two: say what is installed instead of staying silent.
$(VENV)/.installed: pyproject.toml $(LOCK)
	@echo "setting up $(VENV): a Python virtualenv with edge-agent and its dependencies"
	@echo "(FastAPI, uvicorn, aiomqtt/paho, pydantic, biip, pyserial, rich, click, and the test"
	@echo " tools pytest, hypothesis, ruff, mypy), pinned by $(LOCK); first run only, 1-2 minutes"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar off --require-hashes -r $(LOCK) | { grep -E '^(Collecting|Successfully installed)' | sed -u 's/^Collecting /  installing /' || true; }
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python scripts/check_lock.py  # also fails when the install above did
	touch $@

# uv resolves from PyPI in its own small environment (never the project's .venv, which may
# be stale while the lock is). It reuses the versions already in the lock where they still
# fit, so a regeneration changes only what must change. A merge conflict in the lock:
# take either side (git checkout --theirs requirements.lock), then `make lock`.
$(UV):
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install --quiet 'uv>=0.5,<1'

lock: $(UV)
	printf 'setuptools>=77\nwheel\n' | $(UV) pip compile pyproject.toml - --extra test \
	  --universal --python-version 3.11 --generate-hashes --quiet \
	  --custom-compile-command 'make lock' -o $(LOCK)
	@echo "$(LOCK) regenerated; commit it, then run make venv"

# mosquitto, faketime (chaos clock jumps), PostgreSQL (the central's tests), Chromium
# (the pages' browser tests, driven by Playwright; never `playwright install`) and
# nats-server (the second broker) from the system's packages.
system-deps:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
	  echo "installing mosquitto from the system packages"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; \
	fi
	@if ! command -v faketime >/dev/null 2>&1; then \
	  echo "installing faketime (clock jumps in the chaos runs) from the system packages"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq faketime >/dev/null || \
	    echo "faketime unavailable: the chaos runs skip clock jumps and say so"; \
	fi
	@if ! command -v postgres >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
	  echo "installing postgresql from the system packages"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql >/dev/null || \
	    echo "postgresql unavailable: its tests will be skipped with a reason"; \
	fi
	@if [ ! -x /usr/bin/chromium ] && ! command -v chromium >/dev/null 2>&1; then \
	  echo "installing chromium (the pages' browser tests) from the system packages"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null || \
	    echo "chromium unavailable: the browser tests will be skipped with a reason"; \
	fi
	@if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then \
	  echo "installing nats-server (the second broker's tests) from the system packages"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nats-server >/dev/null || \
	    echo "nats-server unavailable: its tests will be skipped with a reason"; \
	fi

demo: venv
	$(BIN)/python -m edge_agent.demo

test: venv system-deps
	$(BIN)/python -m pytest -q

test-long: venv system-deps
	$(BIN)/python -m pytest -q -m "chaos" --chaos-long

# The whole suite at full size; it writes bench/last-run.json and the README's table.
bench: venv system-deps
	$(BIN)/python -m bench
	$(BIN)/python -m bench --readme

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(LOCK_TOOLS) demo-state .pytest_cache .mypy_cache .ruff_cache .hypothesis
