#!/usr/bin/env bash
# Installs the join-token issuer on the first control plane: a program that creates a fresh
# bootstrap token (it lives tokenTtl) and prints it, run by a dedicated SSH key that can do
# nothing else (restrict, from the node network only, a forced command). Every join asks for
# its token when it runs (kubeadm-join.sh), so a join retried after a token expired, or a node
# added or replaced long after the first `up`, still finds a valid one.
# Parameters: ISSUER_B64 (the issuer program) ISSUER_PUBLIC_KEY ADMIN_USER ALLOWED_FROM
#             [ISSUER_PATH] [AUTHORIZED_KEYS]
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=token-issuer
require_root
require_params ISSUER_B64 ISSUER_PUBLIC_KEY ADMIN_USER ALLOWED_FROM
ISSUER_PATH=${ISSUER_PATH:-/usr/local/sbin/sandboxed-k8s-join-token}
keys=$(authorized_keys_of "$ADMIN_USER")

[[ $ISSUER_PUBLIC_KEY =~ ^ssh-ed25519\ [A-Za-z0-9+/=]+$ ]] ||
  die "ISSUER_PUBLIC_KEY is not one ssh-ed25519 public key"
decode_param ISSUER_B64 | write_if_changed "$ISSUER_PATH" 0700 || true
authorize_forced_command "$keys" sandboxed-k8s-join-token \
  "restrict,from=\"$ALLOWED_FROM\",command=\"sudo -n $ISSUER_PATH\"" "$ISSUER_PUBLIC_KEY"
# Fail here, once, rather than in every join: the issuer must be able to create a token.
"$ISSUER_PATH" >/dev/null || die "the join-token issuer failed; see the messages above"
log "join-token issuer ready"
