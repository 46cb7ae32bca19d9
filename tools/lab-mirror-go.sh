# shellcheck shell=bash
# Go builders of tools/build-lab-mirror.sh (sourced by it, after tools/build-test-tools.sh,
# whose build_into, throwaway_module, build_kubernetes, build_etcd, build_gvisor and
# build_crictl they reuse). Every binary is built from the Go module proxy at the versions
# pinned at the top of build-lab-mirror.sh, into ${BIN_ROOT}/<tool>-<version>/; a folder that
# already holds its binaries is reused, whichever of the two scripts built it.

# go_install OUT LDFLAGS TAGS PACKAGE@VERSION... : a static (CGO_ENABLED=0) `go install`.
go_install() {
    local out="$1" ldflags="$2" tags="$3"
    shift 3
    GOBIN="${out}" CGO_ENABLED=0 go install -tags "${tags}" -ldflags "-s -w ${ldflags}" "$@"
}

# containerd's go.mod carries exclude directives, which `go install MODULE@VERSION` refuses:
# built from a throwaway module with the tags and stamps of tools/build-test-tools.sh.
build_containerd_module() {
    local out="$1" pkg="github.com/containerd/containerd/v2" v="${MIRROR_CONTAINERD_VERSION}"
    local ldflags="-s -w -X ${pkg}/version.Version=${v} -X ${pkg}/version.Revision=goproxy -X ${pkg}/version.Package=${pkg}"
    local tags="urfave_cli_no_docs osusergo netgo static_build"
    throwaway_module "${out}/.mod" "${pkg}" "${v}"
    (cd "${out}/.mod" && GOFLAGS="${GOFLAGS} -mod=mod" CGO_ENABLED=0 go build -tags "${tags}" \
        -ldflags "${ldflags}" -o "${out}/" "${pkg}/cmd/containerd" "${pkg}/cmd/ctr")
    (cd "${out}/.mod" && GOFLAGS="${GOFLAGS} -mod=mod" CGO_ENABLED=0 go build \
        -tags "${tags} no_grpc" -ldflags "${ldflags}" -o "${out}/" \
        "${pkg}/cmd/containerd-shim-runc-v2")
    rm -rf "${out}/.mod"
}

build_etcdctl() {
    local out="$1"
    # Like etcd's server, etcdctl's go.mod replaces its siblings with folders.
    throwaway_module "${out}/.mod" go.etcd.io/etcd/etcdctl/v3 "${MIRROR_ETCD_VERSION}"
    (cd "${out}/.mod" && GOFLAGS="${GOFLAGS} -mod=mod" CGO_ENABLED=0 \
        go build -ldflags "-s -w" -o "${out}/etcdctl" go.etcd.io/etcd/etcdctl/v3)
    rm -rf "${out}/.mod"
}

build_coredns() {
    go_install "$1" "" "" "github.com/coredns/coredns@${MIRROR_COREDNS_VERSION}"
}

# Flannel's UDP backend is C (cgo): linked statically, as upstream's release build does.
build_flannel() {
    local v="${MIRROR_FLANNEL_VERSION}"
    GOBIN="$1" CGO_ENABLED=1 go install -tags "netgo osusergo" \
        -ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=${v} -linkmode external -extldflags -static" \
        "github.com/flannel-io/flannel@${v}"
    mv "$1/flannel" "$1/flanneld"
}

build_flannel_cni_plugin() {
    local pkg="github.com/containernetworking/plugins"
    go_install "$1" "-X ${pkg}/pkg/utils/buildversion.BuildVersion=${MIRROR_FLANNEL_CNI_MODULE_VERSION}" \
        "" "${pkg}/plugins/meta/flannel@${MIRROR_FLANNEL_CNI_MODULE_VERSION}"
}

build_network_policies() {
    go_install "$1" "" "" \
        "sigs.k8s.io/kube-network-policies/cmd/kube-network-policies/standard@${MIRROR_NETPOL_VERSION}"
    mv "$1/standard" "$1/netpol"
}

