#!/usr/bin/env bash
# Build the lab mirror: every binary and image a cluster of the program's default versions
# fetches, built from source (the Go module proxy, Kubernetes' pause.c, Debian packages), laid
# out as the upstream download sites and registries serve them. docs/lab-mirror.md describes
# what is built and the layout; tests/lab/mirror.py serves it.
#
#   ${SANDBOXED_K8S_CACHE:-~/.cache/sandboxed-k8s}/mirror-<key>/
#     files/<upstream URL without scheme>   binaries, archives and their checksum files
#     registry/                             distribution's filesystem storage, every image
#                                           pushed as <upstream host>/<path>:<tag>
#     bin/registry, bin/crane               to serve and read it
#     manifest.json                         versions, files (URL, sha256), images (digest)
#
# <key> hashes the pinned-versions block below (and LAYOUT_REV): new pins, new mirror. The
# mirror is assembled in a temporary folder and renamed into place only when complete, so a
# second run finds it and does nothing. Go binaries are cached per tool and version under
# bin/ like tools/build-test-tools.sh's (the same folders, so either script reuses the other's).
#
# Needs: root (the images are pushed by a registry on loopback in a private network namespace),
# go, gcc + libseccomp-dev (static runc and pause), jq, apt-get (Debian packages for the images).
# Usage: tools/build-lab-mirror.sh   prints "MIRROR <path>" on stdout; progress on stderr.
set -euo pipefail

# --- pinned versions -------------------------------------------------------------
# Kubernetes: the program's default kubernetes.version (components/spec.py DEFAULTS).
MIRROR_KUBERNETES_VERSION="v1.34.2"
# The version the cluster layer upgrades the lab cluster to with kubeadm's procedure: the next
# patch release, whose kubeadm keeps v1.34.2's etcd, CoreDNS and pause. Its kubeadm, kubelet,
# kubectl and four Kubernetes images are laid out beside the default's.
MIRROR_UPGRADE_KUBERNETES_VERSION="v1.34.3"
# etcd: kubeadm v1.34.2's DefaultEtcdVersion 3.6.5-0 (cmd/kubeadm/app/constants).
MIRROR_ETCD_VERSION="v3.6.5"
MIRROR_ETCD_IMAGE_TAG="3.6.5-0"
# CoreDNS: kubeadm v1.34.2's CoreDNSVersion (same constants file).
MIRROR_COREDNS_VERSION="v1.12.1"
# pause: kubeadm v1.34.2's PauseVersion; built from the k8s.io/kubernetes module's pause.c.
MIRROR_PAUSE_VERSION="3.10.1"
# Flannel: the program's default cni.flannelVersion.
MIRROR_FLANNEL_VERSION="v0.26.7"
# The Flannel CNI plugin image keeps the program's default tag (cni.flannelCniPluginVersion)
# but holds the same delegating plugin from containernetworking/plugins v0.9.1
# (plugins/meta/flannel): flannel-io/cni-plugin is not served by the module proxy.
MIRROR_FLANNEL_CNI_IMAGE_TAG="v1.7.1-flannel1"
MIRROR_FLANNEL_CNI_MODULE_VERSION="v0.9.1"
# kube-network-policies: v1.1.0, the enforcer the program is moving to (its default image
# today is v0.7.0).
MIRROR_NETPOL_VERSION="v1.1.0"
# kube-vip: the program's default kubeVip.version. Its module hash (go.sum h1:), checked by
# hand as the checksum database does not answer for it.
MIRROR_KUBE_VIP_VERSION="v0.9.2"
MIRROR_KUBE_VIP_SUM="h1:LAvGmK34svcNhTxXNyDoV7s1bHYEgXrM3ff2FxfH6Us="
# containerd, runc, CNI plugins, crictl: the program's defaults.
MIRROR_CONTAINERD_VERSION="v2.1.5"
MIRROR_RUNC_VERSION="v1.3.4"
MIRROR_CNI_PLUGINS_VERSION="v1.8.0"
MIRROR_CRICTL_VERSION="v1.34.0"
# gVisor: the go-branch commit tools/build-test-tools.sh builds (the `go` branch has no tags);
# its release name is the commit date, as upstream's dated releases (default 20251118.0,
# which is not a commit the proxy resolves).
MIRROR_GVISOR_VERSION="v0.0.0-20260905035102-160fafc42237"
MIRROR_GVISOR_RELEASE="20260905.0"
# The registry and the pusher: the newest releases the proxy serves.
MIRROR_DISTRIBUTION_VERSION="v3.0.0"
MIRROR_CRANE_VERSION="v0.20.3"
# Test images, under the tags the program names: from Debian 12's packages (whatever
# version Debian ships, recorded in manifest.json), not upstream's builds.
MIRROR_NGINX_IMAGE_TAG="1.27"
MIRROR_BUSYBOX_IMAGE_TAG="1.36.1"
# Bump when the layout or the image recipes change without a version change.
# shellcheck disable=SC2034  # read through compgen, like every pin
MIRROR_LAYOUT_REV="1"
# ----------------------------------------------------------------------------------

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=build-test-tools.sh
source "${HERE}/build-test-tools.sh"
# shellcheck source=lab-mirror-go.sh
source "${HERE}/lab-mirror-go.sh"
# shellcheck source=lab-mirror-files.sh
source "${HERE}/lab-mirror-files.sh"
# shellcheck source=lab-mirror-images.sh
source "${HERE}/lab-mirror-images.sh"
# shellcheck source=lab-mirror-push.sh
source "${HERE}/lab-mirror-push.sh"

log() { printf '[build-lab-mirror] %s\n' "$*" >&2; }

mirror_key() {
    sed -n '/^# --- pinned versions/,/^# -----/p' "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12
}

# timed LABEL COMMAND... : run COMMAND and log how long it took.
timed() {
    local label="$1" start
    shift
    start="$(now)"
    "$@"
    log "${label}: $(elapsed "${start}") s"
}

main() {
    local dest tmp start
    dest="${CACHE_ROOT}/mirror-$(mirror_key)"
    if [[ -f "${dest}/manifest.json" ]]; then
        log "cached: ${dest}"
        printf 'MIRROR %s\n' "${dest}"
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || { log "must run as root (a private network namespace)"; exit 1; }
    local cmd
    for cmd in go gcc jq curl apt-get dpkg-deb unshare nsenter readelf; do
        command -v "${cmd}" >/dev/null || { log "${cmd} is not installed"; exit 1; }
    done
    start="$(now)"
    timed "binaries" build_all_binaries
    mkdir -p "${CACHE_ROOT}"
    tmp="$(mktemp -d "${dest}.tmp.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: tmp is local
    trap "rm -rf '${tmp}'" EXIT
    timed "files" lay_out_files "${tmp}"
    timed "images" build_images "${tmp}"
    write_manifest "${tmp}"
    rm -rf "${dest}"
    mv "${tmp}" "${dest}"
    trap - EXIT
    log "mirror ready in $(elapsed "${start}") s: ${dest}"
    printf 'MIRROR %s\n' "${dest}"
}

main "$@"
