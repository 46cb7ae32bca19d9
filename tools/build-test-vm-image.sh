#!/usr/bin/env bash
# Build, or reuse from the cache, the Debian 12 disk image that tests/vm boots under qemu.
#
# The image is a plain ext4 filesystem (no partition table, no bootloader) converted to a
# compressed qcow2, with the kernel and initrd beside it for qemu's direct kernel boot:
#   qemu-system-x86_64 -kernel vmlinuz -initrd initrd.img \
#     -append "root=/dev/vda rw console=ttyS0 net.ifnames=0" -drive file=OVERLAY,if=virtio ...
# It is built with mmdebstrap, so it needs no loop devices, mounts of the image or network
# besides Debian's mirror. Tests must boot a qcow2 overlay on top of it, never the file itself.
#
# The cache lives outside the repository, in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/sandboxed-k8s/vm/<hash of the recipe below>/
# so changing the recipe (suite, packages, size, hook) builds a new image and a second run
# with the same recipe costs nothing.
#
# Usage: tools/build-test-vm-image.sh [--print-dir] [--force]
#   --print-dir  print the cache directory for the current recipe and exit (builds nothing)
#   --force      rebuild even when the cached image exists
# Progress goes to stderr; the last line on stdout is the image directory, which holds
#   rootfs.qcow2  vmlinuz  initrd.img  recipe.txt  packages.txt  READY
set -euo pipefail

# ---- the recipe: everything here feeds the cache key -------------------------------------
RECIPE_VERSION=2
SUITE=bookworm
ARCH=amd64
VARIANT=minbase
IMAGE_SIZE=4G
MIRRORS=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
PACKAGES=(
  # boot and init
  systemd-sysv linux-image-amd64 initramfs-tools kmod udev dbus procps
  # cloud-init and what its modules call on Debian (growpart/resize2fs, schema validation)
  cloud-init cloud-guest-utils python3-jsonschema locales sudo
  # network as on Debian's own bookworm cloud images (the nodes' base image): cloud-init
  # renders netplan, netplan drives systemd-networkd, systemd-resolved serves DNS. (With
  # ifupdown instead, cloud-init 22.4 renders static routes as `route add` and DNS as
  # resolvconf options, and both silently do nothing on a minimal system.)
  netplan.io systemd-resolved libnss-myhostname iproute2 netbase ca-certificates curl
  # access: sshd with an sftp server so scp works too; guest agent for later host-side checks
  openssh-server openssh-sftp-server qemu-guest-agent
  # what kubeadm's preflight and the node scripts expect; the scripts still install these
  # themselves (idempotently) because real cloud images may lack them
  gnupg iptables conntrack socat ethtool
  # the rest of what the node's user-data installs when missing (components/render/
  # cloudinit.py PACKAGES): with all of it here a node needs no package repository
  bzip2 xz-utils nftables
)
# Run inside mmdebstrap as: sh -c "$CUSTOMIZE_HOOK" exec ROOTFS
# shellcheck disable=SC2016  # expanded by the hook's shell, not here
CUSTOMIZE_HOOK='set -eu
# Every VM must get its own host keys from cloud-init (ssh_keys / ssh_genkeytypes), never
# ones baked into the shared image.
rm -f "$1"/etc/ssh/ssh_host_*
# mmdebstrap copies the build host'"'"'s files: use systemd-resolved'"'"'s like the cloud images,
# and let cloud-init set the host name.
ln -sf /run/systemd/resolve/resolv.conf "$1"/etc/resolv.conf
echo localhost > "$1"/etc/hostname
chroot "$1" systemctl enable systemd-networkd.service systemd-resolved.service
# Only the NoCloud seed disk: cloud-init must never probe a metadata service on the network.
printf "%s\n" "datasource_list: [ NoCloud, None ]" \
  > "$1"/etc/cloud/cloud.cfg.d/90_sandboxed_k8s_test.cfg
'
# -------------------------------------------------------------------------------------------

print_dir_only=false
force=false
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir_only=true ;;
    --force) force=true ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown argument: $arg" >&2
      exit 2
      ;;
  esac
done

log() { printf '[build-test-vm-image %4ss] %s\n' "$SECONDS" "$*" >&2; }

