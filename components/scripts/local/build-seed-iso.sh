#!/usr/bin/env bash
# Not a node script: runs on the machine that runs `pulumi up`. Builds one node's NoCloud seed
# (an ISO 9660 image labelled `cidata`) privately, so libvirt can upload it as a volume created
# 0600: the seed carries the node's SSH host private key, and the libvirt provider's own
# cloud-init disk is always created 0644.
# stdin: one line per file, `<name> <base64>`: user-data, meta-data, network-config.
# Parameters (environment): SEED_NAME (the stack and node, names the file) [SEED_CACHE_DIR]
# Prints the image's path. The same seed is built once; a new seed removes the node's old one.
set -euo pipefail

die() { printf 'build-seed-iso: %s\n' "$*" >&2; exit 1; }

: "${SEED_NAME:?SEED_NAME is required}"
[[ $SEED_NAME =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "bad SEED_NAME: $SEED_NAME"
mkisofs=$(command -v mkisofs || command -v genisoimage) ||
  die "mkisofs not found on PATH (Debian/Ubuntu: apt install genisoimage)"
umask 077
cache=${SEED_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sandboxed-k8s/seeds}
mkdir -p "$cache"
chmod 0700 "$cache"

work=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cat >"$work/stdin"
declare -A seen=()
while read -r name data extra || [[ -n ${name:-} ]]; do
  case $name in
    user-data | meta-data | network-config) ;;
    *) die "unexpected seed file: ${name:-(empty line)}" ;;
  esac
  [[ -z ${extra:-} ]] || die "malformed line for $name"
  [[ -z ${seen[$name]:-} ]] || die "$name given twice"
  seen[$name]=1
  base64 -d <<<"$data" >"$work/$name" 2>/dev/null || die "$name is not base64"
done <"$work/stdin"
for name in user-data meta-data network-config; do
  [[ -n ${seen[$name]:-} ]] || die "$name missing"
done

digest=$(sha256sum "$work/stdin" | cut -d' ' -f1)
dest="$cache/$SEED_NAME-$digest.iso"
if [[ ! -f $dest ]]; then
  "$mkisofs" -quiet -output "$work/seed.iso" -volid cidata -joliet -rock \
    "$work/user-data" "$work/meta-data" "$work/network-config"
  chmod 0600 "$work/seed.iso"
  mv -- "$work/seed.iso" "$dest"
fi
# Older seeds of this node hold keys that no longer apply.
for old in "$cache/$SEED_NAME-"*.iso; do
  [[ $old == "$dest" || ! -f $old ]] || rm -f -- "$old"
done
printf '%s\n' "$dest"
