#!/usr/bin/env bash
# Not a node script: runs on the machine that runs `pulumi up`, before libvirt uploads the base image: fetches it
# once into a cache, verifies it against the stack's pinned checksum and prints its path. A
# mismatch leaves nothing behind and fails the step, so no VM is built from that image.
# Parameters (environment): IMAGE_SOURCE (http(s):// or file:// URL, or a path)
#                           IMAGE_CHECKSUM ("sha256:<hex>" or "sha512:<hex>") [IMAGE_CACHE_DIR]
set -euo pipefail

die() { printf 'fetch-base-image: %s\n' "$*" >&2; exit 1; }

: "${IMAGE_SOURCE:?IMAGE_SOURCE is required}" "${IMAGE_CHECKSUM:?IMAGE_CHECKSUM is required}"
algorithm=${IMAGE_CHECKSUM%%:*}
digest=${IMAGE_CHECKSUM#*:}
case $algorithm in
  sha256) [[ $digest =~ ^[0-9a-f]{64}$ ]] || die "malformed sha256: $digest" ;;
  sha512) [[ $digest =~ ^[0-9a-f]{128}$ ]] || die "malformed sha512: $digest" ;;
  *) die "unsupported checksum algorithm: $algorithm (sha256 or sha512)" ;;
esac
cache=${IMAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sandboxed-k8s/images}
dest="$cache/$algorithm-$digest.img"

digest_of() { "${algorithm}sum" -- "$1" | cut -d' ' -f1; }

if [[ -f $dest && $(digest_of "$dest") == "$digest" ]]; then
  printf '%s\n' "$dest"
  exit 0
fi
mkdir -p "$cache"
chmod 0700 "$cache"  # images may be private; the volumes made from them are 0600 too
tmp=$(mktemp "$cache/.fetch.XXXXXX")
trap 'rm -f "$tmp"' EXIT
case $IMAGE_SOURCE in
  http://* | https://*)
    curl -fsSL --retry 5 --retry-delay 2 --connect-timeout 20 -o "$tmp" "$IMAGE_SOURCE" ||
      die "download failed: $IMAGE_SOURCE"
    ;;
  file://*) cp -- "${IMAGE_SOURCE#file://}" "$tmp" ;;
  *) cp -- "$IMAGE_SOURCE" "$tmp" ;;
esac
actual=$(digest_of "$tmp")
[[ $actual == "$digest" ]] ||
  die "$IMAGE_SOURCE has $algorithm $actual, but the stack pins $digest; refusing it"
chmod 0600 "$tmp"
mv -- "$tmp" "$dest"
trap - EXIT
printf '%s\n' "$dest"
