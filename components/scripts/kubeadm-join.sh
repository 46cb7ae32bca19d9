#!/usr/bin/env bash
# Joins this node to the cluster (as a worker, or as a further control plane when CONTROL_PLANE
# is 1). Discovery is pinned by the CA hash in the rendered config. Already joined: nothing is
# done; a half-finished join is reset first. A control plane counts as joined only when its etcd
# member is listed as started and healthy and its API server's static pod is Ready: otherwise
# (a join that stopped half-way, a member that never started) it is reset and joined once more,
# and the step fails, naming what is unhealthy, if that does not make it healthy.
# A kubeadm join that fails (a slow API server can time out kubeadm's own short requests) is
# reset and tried again, JOIN_ATTEMPTS times in all, each with a fresh token.
# The join token is asked for when the join runs, over SSH from the first control plane's
# token issuer (token-issuer.sh): a token lives tokenTtl, and a join retried after that, or a
# node added or replaced later, must not depend on one created earlier.
# Parameters: NODE_NAME KUBEADM_JOIN_CONFIG_B64 (its token is TOKEN_PLACEHOLDER)
#             TOKEN_PLACEHOLDER TOKEN_ISSUER_HOST TOKEN_ISSUER_USER TOKEN_ISSUER_KEY_B64
#             TOKEN_ISSUER_KNOWN_HOSTS_B64 (see helper_ssh in lib.sh)
#             [CONTROL_PLANE (0|1); for control planes: the PKI_FILES parameters,
#             ENCRYPTION_CONFIG_B64, AUDIT_POLICY_B64, KUBE_VIP_B64]
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=kubeadm-join
require_root
require_params NODE_NAME KUBEADM_JOIN_CONFIG_B64 TOKEN_PLACEHOLDER TOKEN_ISSUER_HOST \
  TOKEN_ISSUER_USER TOKEN_ISSUER_KEY_B64 TOKEN_ISSUER_KNOWN_HOSTS_B64
CONTROL_PLANE=${CONTROL_PLANE:-0}
ISSUER_ATTEMPTS=${ISSUER_ATTEMPTS:-5}
ISSUER_RETRY_SECONDS=${ISSUER_RETRY_SECONDS:-10}
JOIN_ATTEMPTS=${JOIN_ATTEMPTS:-3}
JOIN_RETRY_SECONDS=${JOIN_RETRY_SECONDS:-30}
# How long a joined control plane may take to become healthy (static pods start after a join or
# a reboot): HEALTH_CHECKS checks, HEALTH_CHECK_SECONDS apart.
HEALTH_CHECKS=${HEALTH_CHECKS:-60}
HEALTH_CHECK_SECONDS=${HEALTH_CHECK_SECONDS:-5}
config=$K8S_DIR/sandboxed-k8s/kubeadm-join.yaml

# fresh_token : a token the issuer created just now (a few attempts: it may be restarting).
fresh_token() {
  local attempt token
  for ((attempt = 1; attempt <= ISSUER_ATTEMPTS; attempt++)); do
    if token=$(helper_ssh TOKEN_ISSUER) && [[ $token =~ ^[a-z0-9]{6}\.[a-z0-9]{16}$ ]]; then
      printf '%s' "$token"
      return 0
    fi
    log "no token from the issuer on $TOKEN_ISSUER_HOST (attempt $attempt of $ISSUER_ATTEMPTS)"
    ((attempt == ISSUER_ATTEMPTS)) || sleep "$ISSUER_RETRY_SECONDS"
  done
  die "the first control plane ($TOKEN_ISSUER_HOST) issued no join token; there, see:" \
    "sudo /usr/local/sbin/sandboxed-k8s-join-token; journalctl -u ssh"
}

# write_join_config : the rendered config with a token issued for this attempt, in $WORK.
write_join_config() {
  local template token
  template=$(decode_param KUBEADM_JOIN_CONFIG_B64)
  [[ $template == *"$TOKEN_PLACEHOLDER"* ]] || die "the join config has no token placeholder"
  token=$(fresh_token)
  (umask 077 && printf '%s\n' "${template//"$TOKEN_PLACEHOLDER"/"$token"}" >"$WORK/join.yaml")
}

