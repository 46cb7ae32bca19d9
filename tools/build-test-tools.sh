#!/usr/bin/env bash
# Build the pinned node-test tools (containerd 2.x, gVisor runsc + its containerd
# shim, crictl) from the Go module proxy into a version-keyed cache outside the repo:
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
# Usage: tools/build-test-tools.sh           build what is missing, then print paths
#        tools/build-test-tools.sh --paths   print paths only (no build, no network)
#
# Output: one line per binary on stdout, "BIN <name> <absolute path>", which the
# pytest harness in tests/node parses; progress and timings go to stderr.
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
# ----------------------------------------------------------------------------------

CACHE_ROOT="${SANDBOXED_K8S_CACHE:-${HOME}/.cache/sandboxed-k8s}"
BIN_ROOT="${CACHE_ROOT}/bin"

CONTAINERD_DIR="${BIN_ROOT}/containerd-${CONTAINERD_VERSION}"
GVISOR_DIR="${BIN_ROOT}/gvisor-${GVISOR_VERSION}"
CRICTL_DIR="${BIN_ROOT}/crictl-${CRICTL_VERSION}"
SHIM_TESTPATCH_DIR="${BIN_ROOT}/gvisor-shim-testpatch-${GVISOR_VERSION}-${SHIM_TESTPATCH_REV}"

CONTAINERD_BINS=(containerd containerd-shim-runc-v2 ctr)
GVISOR_BINS=(runsc containerd-shim-runsc-v1)
CRICTL_BINS=(crictl)
SHIM_TESTPATCH_BINS=(containerd-shim-runsc-v1)

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

main() {
    if [[ "${1:-}" != "--paths" ]]; then
        command -v go >/dev/null || { log "go is not installed"; exit 1; }
        local start
        start="$(now)"
        build_into "${CONTAINERD_DIR}" build_containerd "${CONTAINERD_BINS[@]}"
        build_into "${GVISOR_DIR}" build_gvisor "${GVISOR_BINS[@]}"
        build_into "${CRICTL_DIR}" build_crictl "${CRICTL_BINS[@]}"
        build_into "${SHIM_TESTPATCH_DIR}" build_gvisor_shim_testpatch "${SHIM_TESTPATCH_BINS[@]}"
        log "all tools ready in $(elapsed "${start}") s"
    fi
    print_paths "${CONTAINERD_DIR}" "${CONTAINERD_BINS[@]}"
    print_paths "${GVISOR_DIR}" "${GVISOR_BINS[@]}"
    print_paths "${CRICTL_DIR}" "${CRICTL_BINS[@]}"
    printf 'BIN %s %s\n' containerd-shim-runsc-v1-testpatch \
        "${SHIM_TESTPATCH_DIR}/containerd-shim-runsc-v1"
}

main "$@"
