#!/usr/bin/env bash
# The first control plane's maintenance helper, installed by maintenance-helper.sh and run over
# SSH by a worker's upgrade step through a key that can run nothing else: drains or uncordons
# the calling node (named by its address in NODES_B64; a node can act on itself only).
# Parameters: NODES_B64 (lines "<address> <node name>") DRAIN_TIMEOUT
# Arguments: CLIENT_ADDRESS ACTION (drain | uncordon)
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME="node-maintenance"
require_root
require_params NODES_B64 DRAIN_TIMEOUT
client=${1:-} action=${2:-}
export KUBECONFIG=$K8S_DIR/admin.conf

node=$(decode_param NODES_B64 | awk -v address="$client" '$1 == address { print $2 }')
[[ -n $node ]] || die "${client:-an unknown address} is no node of this cluster"
case $action in
  drain)
    kubectl drain "$node" --ignore-daemonsets --delete-emptydir-data --force \
      --timeout="$DRAIN_TIMEOUT" >&2 ||
      die "draining $node did not finish within $DRAIN_TIMEOUT (see: kubectl get pdb -A)"
    ;;
  uncordon) kubectl uncordon "$node" >&2 ;;
  *) die "unknown action '$action'; allowed: drain, uncordon" ;;
esac
log "$node: $action done"
