#!/usr/bin/env bash
# Takes a node out of the cluster before its VM is destroyed. Runs on the first control plane
# (the admin kubeconfig is there), from the `delete` of the node's removal step: cordon and
# drain the node, remove its etcd member if it is a control plane, delete its Node object.
# A node already gone is fine (a re-run finishes what a failed run left). Fails, and so keeps
# the VM, when the node cannot leave safely: the API server does not answer, the drain does not
# finish, or a member that stays in etcd is unhealthy (removing one more would lose quorum).
# Parameters: NODE_NAME NODE_IP CONTROL_PLANE (0|1) ETCD_POD DRAIN_TIMEOUT
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=remove-node
require_root
require_params NODE_NAME NODE_IP CONTROL_PLANE ETCD_POD DRAIN_TIMEOUT
export KUBECONFIG=$K8S_DIR/admin.conf
API_ATTEMPTS=${API_ATTEMPTS:-12}
API_RETRY_SECONDS=${API_RETRY_SECONDS:-5}
# Where kubeadm's etcd pod mounts its certificates (the same path inside the pod).
etcd_pki=/etc/kubernetes/pki/etcd
stays="its VM stays; fix this, then run \`pulumi up\` (or \`pulumi destroy\`) again"

wait_for_api() {
  local attempt
  for ((attempt = 1; attempt <= API_ATTEMPTS; attempt++)); do
    kubectl get --raw=/readyz >/dev/null 2>&1 && return 0
    ((attempt == API_ATTEMPTS)) || sleep "$API_RETRY_SECONDS"
  done
  die "the API server does not answer: $NODE_NAME was not drained; $stays"
}

etcdctl() {
  kubectl -n kube-system exec "$ETCD_POD" -- etcdctl --endpoints=https://127.0.0.1:2379 \
    --cacert="$etcd_pki/ca.crt" --cert="$etcd_pki/healthcheck-client.crt" \
    --key="$etcd_pki/healthcheck-client.key" "$@"
}

drain() {
  local ready
  kubectl cordon "$NODE_NAME"
  ready=$(kubectl get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')
  if [[ $ready != True ]]; then
    log "$NODE_NAME is not Ready: nothing on it can be evicted; its pods go with its Node object"
    return 0
  fi
  # --force: pods no controller owns cannot move anywhere; they go with the node.
  kubectl drain "$NODE_NAME" --ignore-daemonsets --delete-emptydir-data --force \
    --timeout="$DRAIN_TIMEOUT" ||
    die "draining $NODE_NAME did not finish within $DRAIN_TIMEOUT (a PodDisruptionBudget?" \
      "see: kubectl get pdb -A); it stays cordoned and $stays"
  log "drained $NODE_NAME"
}

# remove_etcd_member : this node's member (by name, or by peer URL for a member that never
# started) leaves etcd, if every member that stays is healthy.
remove_etcd_member() {
  local members id health url unhealthy=()
  members=$(etcdctl member list) || die "cannot list etcd members through $ETCD_POD; $stays"
  # Lines: ID, STATUS, NAME, PEER ADDRS, CLIENT ADDRS, IS LEARNER
  id=$(awk -F', ' -v name="$NODE_NAME" -v peer="https://$NODE_IP:2380" \
    '$3 == name || $4 == peer { print $1 }' <<<"$members")
  if [[ -z $id ]]; then
    log "$NODE_NAME has no etcd member"
    return 0
  fi
  health=$(etcdctl endpoint health --cluster 2>&1) || true
  while read -r url; do
    grep -qF "${url%%,*} is healthy" <<<"$health" || unhealthy+=("${url%%,*}")
  done < <(awk -F', ' -v id="$id" '$1 != id { print ($5 == "" ? "unstarted-" $1 : $5) }' \
    <<<"$members")
  ((${#unhealthy[@]} == 0)) ||
    die "etcd members that stay are unhealthy (${unhealthy[*]}): removing $NODE_NAME's" \
      "member now would lose quorum; $stays"
  etcdctl member remove "$id" >/dev/null || die "etcd did not remove member $id; $stays"
  log "removed $NODE_NAME's etcd member $id"
}

wait_for_api
registered=$(kubectl get node "$NODE_NAME" -o name --ignore-not-found) ||
  die "cannot read node $NODE_NAME; $stays"
if [[ -n $registered ]]; then
  drain
else
  log "$NODE_NAME is not registered: nothing to drain"
fi
if [[ $CONTROL_PLANE == 1 ]]; then
  remove_etcd_member
fi
kubectl delete node "$NODE_NAME" --ignore-not-found >/dev/null
log "$NODE_NAME left the cluster"
