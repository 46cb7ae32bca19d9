#!/usr/bin/env bash
# Build the pinned test tools from the Go module proxy into a version-keyed cache outside the
# repo. Three groups:
#   node       containerd 2.x, gVisor runsc + its containerd shim, crictl (tests/node, tests/vm)
#   apiserver  Kubernetes' seven binaries (kubeadm, kubelet, kubectl, kube-apiserver,
#              kube-controller-manager, kube-scheduler, kube-proxy) at the cluster's version,
#              and the etcd that kubeadm of that version deploys (tests/apiserver)
#   lint       actionlint, the GitHub Actions workflow linter (tests/test_workflows.py)
# Each lands in
#
#   ${SANDBOXED_K8S_CACHE:-~/.cache/sandboxed-k8s}/bin/<tool>-<version>/
#
# Idempotent: a tool whose folder is complete is not rebuilt. Builds go to a
# temporary folder that is renamed into place only on success, so an interrupted
# run never leaves a half-filled cache entry behind.
#
# One extra, test-only binary: gVisor's containerd shim rebuilt from the same pinned source
# with a single change (see build_gvisor_shim_testpatch): the shim sets its own
# oom_score_adj to -999 and aborts when that is refused. Lowering the score needs
# CAP_SYS_RESOURCE, which our development/CI hosts lack (nodes have it), so the tests use
# this build only on such hosts. Everything else is upstream source, unmodified.
#
# Usage: tools/build-test-tools.sh [GROUP...]          build what is missing, then print paths
#        tools/build-test-tools.sh --paths [GROUP...]  print paths only (no build, no network)
# With no GROUP, every group.
# Sourced (tools/build-lab-mirror.sh), it only defines its pins and functions.
#
# Output: one line per binary on stdout, "BIN <name> <absolute path>", which the
# pytest harnesses parse; progress and timings go to stderr.
set -euo pipefail

# --- pinned versions -------------------------------------------------------------
# containerd: newest 2.2.x the module proxy serves (config `version = 3`).
CONTAINERD_VERSION="v2.2.9"
# gVisor: the Go-buildable `go` branch has no semver tags; the proxy refuses the
# branch query (`@go`), and `go list -m gvisor.dev/gvisor@latest` resolved to this
# go-branch commit (2026-09-05, tree has the generated *_state_autogen.go files).
GVISOR_VERSION="v0.0.0-20260905035102-160fafc42237"
# crictl (cri-tools); v1.35.0 is not served by the proxy.
CRICTL_VERSION="v1.34.0"
# Bump when build_gvisor_shim_testpatch changes, so caches pick up the new patch.
SHIM_TESTPATCH_REV="p1"
# Kubernetes: the default `kubernetes.version` of the program (components/spec/defaults.py).
KUBERNETES_VERSION="v1.34.2"
# etcd: kubeadm v1.34.2's DefaultEtcdVersion (cmd/kubeadm/app/constants), 3.6.5-0.
ETCD_VERSION="v3.6.5"
# actionlint: newest release the module proxy serves.
ACTIONLINT_VERSION="v1.7.12"
# ----------------------------------------------------------------------------------

CACHE_ROOT="${SANDBOXED_K8S_CACHE:-${HOME}/.cache/sandboxed-k8s}"
BIN_ROOT="${CACHE_ROOT}/bin"

CONTAINERD_DIR="${BIN_ROOT}/containerd-${CONTAINERD_VERSION}"
GVISOR_DIR="${BIN_ROOT}/gvisor-${GVISOR_VERSION}"
CRICTL_DIR="${BIN_ROOT}/crictl-${CRICTL_VERSION}"
SHIM_TESTPATCH_DIR="${BIN_ROOT}/gvisor-shim-testpatch-${GVISOR_VERSION}-${SHIM_TESTPATCH_REV}"
KUBERNETES_DIR="${BIN_ROOT}/kubernetes-${KUBERNETES_VERSION}"
ETCD_DIR="${BIN_ROOT}/etcd-${ETCD_VERSION}"
ACTIONLINT_DIR="${BIN_ROOT}/actionlint-${ACTIONLINT_VERSION}"

