#!/usr/bin/env bash
# Makes sure the join token exists on the first control plane. The token is short-lived; this
# runs again whenever the set of joining nodes changes, so a node added after the first token
# expired still joins.
# Parameters: TOKEN_B64 TOKEN_TTL
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=bootstrap-token
require_root
require_params TOKEN_B64 TOKEN_TTL
token=$(decode_param TOKEN_B64)
export KUBECONFIG=/etc/kubernetes/admin.conf

token_exists() {
  kubeadm token list 2>/dev/null | awk 'NR > 1 { print $1 }' | grep -qxF "$token"
}
if token_exists; then
  log "join token present"
elif kubeadm token create "$token" --ttl "$TOKEN_TTL" >/dev/null || token_exists; then
  log "join token created (ttl $TOKEN_TTL)"
else
  die "could not create the join token"
fi
