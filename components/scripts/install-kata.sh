#!/usr/bin/env bash
# Installs a pinned Kata Containers static release (sha256-verified) under /opt/kata.
# Kata runs each pod in a VM, so the node needs /dev/kvm; without it this fails, never
# reporting an install that could not run a pod. The archive is verified and unpacked before
# the installed tree is touched: on any failure the previous install stays as it was. On a node
# that runs pods a new release waits for the node's upgrade step (may_install, lib.sh).
# Parameters: KATA_VERSION KATA_SHA256 KATA_BASE_URL
#             [KATA_ROOT (/opt/kata)] [PREFIX (/usr/local)] [KVM_DEVICE (/dev/kvm)]
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=install-kata
require_root
require_params KATA_VERSION KATA_SHA256 KATA_BASE_URL
KATA_ROOT=${KATA_ROOT:-/opt/kata}
PREFIX=${PREFIX:-/usr/local}
KVM_DEVICE=${KVM_DEVICE:-/dev/kvm}
# The static release is built for /opt/kata; these are the files containerd's config names.
SHIM=bin/containerd-shim-kata-v2
CONFIG=share/defaults/kata-containers/configuration.toml

[[ -c $KVM_DEVICE ]] ||
  die "$KVM_DEVICE is missing: Kata needs nested virtualisation on this node"

if stamp_matches kata "$KATA_VERSION $KATA_SHA256" && [[ -x $KATA_ROOT/$SHIM ]]; then
  log "Kata $KATA_VERSION already installed"
  exit 0
fi
may_install Kata "$KATA_VERSION" || { check_only_done; exit 0; }
make_workdir
archive="kata-static-$KATA_VERSION-amd64.tar.xz"
fetch_verified "$KATA_BASE_URL/$KATA_VERSION/$archive" sha256 "$KATA_SHA256" "$WORK/$archive"
mkdir -p "$WORK/unpacked"
tar -xJf "$WORK/$archive" -C "$WORK/unpacked" || die "$archive does not unpack"
for file in "$SHIM" "$CONFIG"; do
  [[ -e $WORK/unpacked/opt/kata/$file ]] || die "$archive has no opt/kata/$file"
done

# Verified and complete: swap the tree in, then point containerd's shim lookup (PATH) at it.
rm -rf "$KATA_ROOT.new"
mkdir -p "$(dirname "$KATA_ROOT")"
mv "$WORK/unpacked/opt/kata" "$KATA_ROOT.new"
rm -rf "$KATA_ROOT"
mv "$KATA_ROOT.new" "$KATA_ROOT"
mkdir -p "$PREFIX/bin"
ln -sfn "$KATA_ROOT/$SHIM" "$PREFIX/bin/containerd-shim-kata-v2"
stamp_write kata "$KATA_VERSION $KATA_SHA256" "$KATA_ROOT/$SHIM" "$KATA_ROOT/$CONFIG"
log "Kata $KATA_VERSION installed"