CONTAINERD_BINS=(containerd containerd-shim-runc-v2 ctr)
GVISOR_BINS=(runsc containerd-shim-runsc-v1)
CRICTL_BINS=(crictl)
SHIM_TESTPATCH_BINS=(containerd-shim-runsc-v1)
# All seven: the lab mirror (tools/build-lab-mirror.sh) shares this folder, and kubeadm checks
# our rendered kubeadm configuration in tests/apiserver.
KUBERNETES_BINS=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler
    kube-proxy)
ETCD_BINS=(etcd)
ACTIONLINT_BINS=(actionlint)

# Never fetch another Go toolchain; use the one on the machine.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="-trimpath -buildvcs=false"

log() { printf '[build-test-tools] %s\n' "$*" >&2; }

now() { date +%s.%N; }

elapsed() { # start_timestamp -> seconds with one decimal
    awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'
}

# complete DIR NAME... : true when every named binary exists and is executable.
complete() {
    local dir="$1" name
    shift
    for name in "$@"; do
        [[ -x "${dir}/${name}" ]] || return 1
    done
}

print_paths() {
    local dir="$1" name
    shift
    for name in "$@"; do
        printf 'BIN %s %s\n' "${name}" "${dir}/${name}"
    done
}

# build_into DEST BUILDER NAME... : run BUILDER TMPDIR unless DEST is complete.
build_into() {
    local dest="$1" builder="$2" start tmp
    shift 2
    if complete "${dest}" "$@"; then
        log "cached: ${dest}"
        return 0
    fi
    mkdir -p "${BIN_ROOT}"
    tmp="$(mktemp -d "${dest}.tmp.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: tmp is local to this call
    trap "rm -rf '${tmp}'" EXIT
    start="$(now)"
    log "building $(basename "${dest}") ..."
    "${builder}" "${tmp}"
    complete "${tmp}" "$@" || { log "build of ${dest} is missing binaries"; return 1; }
    chmod 0755 "${tmp}"
    rm -rf "${dest}"
    mv "${tmp}" "${dest}"
    trap - EXIT
    log "built $(basename "${dest}") in $(elapsed "${start}") s"
}

build_containerd() {
    local out="$1" pkg="github.com/containerd/containerd/v2"
    local ldflags="-s -w -X ${pkg}/version.Version=${CONTAINERD_VERSION} -X ${pkg}/version.Revision=goproxy -X ${pkg}/version.Package=${pkg}"
    # Same tags as upstream's `make STATIC=1`; the shim additionally gets no_grpc.
    GOBIN="${out}" CGO_ENABLED=0 go install \
        -tags "urfave_cli_no_docs osusergo netgo static_build" -ldflags "${ldflags}" \
        "${pkg}/cmd/containerd@${CONTAINERD_VERSION}" "${pkg}/cmd/ctr@${CONTAINERD_VERSION}"
    GOBIN="${out}" CGO_ENABLED=0 go install \
        -tags "urfave_cli_no_docs osusergo netgo static_build no_grpc" -ldflags "${ldflags}" \
        "${pkg}/cmd/containerd-shim-runc-v2@${CONTAINERD_VERSION}"
}

build_gvisor() {
    local out="$1"
    GOBIN="${out}" CGO_ENABLED=0 go install \
        -ldflags "-s -w -X gvisor.dev/gvisor/runsc/version.version=${GVISOR_VERSION}" \
        "gvisor.dev/gvisor/runsc@${GVISOR_VERSION}" "gvisor.dev/gvisor/shim@${GVISOR_VERSION}"
    mv "${out}/shim" "${out}/containerd-shim-runsc-v1"
}

