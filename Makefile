# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: demo test test-long bench lint system-deps venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

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
	rm -rf $(VENV) demo-state .pytest_cache .mypy_cache .ruff_cache .hypothesis