# The checksum database does not answer for kube-vip v0.9.2 (404), so it is exempted from the
# lookup and checked against the module hash pinned with the version instead. The proxy also
# refuses its version list (403), which `go install`/`go get` read for deprecation notices:
# built from a hand-written throwaway module, which needs neither.
build_kube_vip() {
    local out="$1" pkg="github.com/kube-vip/kube-vip" v="${MIRROR_KUBE_VIP_VERSION}" sum
    local -x GONOSUMDB="${pkg}"  # for this module only
    sum="$(go mod download -json "${pkg}@${v}" | jq -r .Sum)"
    [[ "${sum}" == "${MIRROR_KUBE_VIP_SUM}" ]] ||
        { log "kube-vip module hash ${sum} is not the pinned ${MIRROR_KUBE_VIP_SUM}"; return 1; }
    mkdir -p "${out}/.mod"
    printf 'module sandboxed-k8s.test/build\n\ngo 1.24.4\n\nrequire %s %s\n' "${pkg}" "${v}" \
        >"${out}/.mod/go.mod"
    (cd "${out}/.mod" && GOFLAGS="${GOFLAGS} -mod=mod" CGO_ENABLED=0 go build \
        -ldflags "-s -w -X main.Version=${v} -X main.Build=goproxy" -o "${out}/kube-vip" "${pkg}")
    rm -rf "${out}/.mod"
}

# The reference plugins as upstream's release archive holds them: every Linux main package
# under plugins/{main,ipam,meta}.
build_cni_plugins() {
    local out="$1" pkg="github.com/containernetworking/plugins" dir
    throwaway_module "${out}/.mod" "${pkg}" "${MIRROR_CNI_PLUGINS_VERSION}"
    dir="$(cd "${out}/.mod" && go list -m -f '{{.Dir}}' "${pkg}")"
    (cd "${out}/.mod" && GOFLAGS="${GOFLAGS} -mod=mod" CGO_ENABLED=0 go build \
        -ldflags "-s -w -X ${pkg}/pkg/utils/buildversion.BuildVersion=${MIRROR_CNI_PLUGINS_VERSION}" \
        -o "${out}/" "${pkg}/plugins/main/..." "${pkg}/plugins/ipam/..." "${pkg}/plugins/meta/...")
    [[ -d "${dir}/plugins/main/bridge" ]] || { log "unexpected plugins tree in ${dir}"; return 1; }
    rm -rf "${out}/.mod"
}

# runc as upstream releases it: static, with libseccomp (Debian's libseccomp-dev) linked in.
build_runc() {
    local out="$1" version="${MIRROR_RUNC_VERSION#v}"
    GOBIN="${out}" CGO_ENABLED=1 go install -tags "seccomp netgo osusergo urfave_cli_no_docs" \
        -ldflags "-s -w -X main.version=${version} -X main.gitCommit=goproxy -linkmode external -extldflags -static" \
        "github.com/opencontainers/runc@${MIRROR_RUNC_VERSION}"
}

build_registry() {
    local pkg="github.com/distribution/distribution/v3"
    go_install "$1" "-X ${pkg}/version.version=${MIRROR_DISTRIBUTION_VERSION}" "" \
        "${pkg}/cmd/registry@${MIRROR_DISTRIBUTION_VERSION}"
}

build_crane() {
    local pkg="github.com/google/go-containerregistry"
    go_install "$1" "-X ${pkg}/cmd/crane/cmd.Version=${MIRROR_CRANE_VERSION}" "" \
        "${pkg}/cmd/crane@${MIRROR_CRANE_VERSION}"
}

# The pause container from Kubernetes' own source, built as its Makefile does (static C).
build_pause() {
    local out="$1" src
    src="$(go mod download -json "k8s.io/kubernetes@${MIRROR_KUBERNETES_VERSION}" | jq -r .Dir)"
    gcc -Os -Wall -Werror -static -DVERSION="v${MIRROR_PAUSE_VERSION}-goproxy" \
        -o "${out}/pause" "${src}/build/pause/linux/pause.c"
    strip "${out}/pause"
}

# kubernetes_dir VERSION : where the Kubernetes binaries of VERSION are built.
kubernetes_dir() {
    printf '%s\n' "${BIN_ROOT}/kubernetes-$1"
}

