#!/usr/bin/env bash
# Installs pinned containerd, runc and the CNI reference plugins, each verified by sha256 before
# anything is put in place. A re-run with the same pins downloads and restarts nothing.
# On a node without /etc/containerd/config.toml, containerd is installed but not started: the
# config step starts it with the node's config, so it never runs with the built-in defaults.
# On a node that runs pods new versions wait for the node's upgrade step (may_install, lib.sh).
# Parameters: CONTAINERD_VERSION CONTAINERD_SHA256 CONTAINERD_BASE_URL
#             RUNC_VERSION RUNC_SHA256 RUNC_BASE_URL
#             CNI_PLUGINS_VERSION CNI_PLUGINS_SHA256 CNI_PLUGINS_BASE_URL
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=install-containerd
require_root
require_params CONTAINERD_VERSION CONTAINERD_SHA256 CONTAINERD_BASE_URL \
  RUNC_VERSION RUNC_SHA256 RUNC_BASE_URL \
  CNI_PLUGINS_VERSION CNI_PLUGINS_SHA256 CNI_PLUGINS_BASE_URL
PREFIX=${PREFIX:-/usr/local}
make_workdir
restart=0

containerd_archive="containerd-$CONTAINERD_VERSION-linux-amd64.tar.gz"
if stamp_matches containerd "$CONTAINERD_SHA256" && [[ -x $PREFIX/bin/containerd ]]; then
  log "containerd $CONTAINERD_VERSION already installed"
elif may_install containerd "$CONTAINERD_VERSION"; then
  fetch_verified "$CONTAINERD_BASE_URL/v$CONTAINERD_VERSION/$containerd_archive" sha256 \
    "$CONTAINERD_SHA256" "$WORK/$containerd_archive"
  mkdir -p "$WORK/containerd"
  tar -xzf "$WORK/$containerd_archive" -C "$WORK/containerd"
  installed=()
  for binary in "$WORK"/containerd/bin/*; do
    installed+=("$PREFIX/bin/$(basename "$binary")")
    if install_if_changed "$binary" "${installed[-1]}" 0755; then restart=1; fi
  done
  stamp_write containerd "$CONTAINERD_SHA256" "${installed[@]}"
fi

if stamp_matches runc "$RUNC_SHA256" && [[ -x $PREFIX/sbin/runc ]]; then
  log "runc $RUNC_VERSION already installed"
elif may_install runc "$RUNC_VERSION"; then
  fetch_verified "$RUNC_BASE_URL/v$RUNC_VERSION/runc.amd64" sha256 "$RUNC_SHA256" "$WORK/runc"
  install_if_changed "$WORK/runc" "$PREFIX/sbin/runc" 0755 || true
  stamp_write runc "$RUNC_SHA256" "$PREFIX/sbin/runc"
fi

cni_archive="cni-plugins-linux-amd64-v$CNI_PLUGINS_VERSION.tgz"
if stamp_matches cni-plugins "$CNI_PLUGINS_SHA256" && [[ -x /opt/cni/bin/bridge ]]; then
  log "CNI plugins $CNI_PLUGINS_VERSION already installed"
elif may_install "CNI plugins" "$CNI_PLUGINS_VERSION"; then
  fetch_verified "$CNI_PLUGINS_BASE_URL/v$CNI_PLUGINS_VERSION/$cni_archive" sha256 \
    "$CNI_PLUGINS_SHA256" "$WORK/$cni_archive"
  mkdir -p "$WORK/cni" /opt/cni/bin
  tar -xzf "$WORK/$cni_archive" -C "$WORK/cni"
  installed=()
  for binary in "$WORK"/cni/*; do
    [[ -f $binary ]] || continue
    installed+=("/opt/cni/bin/$(basename "$binary")")
    install_if_changed "$binary" "${installed[-1]}" 0755 || true
  done
  stamp_write cni-plugins "$CNI_PLUGINS_SHA256" "${installed[@]}"
fi

check_only_done
if write_if_changed /etc/systemd/system/containerd.service 0644 <<UNIT; then restart=1; fi
[Unit]
Description=containerd container runtime
After=network.target local-fs.target

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=$PREFIX/bin/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
UNIT

if [[ ! -f /etc/containerd/config.toml ]]; then
  # First setup: configure-containerd starts it once, with the node's config.
  log "containerd is started once its config is installed"
elif ((restart)) || ! systemctl is-active --quiet containerd; then
  restart_service containerd
else
  log "containerd unchanged, not restarted"
fi