# The gVisor shim with one line changed, in pkg/shim/v1/manager.go:
#   if err := sys.SetOOMScore(cmd.Process.Pid, oomScoreMax); err != nil {
# becomes
#   if err := sys.SetOOMScore(cmd.Process.Pid, oomScoreMax); err != nil && !os.IsPermission(err) {
# i.e. a refused oom_score_adj write (no CAP_SYS_RESOURCE) no longer aborts the shim start;
# any other error still does. Fails closed if upstream's line is not found exactly once.
build_gvisor_shim_testpatch() {
    local out="$1" src work file old new content
    src="$(go mod download -json "gvisor.dev/gvisor@${GVISOR_VERSION}" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -n "${src}" && -d "${src}" ]] || { log "gvisor source not found"; return 1; }
    work="${out}/.src"
    mkdir -p "${work}"
    cp -R "${src}/." "${work}/"
    chmod -R u+w "${work}"
    file="${work}/pkg/shim/v1/manager.go"
    old='if err := sys.SetOOMScore(cmd.Process.Pid, oomScoreMax); err != nil {'
    new='if err := sys.SetOOMScore(cmd.Process.Pid, oomScoreMax); err != nil && !os.IsPermission(err) {'
    if [[ "$(grep -cF -- "${old}" "${file}")" != 1 ]]; then
        log "patch target not found exactly once in ${file}; review build_gvisor_shim_testpatch"
        return 1
    fi
    content="$(<"${file}")"
    printf '%s\n' "${content/"${old}"/"${new}"}" >"${file}"
    [[ "$(grep -cF -- "${new}" "${file}")" == 1 ]] || { log "patch did not apply"; return 1; }
    (
        cd "${work}"
        CGO_ENABLED=0 go build \
            -ldflags "-s -w -X gvisor.dev/gvisor/runsc/version.version=${GVISOR_VERSION}" \
            -o "${out}/containerd-shim-runsc-v1" ./shim
    )
    rm -rf "${work}"
}

build_crictl() {
    local out="$1"
    GOBIN="${out}" CGO_ENABLED=0 go install \
        -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION}" \
        "sigs.k8s.io/cri-tools/cmd/crictl@${CRICTL_VERSION}"
}

# Kubernetes' and etcd's own go.mod files replace some modules with folders of their
# repositories, so `go install MODULE@VERSION` refuses them. Their commands are built from a
# throwaway module that requires them instead (replace directives of a dependency are ignored).
# throwaway_module DIR MODULE VERSION [REPLACE_LINE...] : DIR/go.mod requiring MODULE@VERSION.
throwaway_module() {
    local dir="$1" module="$2" version="$3" line
    shift 3
    mkdir -p "${dir}"
    {
        printf 'module sandboxed-k8s.test/build\n\ngo 1.24.0\n\nrequire %s %s\n\n' \
            "${module}" "${version}"
        for line in "$@"; do
            printf '%s\n' "${line}"
        done
    } >"${dir}/go.mod"
    (cd "${dir}" && GOFLAGS="${GOFLAGS} -mod=mod" go get "${module}@${version}" >&2)
}

