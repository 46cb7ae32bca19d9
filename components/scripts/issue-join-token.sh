#!/usr/bin/env bash
# The first control plane's join-token issuer, installed by token-issuer.sh and run over SSH by
# a joining node through a key that can run nothing else: creates a fresh bootstrap token that
# lives TOKEN_TTL and prints it (and nothing else) on stdout.
# Parameters: TOKEN_TTL
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=issue-join-token
require_root
require_params TOKEN_TTL
export KUBECONFIG=$K8S_DIR/admin.conf

token=$(kubeadm token create --ttl "$TOKEN_TTL" --description "sandboxed-k8s node join") ||
  die "kubeadm could not create a join token"
[[ $token =~ ^[a-z0-9]{6}\.[a-z0-9]{16}$ ]] || die "kubeadm printed no bootstrap token"
printf '%s\n' "$token"