# build_all_binaries : every binary the mirror needs, each folder reused when complete.
# Sets the *_DIR variables the layout and image steps read, and the version variables
# build-test-tools.sh's builders read.
# shellcheck disable=SC2034
build_all_binaries() {
    local v
    KUBERNETES_BINS=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager
        kube-scheduler kube-proxy)
    for v in "${MIRROR_UPGRADE_KUBERNETES_VERSION}" "${MIRROR_KUBERNETES_VERSION}"; do
        KUBERNETES_VERSION="${v}"  # build_kubernetes reads it
        build_into "$(kubernetes_dir "${v}")" build_kubernetes "${KUBERNETES_BINS[@]}"
    done
    K8S_DIR="$(kubernetes_dir "${MIRROR_KUBERNETES_VERSION}")"

    ETCD_VERSION="${MIRROR_ETCD_VERSION}"
    ETCD_DIR="${BIN_ROOT}/etcd-${MIRROR_ETCD_VERSION}"
    build_into "${ETCD_DIR}" build_etcd etcd
    ETCDCTL_DIR="${BIN_ROOT}/etcdctl-${MIRROR_ETCD_VERSION}"
    build_into "${ETCDCTL_DIR}" build_etcdctl etcdctl

    CONTAINERD_DIR="${BIN_ROOT}/containerd-${MIRROR_CONTAINERD_VERSION}"
    build_into "${CONTAINERD_DIR}" build_containerd_module containerd containerd-shim-runc-v2 ctr

    GVISOR_VERSION="${MIRROR_GVISOR_VERSION}"
    GVISOR_DIR="${BIN_ROOT}/gvisor-${MIRROR_GVISOR_VERSION}"
    build_into "${GVISOR_DIR}" build_gvisor runsc containerd-shim-runsc-v1

    CRICTL_VERSION="${MIRROR_CRICTL_VERSION}"
    CRICTL_DIR="${BIN_ROOT}/crictl-${MIRROR_CRICTL_VERSION}"
    build_into "${CRICTL_DIR}" build_crictl crictl

    v="${MIRROR_CNI_PLUGINS_VERSION}"
    CNI_DIR="${BIN_ROOT}/cni-plugins-${v}"
    build_into "${CNI_DIR}" build_cni_plugins bridge host-local loopback portmap bandwidth firewall
    RUNC_DIR="${BIN_ROOT}/runc-${MIRROR_RUNC_VERSION}"
    build_into "${RUNC_DIR}" build_runc runc
    COREDNS_DIR="${BIN_ROOT}/coredns-${MIRROR_COREDNS_VERSION}"
    build_into "${COREDNS_DIR}" build_coredns coredns
    FLANNEL_DIR="${BIN_ROOT}/flannel-${MIRROR_FLANNEL_VERSION}"
    build_into "${FLANNEL_DIR}" build_flannel flanneld
    FLANNEL_CNI_DIR="${BIN_ROOT}/flannel-cni-plugin-${MIRROR_FLANNEL_CNI_MODULE_VERSION}"
    build_into "${FLANNEL_CNI_DIR}" build_flannel_cni_plugin flannel
    NETPOL_DIR="${BIN_ROOT}/kube-network-policies-${MIRROR_NETPOL_VERSION}"
    build_into "${NETPOL_DIR}" build_network_policies netpol
    KUBE_VIP_DIR="${BIN_ROOT}/kube-vip-${MIRROR_KUBE_VIP_VERSION}"
    build_into "${KUBE_VIP_DIR}" build_kube_vip kube-vip
    REGISTRY_DIR="${BIN_ROOT}/registry-${MIRROR_DISTRIBUTION_VERSION}"
    build_into "${REGISTRY_DIR}" build_registry registry
    CRANE_DIR="${BIN_ROOT}/crane-${MIRROR_CRANE_VERSION}"
    build_into "${CRANE_DIR}" build_crane crane
    PAUSE_DIR="${BIN_ROOT}/pause-${MIRROR_PAUSE_VERSION}"
    build_into "${PAUSE_DIR}" build_pause pause
}