# Kubernetes' staging modules (k8s.io/api, k8s.io/client-go, ...) are published as v0.x
# releases of the same source: each is pointed there. The version variables are what `make`
# stamps; without them the binaries say v0.0.0-master and version checks (kubectl's skew
# warning, Pod Security's "latest") go wrong.
build_kubernetes() {
    local out="$1" gomod minor staging module cmd replaces=()
    gomod="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" \
        | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    [[ -f "${gomod}" ]] || { log "k8s.io/kubernetes go.mod not found"; return 1; }
    minor="${KUBERNETES_VERSION#v1.}"
    minor="${minor%%.*}"
    staging="v0.${KUBERNETES_VERSION#v1.}"
    while read -r module; do
        replaces+=("replace ${module} => ${module} ${staging}")
    done < <(sed -n 's|^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*$|\1|p' "${gomod}")
    [[ ${#replaces[@]} -gt 10 ]] || { log "no staging modules found in ${gomod}"; return 1; }
    throwaway_module "${out}/.mod" k8s.io/kubernetes "${KUBERNETES_VERSION}" "${replaces[@]}"
    local ldflags="-s -w" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X ${pkg}.gitVersion=${KUBERNETES_VERSION} -X ${pkg}.gitMajor=1"
        ldflags+=" -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean"
    done
    for cmd in "${KUBERNETES_BINS[@]}"; do
        (cd "${out}/.mod" && GOFLAGS="${GOFLAGS} -mod=mod" CGO_ENABLED=0 \
            go build -ldflags "${ldflags}" -o "${out}/${cmd}" "k8s.io/kubernetes/cmd/${cmd}")
    done
    rm -rf "${out}/.mod"
}

build_etcd() {
    local out="$1"
    throwaway_module "${out}/.mod" go.etcd.io/etcd/server/v3 "${ETCD_VERSION}"
    (cd "${out}/.mod" && GOFLAGS="${GOFLAGS} -mod=mod" CGO_ENABLED=0 \
        go build -ldflags "-s -w" -o "${out}/etcd" go.etcd.io/etcd/server/v3)
    rm -rf "${out}/.mod"
}

build_actionlint() {
    local out="$1"
    # `go install MODULE@VERSION` records the version; `actionlint -version` prints it.
    GOBIN="${out}" CGO_ENABLED=0 go install -ldflags "-s -w" \
        "github.com/rhysd/actionlint/cmd/actionlint@${ACTIONLINT_VERSION}"
}

build_group() {
    case "$1" in
        node)
            build_into "${CONTAINERD_DIR}" build_containerd "${CONTAINERD_BINS[@]}"
            build_into "${GVISOR_DIR}" build_gvisor "${GVISOR_BINS[@]}"
            build_into "${CRICTL_DIR}" build_crictl "${CRICTL_BINS[@]}"
            build_into "${SHIM_TESTPATCH_DIR}" build_gvisor_shim_testpatch \
                "${SHIM_TESTPATCH_BINS[@]}"
            ;;
        apiserver)
            build_into "${ETCD_DIR}" build_etcd "${ETCD_BINS[@]}"
            build_into "${KUBERNETES_DIR}" build_kubernetes "${KUBERNETES_BINS[@]}"
            ;;
        lint)
            build_into "${ACTIONLINT_DIR}" build_actionlint "${ACTIONLINT_BINS[@]}"
            ;;
    esac
}

print_group() {
    case "$1" in
        node)
            print_paths "${CONTAINERD_DIR}" "${CONTAINERD_BINS[@]}"
            print_paths "${GVISOR_DIR}" "${GVISOR_BINS[@]}"
            print_paths "${CRICTL_DIR}" "${CRICTL_BINS[@]}"
            printf 'BIN %s %s\n' containerd-shim-runsc-v1-testpatch \
                "${SHIM_TESTPATCH_DIR}/containerd-shim-runsc-v1"
            ;;
        apiserver)
            print_paths "${ETCD_DIR}" "${ETCD_BINS[@]}"
            print_paths "${KUBERNETES_DIR}" "${KUBERNETES_BINS[@]}"
            ;;
        lint)
            print_paths "${ACTIONLINT_DIR}" "${ACTIONLINT_BINS[@]}"
            ;;
    esac
}

main() {
    local build=true groups=() group
    if [[ "${1:-}" == "--paths" ]]; then
        build=false
        shift
    fi
    for group in "$@"; do
        case "${group}" in
            node | apiserver | lint) groups+=("${group}") ;;
            *) log "unknown group ${group} (node, apiserver, lint)"; exit 2 ;;
        esac
    done
    [[ ${#groups[@]} -gt 0 ]] || groups=(node apiserver lint)
    if "${build}"; then
        command -v go >/dev/null || { log "go is not installed"; exit 1; }
        local start
        start="$(now)"
        for group in "${groups[@]}"; do
            build_group "${group}"
        done
        log "${groups[*]} tools ready in $(elapsed "${start}") s"
    fi
    for group in "${groups[@]}"; do
        print_group "${group}"
    done
}

# Run only when executed: tools/build-lab-mirror.sh sources this file for its builders.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
