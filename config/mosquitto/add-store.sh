#!/bin/sh
# Provision one store on the broker (password variant) and on edge-central.
#
#   add-store.sh STORE_ID [PASSWD_FILE] [CENTRAL_TOKENS_DIR] [OUT_DIR]
#
# - adds STORE_ID with a fresh random password to PASSWD_FILE (mosquitto_passwd -b),
# - writes a fresh snapshot bearer token to CENTRAL_TOKENS_DIR/STORE_ID.token (mode 600),
# - writes both secrets for the store's agent to OUT_DIR/STORE_ID.{mqtt-password,token}
#   (mode 600) to be copied to the store over a secure channel, then deleted.
# Nothing secret is printed. Reload the broker afterwards: kill -HUP <mosquitto pid>.
set -eu

store=${1:?usage: add-store.sh STORE_ID [PASSWD_FILE] [CENTRAL_TOKENS_DIR] [OUT_DIR]}
passwd_file=${2:-/etc/mosquitto/edge/passwd}
tokens_dir=${3:-/etc/edge-central/store-tokens}
out_dir=${4:-.}

case "$store" in
  central|central-*) echo "refusing: 'central*' are the central's identities" >&2; exit 2 ;;
  *[!A-Za-z0-9_-]*|'') echo "refusing: store ids match [A-Za-z0-9_-]{1,64}" >&2; exit 2 ;;
esac
[ "${#store}" -le 64 ] || { echo "refusing: store id longer than 64" >&2; exit 2; }

umask 077
password=$(openssl rand -hex 24)
token=$(openssl rand -hex 32)

if [ -f "$passwd_file" ]; then
  mosquitto_passwd -b "$passwd_file" "$store" "$password"
else
  mosquitto_passwd -c -b "$passwd_file" "$store" "$password"
fi

mkdir -p "$tokens_dir" "$out_dir"
printf '%s\n' "$token" > "$tokens_dir/$store.token"
printf '%s\n' "$password" > "$out_dir/$store.mqtt-password"
printf '%s\n' "$token" > "$out_dir/$store.token"
echo "store $store provisioned: $out_dir/$store.mqtt-password, $out_dir/$store.token"
