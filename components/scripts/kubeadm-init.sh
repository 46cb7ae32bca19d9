#!/usr/bin/env bash
# Initialises the first control plane with kubeadm from the rendered config and the program's
# PKI. Already initialised and healthy: nothing is done. Half initialised (an earlier run
# failed part-way): reset, then init again, so the next run converges.
# A new machine in an HA cluster's first place (its VM replaced) never runs init: the other
# control planes still answer at the VIP, and init would start a second, empty cluster.
# Parameters: KUBEADM_CONFIG_B64, ENCRYPTION_CONFIG_B64, AUDIT_POLICY_B64,
#             the PKI_FILES parameters (see lib.sh),
#             [KUBE_VIP_BOOTSTRAP_B64 KUBE_VIP_B64 CLUSTER_ENDPOINT] (HA: the VIP static pod
#             during/after init, and the VIP)
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=kubeadm-init
require_root
require_params KUBEADM_CONFIG_B64
config=$K8S_DIR/sandboxed-k8s/kubeadm-init.yaml
admin=$K8S_DIR/admin.conf
manifests=$K8S_DIR/manifests

api_ready() {
  [[ -f $admin ]] && kubectl --kubeconfig "$admin" get --raw=/readyz >/dev/null 2>&1
}

if api_ready; then
  log "control plane already initialised"
else
  if [[ -n ${CLUSTER_ENDPOINT:-} && ! -e $manifests/kube-apiserver.yaml ]] &&
    curl -fsk --max-time 10 "https://$CLUSTER_ENDPOINT/livez" >/dev/null 2>&1; then
    die "the cluster still answers at $CLUSTER_ENDPOINT from its other control planes:" \
      "kubeadm init here would start a second, empty cluster beside it. The first control" \
      "plane's VM cannot be replaced while they run (see README, Operations)"
  fi
  if [[ -e $manifests/kube-apiserver.yaml || -f $K8S_DIR/kubelet.conf ]]; then
    log "found a half-initialised control plane; resetting it before init"
    kubeadm reset --force
  fi
  clear_pod_network
  install_pki
  install_apiserver_files
  write_secret_file "$config" KUBEADM_CONFIG_B64
  if [[ -n ${KUBE_VIP_BOOTSTRAP_B64:-} ]]; then
    mkdir -p "$manifests"
    decode_param KUBE_VIP_BOOTSTRAP_B64 | write_if_changed "$manifests/kube-vip.yaml" 0600 || true
  fi
  kubeadm init --config "$config"
fi
install_pki
install_apiserver_files
write_secret_file "$config" KUBEADM_CONFIG_B64
if [[ -n ${KUBE_VIP_B64:-} ]]; then
  decode_param KUBE_VIP_B64 | write_if_changed "$manifests/kube-vip.yaml" 0600 || true
fi

for _ in $(seq 60); do
  api_ready && break
  sleep 5
done
api_ready || die "the API server did not become ready; see: crictl ps -a; journalctl -u kubelet"
log "control plane ready"
