# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: demo test test-long bench lint system-deps venv clean

venv: $(VENV)/.installed

# The first run takes a minute or two: say what is installed instead of staying silent.
$(VENV)/.installed: pyproject.toml
	@echo "setting up $(VENV): a Python virtualenv with edge-agent and its dependencies"
	@echo "(FastAPI, uvicorn, aiomqtt/paho, pydantic, biip, pyserial, rich, click, and the test"
	@echo " tools pytest, hypothesis, ruff, mypy); first run only, about 1-2 minutes"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar off -e '.[test]' | grep -E '^(Collecting|Successfully installed)' | sed -u 's/^Collecting /  installing /' || true
	@$(BIN)/python -c 'import edge_agent, central' || { echo "installation failed: rerun with 'make venv'"; exit 1; }
	touch $@

# mosquitto, faketime (chaos clock jumps) and PostgreSQL (the central's tests) from the
# system's packages.
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

demo: venv
	$(BIN)/python -m edge_agent.demo

test: venv system-deps
	$(BIN)/python -m pytest -q

test-long: venv system-deps
	$(BIN)/python -m pytest -q -m "chaos" --chaos-long

bench: venv system-deps
	$(BIN)/python -m bench

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) demo-state .pytest_cache .mypy_cache .ruff_cache .hypothesis
