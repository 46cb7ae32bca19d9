#!/usr/bin/env bash
# Installs a pinned Kata Containers static release (sha256-verified) under /opt/kata.
# Kata runs each pod in a VM, so the node needs /dev/kvm; without it this fails, never
# reporting an install that could not run a pod.
# Parameters: KATA_VERSION KATA_SHA256 KATA_BASE_URL
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=install-kata
require_root
require_params KATA_VERSION KATA_SHA256 KATA_BASE_URL
[[ -c /dev/kvm ]] || die "/dev/kvm is missing: Kata needs nested virtualisation on this node"

if stamp_matches kata "$KATA_SHA256" && [[ -x /opt/kata/bin/containerd-shim-kata-v2 ]]; then
  log "Kata $KATA_VERSION already installed"
  exit 0
fi
make_workdir
archive="kata-static-$KATA_VERSION-amd64.tar.xz"
fetch_verified "$KATA_BASE_URL/$KATA_VERSION/$archive" sha256 "$KATA_SHA256" "$WORK/$archive"
mkdir -p "$WORK/unpacked"
tar -xJf "$WORK/$archive" -C "$WORK/unpacked"
[[ -x $WORK/unpacked/opt/kata/bin/containerd-shim-kata-v2 ]] ||
  die "$archive has no opt/kata/bin/containerd-shim-kata-v2"
rm -rf /opt/kata.new
mv "$WORK/unpacked/opt/kata" /opt/kata.new
rm -rf /opt/kata
mv /opt/kata.new /opt/kata
ln -sfn /opt/kata/bin/containerd-shim-kata-v2 /usr/local/bin/containerd-shim-kata-v2
stamp_write kata "$KATA_SHA256"
log "Kata $KATA_VERSION installed"
