#!/usr/bin/env bash
# Install edge-agent on a store terminal as a hardened systemd service. Idempotent: run it
# again to upgrade the package; it never overwrites /etc/edge-agent/config.toml or secrets.
#
#   sudo systemd/install.sh --store-id S001 --mqtt-url mqtts://mqtt.example:8883 \
#        --central-url https://central.example
#   systemd/install.sh --dry-run ...      # print what it would do, change nothing
#
# Steps: service user and group; virtualenv in /opt/edge-agent with the package; the
# example config and docs in /opt/edge-agent/share; units and udev rules; /etc/edge-agent
# and /etc/credstore/edge-agent; /etc/edge-agent/config.toml via `edge-agent init` when
# absent; enable (and start, once the secrets are in place) the service.
set -euo pipefail

SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/edge-agent
ROOT=""
DRY_RUN=0
START=1
CENTRAL=0
STORE_ID=""
MQTT_URL=""
CENTRAL_URL=""
PYTHON="${PYTHON:-python3}"
USER_NAME=edge-agent

usage() {
    cat <<'USAGE'
usage: install.sh [--dry-run] [--store-id ID] [--mqtt-url URL] [--central-url URL]
                  [--prefix DIR] [--source DIR] [--root DIR] [--no-start] [--central]
  --dry-run        print every action instead of doing it
  --store-id ID    store id for a new /etc/edge-agent/config.toml (edge-agent init)
  --mqtt-url URL   broker URL for the new configuration
  --central-url U  central's HTTP base URL for the new configuration
  --prefix DIR     virtualenv location (default /opt/edge-agent)
  --source DIR     the edge-agent source tree or wheel to install (default: this checkout)
  --root DIR       install under DIR instead of / (staging images; no systemctl/udevadm)
  --no-start       enable the service but do not (re)start it
  --central        also install edge-central.service (the reference central)
USAGE
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --store-id) STORE_ID="$2"; shift ;;
        --mqtt-url) MQTT_URL="$2"; shift ;;
        --central-url) CENTRAL_URL="$2"; shift ;;
        --prefix) PREFIX="$2"; shift ;;
        --source) SOURCE="$2"; shift ;;
        --root) ROOT="${2%/}"; shift ;;
        --no-start) START=0 ;;
        --central) CENTRAL=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [[ -n "$STORE_ID" && ! "$STORE_ID" =~ ^[A-Za-z0-9_-]{1,64}$ ]]; then
    echo "install.sh: --store-id must match [A-Za-z0-9_-]{1,64}" >&2
    exit 2
fi
if [[ $DRY_RUN -eq 0 && $EUID -ne 0 ]]; then
    echo "install.sh: run as root (or use --dry-run to see what it would do)" >&2
    exit 1
fi

VENV="$ROOT$PREFIX"
ETC="$ROOT/etc/edge-agent"
CREDS="$ROOT/etc/credstore/edge-agent"
UNITS="$ROOT/etc/systemd/system"
RULES="$ROOT/etc/udev/rules.d"
CONFIG="$ETC/config.toml"
SYSTEM=1   # talk to systemd/udev/the user database (not when staging under --root)
[[ -n "$ROOT" ]] && SYSTEM=0

say() { printf '==> %s\n' "$*"; }
run() {
    if [[ $DRY_RUN -eq 1 ]]; then
        printf '+ %s\n' "$*"
    else
        "$@"
    fi
}

# 1. service user and group --------------------------------------------------------------
if [[ $SYSTEM -eq 1 ]]; then
    if getent group "$USER_NAME" >/dev/null; then
        say "group $USER_NAME exists"
    else
        run groupadd --system "$USER_NAME"
    fi
    if getent passwd "$USER_NAME" >/dev/null; then
        say "user $USER_NAME exists"
    else
        run useradd --system --gid "$USER_NAME" --home-dir /var/lib/edge-agent \
            --no-create-home --shell /usr/sbin/nologin --comment "edge-agent daemon" "$USER_NAME"
    fi
    for group in dialout input; do
        if getent group "$group" >/dev/null; then
            if id -nG "$USER_NAME" 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then
                say "$USER_NAME is in $group"
            else
                run usermod -a -G "$group" "$USER_NAME"
            fi
        fi
    done