recipe_text() {
  printf 'recipe_version=%s\nsuite=%s\narch=%s\nvariant=%s\nsize=%s\n' \
    "$RECIPE_VERSION" "$SUITE" "$ARCH" "$VARIANT" "$IMAGE_SIZE"
  printf 'mirror=%s\n' "${MIRRORS[@]}"
  printf 'package=%s\n' "${PACKAGES[@]}" | LC_ALL=C sort
  printf 'customize_hook<<\n%s\n>>\n' "$CUSTOMIZE_HOOK"
}

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/sandboxed-k8s/vm"
recipe_hash="$(recipe_text | sha256sum | cut -c1-16)"
image_dir="$cache_root/debian12-$recipe_hash"

if $print_dir_only; then
  echo "$image_dir"
  exit 0
fi

if ! $force && [[ -f "$image_dir/READY" ]]; then
  log "cached image: $image_dir"
  echo "$image_dir"
  exit 0
fi

ensure_host_tools() {
  local -a missing=()
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
  command -v qemu-img >/dev/null || missing+=(qemu-utils)
  command -v cloud-localds >/dev/null || missing+=(cloud-image-utils)
  command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
  command -v ssh >/dev/null || missing+=(openssh-client)
  command -v ssh-keygen >/dev/null || missing+=(openssh-client)
  command -v flock >/dev/null || missing+=(util-linux)
  [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring)
  if ((${#missing[@]})); then
    if ((EUID != 0)); then
      echo "missing host packages (need root to install): ${missing[*]}" >&2
      exit 1
    fi
    log "installing host packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${missing[@]}" >&2
  fi
}

ensure_host_tools
mkdir -p "$cache_root"

# One builder at a time; a second caller waits and then finds the image ready.
exec 9>"$cache_root/.build.lock"
log "waiting for build lock"
flock 9
if ! $force && [[ -f "$image_dir/READY" ]]; then
  log "cached image (built by another process): $image_dir"
  echo "$image_dir"
  exit 0
fi

work="$(mktemp -d "$cache_root/.build-$recipe_hash.XXXXXX")"
cleanup() {
  # --one-file-system: never descend into anything mmdebstrap may have left mounted
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

log "building image for recipe $recipe_hash in $work"
recipe_text >"$work/recipe.txt"

t0=$SECONDS
mmdebstrap_args=(
  --variant="$VARIANT"
  --architectures="$ARCH"
  --include="$(
    IFS=,
    echo "${PACKAGES[*]}"
  )"
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --customize-hook="$CUSTOMIZE_HOOK"
)
mmdebstrap "${mmdebstrap_args[@]}" "$SUITE" "$work/rootfs" "${MIRRORS[@]}" >&2
log "mmdebstrap: $((SECONDS - t0)) s"
dpkg-query --admindir="$work/rootfs/var/lib/dpkg" -W -f='${Package} ${Version}\n' \
  >"$work/packages.txt"

t0=$SECONDS
shopt -s nullglob
kernels=("$work"/rootfs/boot/vmlinuz-*)
initrds=("$work"/rootfs/boot/initrd.img-*)
shopt -u nullglob
if ((${#kernels[@]} != 1 || ${#initrds[@]} != 1)); then
  echo "expected exactly one kernel and one initrd in /boot, got: ${kernels[*]} ${initrds[*]}" >&2
  exit 1
fi
install -m 0644 "${kernels[0]}" "$work/vmlinuz"
install -m 0644 "${initrds[0]}" "$work/initrd.img"
basename "${kernels[0]}" >"$work/kernel-version.txt"

mkfs.ext4 -q -F -L sk8s-root -m 1 -d "$work/rootfs" "$work/rootfs.raw" "$IMAGE_SIZE" >&2
rm -rf --one-file-system "$work/rootfs"
log "mkfs.ext4: $((SECONDS - t0)) s"

t0=$SECONDS
qemu-img convert -c -O qcow2 "$work/rootfs.raw" "$work/rootfs.qcow2"
rm -f "$work/rootfs.raw"
chmod 0444 "$work/rootfs.qcow2"
log "qemu-img convert: $((SECONDS - t0)) s ($(du -h "$work/rootfs.qcow2" | cut -f1))"

chmod 0755 "$work"
date -u +%Y-%m-%dT%H:%M:%SZ >"$work/READY"
rm -rf --one-file-system "$image_dir"
mv "$work" "$image_dir"
log "image ready: $image_dir (total $SECONDS s)"
echo "$image_dir"
