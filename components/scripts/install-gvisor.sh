#!/usr/bin/env bash
# Installs gVisor's runsc and containerd-shim-runsc-v1 from a pinned dated release.
# Every file is downloaded and verified (sha512) before any is installed: on a mismatch the
# script fails and the binaries already installed stay as they were.
# Layouts: "binaries" (runsc and the shim as separate files, each with a .sha512) and
# "archive" (one gvisor.tar.bz2 with a .sha512, holding both and a gvisor-bin/ helper folder).
# On a node that runs pods a new release waits for the node's upgrade step (may_install, lib.sh).
# Parameters: GVISOR_RELEASE GVISOR_BASE_URL GVISOR_LAYOUT [RUNSC_SHA512 SHIM_SHA512]
#             [GVISOR_ARCH (x86_64)] [PREFIX (/usr/local)]
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=install-gvisor
require_root
require_params GVISOR_RELEASE GVISOR_BASE_URL GVISOR_LAYOUT
GVISOR_ARCH=${GVISOR_ARCH:-x86_64}
PREFIX=${PREFIX:-/usr/local}
RUNSC_SHA512=${RUNSC_SHA512:-}
SHIM_SHA512=${SHIM_SHA512:-}
release_url="$GVISOR_BASE_URL/$GVISOR_RELEASE/$GVISOR_ARCH"
stamp="$GVISOR_RELEASE $GVISOR_LAYOUT $RUNSC_SHA512 $SHIM_SHA512"

if stamp_matches gvisor "$stamp" && [[ -x $PREFIX/bin/runsc && -x $PREFIX/bin/containerd-shim-runsc-v1 ]]; then
  log "gVisor $GVISOR_RELEASE already installed"
  exit 0
fi
may_install gVisor "$GVISOR_RELEASE" || { check_only_done; exit 0; }
make_workdir

# expected_digest FILE PINNED : the pinned digest if given, else the release's FILE.sha512.
# A pinned digest must also agree with the published one.
expected_digest() {
  local file=$1 pinned=$2 published
  fetch "$release_url/$file.sha512" "$WORK/$file.sha512"
  published=$(cut -d' ' -f1 <"$WORK/$file.sha512")
  [[ $published =~ ^[0-9a-f]{128}$ ]] || die "$file.sha512 from the release is malformed"
  if [[ -n $pinned && $pinned != "$published" ]]; then
    die "pinned sha512 for $file differs from the release's published $file.sha512"
  fi
  printf '%s\n' "${pinned:-$published}"
}

staged="$WORK/staged"
mkdir -p "$staged"
case $GVISOR_LAYOUT in
  binaries)
    for pair in "runsc:$RUNSC_SHA512" "containerd-shim-runsc-v1:$SHIM_SHA512"; do
      file=${pair%%:*}
      digest=$(expected_digest "$file" "${pair#*:}")
      fetch_verified "$release_url/$file" sha512 "$digest" "$staged/$file"
    done
    ;;
  archive)
    digest=$(expected_digest gvisor.tar.bz2 "")
    fetch_verified "$release_url/gvisor.tar.bz2" sha512 "$digest" "$WORK/gvisor.tar.bz2"
    mkdir -p "$WORK/unpacked"
    tar -xjf "$WORK/gvisor.tar.bz2" -C "$WORK/unpacked"
    for file in runsc containerd-shim-runsc-v1; do
      found=$(find "$WORK/unpacked" -type f -name "$file" -print -quit)
      [[ -n $found ]] || die "gvisor.tar.bz2 of release $GVISOR_RELEASE has no $file"
      cp "$found" "$staged/$file"
    done
    helpers=$(find "$WORK/unpacked" -type d -name gvisor-bin -print -quit)
    [[ -z $helpers ]] || cp -r "$helpers" "$staged/gvisor-bin"
    ;;
  *) die "GVISOR_LAYOUT must be binaries or archive, not $GVISOR_LAYOUT" ;;
esac

# Everything is verified: only now touch the installed files.
for file in runsc containerd-shim-runsc-v1; do
  install_if_changed "$staged/$file" "$PREFIX/bin/$file" 0755 || true
done
if [[ -d $staged/gvisor-bin ]]; then
  # runsc looks for its helpers in gvisor-bin/ next to itself.
  rm -rf "$PREFIX/bin/gvisor-bin.new"
  cp -r "$staged/gvisor-bin" "$PREFIX/bin/gvisor-bin.new"
  rm -rf "$PREFIX/bin/gvisor-bin"
  mv "$PREFIX/bin/gvisor-bin.new" "$PREFIX/bin/gvisor-bin"
fi
"$PREFIX/bin/runsc" --version >/dev/null || die "installed runsc does not run"
stamp_write gvisor "$stamp" "$PREFIX/bin/runsc" "$PREFIX/bin/containerd-shim-runsc-v1"
log "gVisor $GVISOR_RELEASE installed ($GVISOR_LAYOUT)"