fi

# 2. virtualenv and package ----------------------------------------------------------------
if [[ -x "$VENV/bin/python" ]]; then
    say "virtualenv $VENV exists"
else
    run "$PYTHON" -m venv "$VENV"
fi
run "$VENV/bin/python" -m pip install --quiet --upgrade pip
run "$VENV/bin/python" -m pip install --quiet --upgrade "$SOURCE"
run install -d -m 0755 "$VENV/share" "$VENV/share/doc"
if [[ -f "$SOURCE/config/agent.example.toml" ]]; then
    run install -m 0644 "$SOURCE/config/agent.example.toml" "$VENV/share/agent.example.toml"
fi
if [[ -f "$SOURCE/docs/cli.md" ]]; then
    run install -m 0644 "$SOURCE/docs/cli.md" "$VENV/share/doc/cli.md"
fi

# 3. units and udev rules ------------------------------------------------------------------
run install -d -m 0755 "$UNITS" "$RULES"
run install -m 0644 "$SOURCE/systemd/edge-agent.service" "$UNITS/edge-agent.service"
if [[ $CENTRAL -eq 1 ]]; then
    run install -m 0644 "$SOURCE/systemd/edge-central.service" "$UNITS/edge-central.service"
fi
run install -m 0644 "$SOURCE/systemd/99-edge-agent.rules" "$RULES/99-edge-agent.rules"
if [[ $SYSTEM -eq 1 ]] && command -v udevadm >/dev/null; then
    run udevadm control --reload
    run udevadm trigger --subsystem-match=tty --subsystem-match=input --action=change
fi

# 4. configuration and secrets -------------------------------------------------------------
if [[ $SYSTEM -eq 1 ]]; then
    run install -d -m 0750 -o root -g "$USER_NAME" "$ETC"
else
    run install -d -m 0750 "$ETC"
fi
run install -d -m 0700 "$CREDS"
if [[ -f "$CONFIG" ]]; then
    say "$CONFIG exists: kept (check it with: edge-agent config check)"
elif [[ -n "$STORE_ID" ]]; then
    args=(init --config "$CONFIG" --store-id "$STORE_ID" --no-db)
    [[ -n "$MQTT_URL" ]] && args+=(--mqtt-url "$MQTT_URL")
    [[ -n "$CENTRAL_URL" ]] && args+=(--central-url "$CENTRAL_URL")
    run "$VENV/bin/edge-agent" "${args[@]}"
else
    say "no $CONFIG and no --store-id: create it with"
    say "  $PREFIX/bin/edge-agent init --config /etc/edge-agent/config.toml --store-id <ID>"
fi
missing=()
for secret in mqtt-password central-token; do
    [[ -s "$CREDS/$secret" ]] || missing+=("$secret")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    say "secrets to write (root-only files, one line each): ${missing[*]/#/$CREDS/}"
fi

# 5. enable and start ----------------------------------------------------------------------
if [[ $SYSTEM -eq 1 ]] && command -v systemctl >/dev/null; then
    run systemctl daemon-reload
    run systemctl enable edge-agent.service
    [[ $CENTRAL -eq 1 ]] && run systemctl enable edge-central.service
    if [[ $START -eq 1 && -f "$CONFIG" && ${#missing[@]} -eq 0 ]]; then
        run systemctl restart edge-agent.service
        say "started; follow it with: journalctl -u edge-agent -f ; check with: edge-agent doctor"
    else
        say "enabled, not started (config or secrets missing, or --no-start):"
        say "  systemctl start edge-agent && edge-agent doctor"
    fi
fi
say "done"