# join_node : a clean join (anything a failed one left is reset first), tried JOIN_ATTEMPTS times.
join_node() {
  local attempt
  if [[ -f $K8S_DIR/kubelet.conf || -e $K8S_DIR/manifests/kube-apiserver.yaml ]]; then
    log "found a half-finished join; resetting it"
    kubeadm reset --force
  fi
  for ((attempt = 1; ; attempt++)); do
    clear_pod_network
    if [[ $CONTROL_PLANE == 1 ]]; then
      install_pki # again after a reset, which removes them
      install_apiserver_files
    fi
    write_join_config
    if kubeadm join --config "$WORK/join.yaml"; then
      return 0
    fi
    ((attempt < JOIN_ATTEMPTS)) || die "kubeadm join failed $JOIN_ATTEMPTS times (its errors" \
      "are above); on $NODE_NAME see: journalctl -u kubelet; on the first control plane:" \
      "kubectl get nodes; kubectl -n kube-system get pods -o wide"
    log "kubeadm join failed (attempt $attempt of $JOIN_ATTEMPTS); resetting and trying again" \
      "in ${JOIN_RETRY_SECONDS}s"
    kubeadm reset --force
    sleep "$JOIN_RETRY_SECONDS"
  done
}

# etcdctl ARGS... : etcdctl in this node's etcd container, against this node's member.
etcdctl() {
  local container pki=/etc/kubernetes/pki/etcd # the path inside kubeadm's etcd pod too
  container=$(crictl ps --name '^etcd$' --state running -q 2>/dev/null | head -n 1)
  [[ -n $container ]] || return 1
  crictl exec "$container" etcdctl --endpoints=https://127.0.0.1:2379 --cacert="$pki/ca.crt" \
    --cert="$pki/healthcheck-client.crt" --key="$pki/healthcheck-client.key" "$@"
}

# control_plane_problem : prints what keeps this control plane from being a healthy member;
# fails (prints nothing) when there is nothing.
control_plane_problem() {
  local members ready
  if ! members=$(etcdctl member list 2>/dev/null); then
    echo "etcd is not running"
  elif ! grep -qE "^[0-9a-f]+, started, $NODE_NAME, " <<<"$members"; then
    echo "no started etcd member $NODE_NAME"
  elif ! etcdctl endpoint health >/dev/null 2>&1; then
    echo "etcd member $NODE_NAME is unhealthy"
  elif ready=$(KUBECONFIG=$K8S_DIR/admin.conf kubectl -n kube-system get pod \
    "kube-apiserver-$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' \
    2>/dev/null) && [[ $ready == True ]]; then
    return 1
  else
    echo "the static pod kube-apiserver-$NODE_NAME is not Ready"
  fi
}

# wait_until_healthy : nothing printed when the control plane is healthy within the time
# allowed; else what is still wrong.
wait_until_healthy() {
  local check problem
  for ((check = 1; check <= HEALTH_CHECKS; check++)); do
    problem=$(control_plane_problem) || return 0
    ((check == HEALTH_CHECKS)) || sleep "$HEALTH_CHECK_SECONDS"
  done
  printf '%s' "$problem"
}

make_workdir
if kubelet_joined; then
  log "node already joined"
else
  join_node
fi
if [[ $CONTROL_PLANE == 1 ]]; then
  problem=$(wait_until_healthy)
  if [[ -n $problem ]]; then
    log "joined, but not a healthy control plane ($problem); resetting and joining once more"
    kubeadm reset --force
    join_node
    problem=$(wait_until_healthy)
    [[ -z $problem ]] || die "$NODE_NAME did not become a healthy control plane: $problem." \
      "On $NODE_NAME see: crictl ps -a; journalctl -u kubelet. On the first control plane:" \
      "kubectl -n kube-system get pods -o wide"
  fi
  log "control plane healthy: etcd member started and healthy, API server Ready"
fi
# Kept for reference: the config as rendered (its token a placeholder, never a live token).
write_secret_file "$config" KUBEADM_JOIN_CONFIG_B64
if [[ $CONTROL_PLANE == 1 && -n ${KUBE_VIP_B64:-} ]]; then
  decode_param KUBE_VIP_B64 | write_if_changed "$K8S_DIR/manifests/kube-vip.yaml" 0600 || true
fi
log "node joined"
