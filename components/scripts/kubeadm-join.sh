#!/usr/bin/env bash
# Joins this node to the cluster (as a worker, or as a further control plane when CONTROL_PLANE
# is 1). Discovery is pinned by the CA hash in the rendered config. Already joined: nothing is
# done; a half-finished join is reset first.
# Parameters: KUBEADM_JOIN_CONFIG_B64 [CONTROL_PLANE (0|1); for control planes: the PKI_FILES
#             parameters, ENCRYPTION_CONFIG_B64, AUDIT_POLICY_B64, KUBE_VIP_B64]
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=kubeadm-join
require_root
require_params KUBEADM_JOIN_CONFIG_B64
CONTROL_PLANE=${CONTROL_PLANE:-0}
config=/etc/kubernetes/sandboxed-k8s/kubeadm-join.yaml

if kubelet_joined; then
  log "node already joined"
else
  if [[ -f /etc/kubernetes/kubelet.conf || -e /etc/kubernetes/manifests/kube-apiserver.yaml ]]; then
    log "found a half-finished join; resetting it"
    kubeadm reset --force
  fi
  if [[ $CONTROL_PLANE == 1 ]]; then
    install_pki
    install_apiserver_files
  fi
  write_secret_file "$config" KUBEADM_JOIN_CONFIG_B64
  kubeadm join --config "$config"
fi
write_secret_file "$config" KUBEADM_JOIN_CONFIG_B64
if [[ $CONTROL_PLANE == 1 && -n ${KUBE_VIP_B64:-} ]]; then
  decode_param KUBE_VIP_B64 | write_if_changed /etc/kubernetes/manifests/kube-vip.yaml 0600 || true
fi
log "node joined"
