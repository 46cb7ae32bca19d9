#!/usr/bin/env bash
# Installs kubeadm, kubelet and kubectl at the stack's pinned Kubernetes version and crictl
# (kubeadm's preflight requires it), each sha256-verified, plus the kubelet unit kubeadm drives.
# On a node that runs pods a new kubeadm, kubelet or kubectl waits for the node's upgrade step
# (see may_install in lib.sh).
# Parameters: K8S_VERSION K8S_BASE_URL KUBEADM_SHA256 KUBELET_SHA256 KUBECTL_SHA256
#             CRICTL_VERSION CRICTL_SHA256 CRICTL_BASE_URL
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=install-kubernetes
require_root
require_params K8S_VERSION K8S_BASE_URL KUBEADM_SHA256 KUBELET_SHA256 KUBECTL_SHA256 \
  CRICTL_VERSION CRICTL_SHA256 CRICTL_BASE_URL
PREFIX=${PREFIX:-/usr/local}
make_workdir
reload=0

for pair in "kubeadm:$KUBEADM_SHA256" "kubelet:$KUBELET_SHA256" "kubectl:$KUBECTL_SHA256"; do
  binary=${pair%%:*} digest=${pair#*:}
  if stamp_matches "$binary" "$digest" && [[ -x $PREFIX/bin/$binary ]]; then
    log "$binary $K8S_VERSION already installed"
    continue
  fi
  may_install "$binary" "$K8S_VERSION" || continue
  install_kube_binary "$binary" "$digest"
  [[ $binary != kubelet ]] || reload=1
done
check_only_done  # crictl is a client: a new one needs no drain

crictl_archive="crictl-v$CRICTL_VERSION-linux-amd64.tar.gz"
if stamp_matches crictl "$CRICTL_SHA256" && [[ -x $PREFIX/bin/crictl ]]; then
  log "crictl $CRICTL_VERSION already installed"
else
  fetch_verified "$CRICTL_BASE_URL/v$CRICTL_VERSION/$crictl_archive" sha256 "$CRICTL_SHA256" \
    "$WORK/$crictl_archive"
  tar -xzf "$WORK/$crictl_archive" -C "$WORK" crictl
  install_if_changed "$WORK/crictl" "$PREFIX/bin/crictl" 0755 || true
  stamp_write crictl "$CRICTL_SHA256" "$PREFIX/bin/crictl"
fi
write_if_changed /etc/crictl.yaml 0644 <<CONF || true
runtime-endpoint: unix:///run/containerd/containerd.sock
image-endpoint: unix:///run/containerd/containerd.sock
CONF

if write_if_changed /etc/systemd/system/kubelet.service 0644 <<UNIT; then reload=1; fi
[Unit]
Description=kubelet: The Kubernetes Node Agent
Wants=network-online.target containerd.service
After=network-online.target containerd.service

[Service]
ExecStart=$PREFIX/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
UNIT

# kubeadm writes the flags and config this drop-in reads, then (re)starts the kubelet itself.
if write_if_changed /etc/systemd/system/kubelet.service.d/10-kubeadm.conf 0644 <<UNIT; then reload=1; fi
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=$PREFIX/bin/kubelet \$KUBELET_KUBECONFIG_ARGS \$KUBELET_CONFIG_ARGS \$KUBELET_KUBEADM_ARGS \$KUBELET_EXTRA_ARGS
UNIT

if ((reload)); then
  systemctl daemon-reload
  systemctl enable kubelet >/dev/null 2>&1
  # A kubelet already joined to the cluster must pick up a new binary or unit.
  if [[ -f $K8S_DIR/kubelet.conf ]]; then restart_service kubelet; fi
fi
log "Kubernetes $K8S_VERSION tools installed"
