#!/usr/bin/env bash
# Installs the node maintenance helper on the first control plane (node-maintenance.sh): the
# admin kubeconfig is here, and a worker's upgrade step must drain and uncordon its own node.
# A dedicated SSH key may run nothing but the helper, from the node network only; the helper is
# told the caller's address and acts on that node alone.
# Parameters: HELPER_B64 (the helper program) HELPER_PUBLIC_KEY ADMIN_USER ALLOWED_FROM
#             [HELPER_PATH] [AUTHORIZED_KEYS]
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=maintenance-helper
require_root
require_params HELPER_B64 HELPER_PUBLIC_KEY ADMIN_USER ALLOWED_FROM
HELPER_PATH=${HELPER_PATH:-/usr/local/sbin/sandboxed-k8s-node-maintenance}
keys=$(authorized_keys_of "$ADMIN_USER")

decode_param HELPER_B64 | write_if_changed "$HELPER_PATH" 0700 || true
# sshd runs the forced command with the user's shell, which expands the caller's address and
# its request; sudo passes both as plain arguments, and the helper accepts only its own words.
# shellcheck disable=SC2016 # expanded by that shell, not here
command='sudo -n '"$HELPER_PATH"' \"${SSH_CLIENT%% *}\" \"$SSH_ORIGINAL_COMMAND\"'
authorize_forced_command "$keys" sandboxed-k8s-node-maintenance \
  "restrict,from=\"$ALLOWED_FROM\",command=\"$command\"" "$HELPER_PUBLIC_KEY"
log "node maintenance helper ready"
