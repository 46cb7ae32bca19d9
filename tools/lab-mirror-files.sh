# shellcheck shell=bash
# The files half of tools/build-lab-mirror.sh (sourced by it): the built binaries laid out as
# the upstream download sites the program's default *.baseUrl point at, with the checksum files
# those sites publish, and manifest.json. Archives hold exactly the members
# components/scripts/install-*.sh extract, and are reproducible (fixed mtimes, owners, order,
# gzip header), so the same binaries always give the same sha256.

# place SRC DEST : DEST gets SRC's content (a hard link where the filesystem allows).
place() {
    mkdir -p "$(dirname "$2")"
    ln -f "$1" "$2" 2>/dev/null || cp -f "$1" "$2"
}

# reproducible_tgz DEST DIR MEMBER... : a .tar.gz of MEMBERs (relative to DIR), reproducibly.
reproducible_tgz() {
    local dest="$1" dir="$2"
    shift 2
    mkdir -p "$(dirname "${dest}")"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
        -C "${dir}" -cf - "$@" | gzip -n -6 >"${dest}"
}

# sum_line ALGO FILE : the line ALGOsum prints for FILE ("<hex>  <basename>").
sum_line() {
    printf '%s  %s\n' "$("${1}sum" "$2" | cut -d' ' -f1)" "$(basename "$2")"
}

# lay_out_kubernetes FILES : kubeadm, kubelet and kubectl of the default version and of the
# version the cluster layer upgrades to.
lay_out_kubernetes() {
    local f="$1" dir name version
    for version in "${MIRROR_KUBERNETES_VERSION}" "${MIRROR_UPGRADE_KUBERNETES_VERSION}"; do
        # dl.k8s.io publishes <binary>.sha256 holding the bare digest.
        dir="${f}/dl.k8s.io/release/${version}/bin/linux/amd64"
        for name in kubeadm kubelet kubectl; do
            place "$(kubernetes_dir "${version}")/${name}" "${dir}/${name}"
            sha256sum "${dir}/${name}" | cut -d' ' -f1 >"${dir}/${name}.sha256"
        done
    done
}

lay_out_containerd() {
    local f="$1" stage="$2" v="${MIRROR_CONTAINERD_VERSION#v}" name archive
    mkdir -p "${stage}/containerd/bin"
    for name in containerd containerd-shim-runc-v2 ctr; do
        place "${CONTAINERD_DIR}/${name}" "${stage}/containerd/bin/${name}"
    done
    archive="${f}/github.com/containerd/containerd/releases/download/v${v}/containerd-${v}-linux-amd64.tar.gz"
    reproducible_tgz "${archive}" "${stage}/containerd" bin
    sum_line sha256 "${archive}" >"${archive}.sha256sum"
}

lay_out_runc() {
    local dir="$1/github.com/opencontainers/runc/releases/download/${MIRROR_RUNC_VERSION}"
    place "${RUNC_DIR}/runc" "${dir}/runc.amd64"
    sum_line sha256 "${dir}/runc.amd64" >"${dir}/runc.sha256sum"
}

lay_out_cni_plugins() {
    local f="$1" stage="$2" v="${MIRROR_CNI_PLUGINS_VERSION}" plugin archive
    mkdir -p "${stage}/cni"
    for plugin in "${CNI_DIR}"/*; do
        place "${plugin}" "${stage}/cni/$(basename "${plugin}")"
    done
    archive="${f}/github.com/containernetworking/plugins/releases/download/${v}/cni-plugins-linux-amd64-${v}.tgz"
    # Upstream's archive holds ./bridge, ./loopback, ...: install-containerd.sh copies ./*.
    reproducible_tgz "${archive}" "${stage}/cni" .
    sum_line sha256 "${archive}" >"${archive}.sha256"
    sum_line sha512 "${archive}" >"${archive}.sha512"
}

lay_out_crictl() {
    local f="$1" v="${MIRROR_CRICTL_VERSION}" archive
    archive="${f}/github.com/kubernetes-sigs/cri-tools/releases/download/${v}/crictl-${v}-linux-amd64.tar.gz"
    # install-kubernetes.sh extracts the member `crictl` by that exact name.
    reproducible_tgz "${archive}" "${CRICTL_DIR}" crictl
    sum_line sha256 "${archive}" >"${archive}.sha256"
}

lay_out_gvisor() {
    local dir name
    dir="$1/storage.googleapis.com/gvisor/releases/release/${MIRROR_GVISOR_RELEASE}/x86_64"
    for name in runsc containerd-shim-runsc-v1; do
        place "${GVISOR_DIR}/${name}" "${dir}/${name}"
        # install-gvisor.sh reads the first field of <binary>.sha512, sha512sum's format.
        sum_line sha512 "${dir}/${name}" >"${dir}/${name}.sha512"
    done
}

lay_out_files() {
    local root="$1" f="$1/files" stage="$1/.stage"
    mkdir -p "${f}" "${stage}" "${root}/bin"
    lay_out_kubernetes "${f}"
    lay_out_containerd "${f}" "${stage}"
    lay_out_runc "${f}"
    lay_out_cni_plugins "${f}" "${stage}"
    lay_out_crictl "${f}"
    lay_out_gvisor "${f}"
    place "${REGISTRY_DIR}/registry" "${root}/bin/registry"
    place "${CRANE_DIR}/crane" "${root}/bin/crane"
    rm -rf "${stage}"
}

# files_json ROOT : one object per file under files/, with its upstream URL and digests.
files_json() {
    local root="$1" rel sha512
    (cd "${root}" && find files -type f | LC_ALL=C sort) | while read -r rel; do
        sha512=""
        [[ "${rel}" != files/storage.googleapis.com/gvisor/* ]] ||
            sha512="$(sha512sum "${root}/${rel}" | cut -d' ' -f1)"
        jq -n --arg path "${rel}" --arg url "https://${rel#files/}" \
            --arg sha256 "$(sha256sum "${root}/${rel}" | cut -d' ' -f1)" --arg sha512 "${sha512}" \
            '{path: $path, url: $url, sha256: $sha256} + (if $sha512 == "" then {} else {sha512: $sha512} end)'
    done | jq -s .
}

# versions_json : every MIRROR_* pin, keyed by its name without the prefix, lowercased.
versions_json() {
    local var
    for var in $(compgen -v MIRROR_); do
        jq -n --arg k "$(tr '[:upper:]' '[:lower:]' <<<"${var#MIRROR_}")" --arg v "${!var}" \
            '{($k): $v}'
    done | jq -s add
}

write_manifest() {
    local root="$1"
    jq -n --arg key "$(mirror_key)" --argjson versions "$(versions_json)" \
        --argjson files "$(files_json "${root}")" \
        --slurpfile images "${root}/.index/images.json" \
        --slurpfile debs "${root}/.index/debian.json" \
        '{key: $key, versions: $versions, files: $files, images: $images,
          debian_packages: ($debs | add), bin: {registry: "bin/registry", crane: "bin/crane"}}' \
        >"${root}/manifest.json.tmp"
    rm -rf "${root}/.index"
    mv "${root}/manifest.json.tmp" "${root}/manifest.json"
}
