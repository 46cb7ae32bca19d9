# shellcheck shell=bash
# Pushes the lab mirror's images (tools/build-lab-mirror.sh, sourced after
# lab-mirror-images.sh): one layer per image onto an empty OCI base with crane, config set with
# `crane mutate`, into distribution's filesystem storage through a registry on 127.0.0.1:5000
# in a private network namespace that lives only as long as the push.

# name|upstream reference|entrypoint|cmd|user (crane's comma-separated lists), as the
# consumers run them: kubeadm's static pods call kube-apiserver etc. and etcd from PATH, its
# kube-proxy DaemonSet /usr/local/bin/kube-proxy; CoreDNS, kube-vip and flanneld are their
# upstream images' entrypoints; the Flannel init containers call `cp`. CoreDNS runs as root
# (upstream: nonroot with a file capability to bind :53, which a layer made here does not
# carry; kubeadm's Deployment adds NET_BIND_SERVICE and drops the rest either way).
# The Kubernetes images of the upgrade version are named <image>+<version> (their layer's
# name; image_root builds them from that version's binaries).
image_table() {
    local k8s="${MIRROR_KUBERNETES_VERSION}" up="${MIRROR_UPGRADE_KUBERNETES_VERSION}" name
    printf '%s\n' "pause|registry.k8s.io/pause:${MIRROR_PAUSE_VERSION}|/pause||65535:65535"
    for name in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
        printf '%s\n' "${name}|registry.k8s.io/${name}:${k8s}|/usr/local/bin/${name}||" \
            "${name}+${up}|registry.k8s.io/${name}:${up}|/usr/local/bin/${name}||"
    done
    printf '%s\n' \
        "etcd|registry.k8s.io/etcd:${MIRROR_ETCD_IMAGE_TAG}||/usr/local/bin/etcd|" \
        "coredns|registry.k8s.io/coredns/coredns:${MIRROR_COREDNS_VERSION}|/coredns||" \
        "flannel|docker.io/flannel/flannel:${MIRROR_FLANNEL_VERSION}|/opt/bin/flanneld||" \
        "flannel-cni-plugin|docker.io/flannel/flannel-cni-plugin:${MIRROR_FLANNEL_CNI_IMAGE_TAG}||/bin/sh|" \
        "kube-network-policies|registry.k8s.io/networking/kube-network-policies:${MIRROR_NETPOL_VERSION}||/bin/netpol|" \
        "kube-vip|ghcr.io/kube-vip/kube-vip:${MIRROR_KUBE_VIP_VERSION}|/kube-vip||" \
        "nginx|docker.io/library/nginx:${MIRROR_NGINX_IMAGE_TAG}||nginx,-g,daemon off;|" \
        "busybox|docker.io/library/busybox:${MIRROR_BUSYBOX_IMAGE_TAG}||sh|"
}

# registry_config STORAGE ADDR [readonly] : a distribution config serving STORAGE on ADDR.
registry_config() {
    local readonly="false"
    [[ "${3:-}" != readonly ]] || readonly="true"
    cat <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $1
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: ${readonly}
http:
  addr: $2
YAML
}

# crane_in NETNS_PID ARG... : crane inside the namespace; its per-blob log goes to a file
# that is shown only on failure.
crane_in() {
    local ns="$1"
    shift
    nsenter -t "${ns}" -n "${CRANE_DIR}/crane" --insecure "$@" 2>>"${WORK}/crane.log"
}

# push_one NETNS_PID LINE : append, configure and push one image_table LINE; prints its
# manifest entry (JSON).
push_one() {
    local ns="$1" name ref entrypoint cmd user layer target args digest
    IFS='|' read -r name ref entrypoint cmd user <<<"$2"
    layer="${WORK}/layers/${name}.tar.gz"
    target="127.0.0.1:5000/${ref}"
    crane_in "${ns}" append --oci-empty-base -f "${layer}" -t "${target}" >/dev/null
    args=(--set-platform linux/amd64 -e "${IMAGE_PATH_ENV}" -w / -t "${target}")
    [[ -z "${entrypoint}" ]] || args+=(--entrypoint "${entrypoint}")
    [[ -z "${cmd}" ]] || args+=(--cmd "${cmd}")
    [[ -z "${user}" ]] || args+=(-u "${user}")
    crane_in "${ns}" mutate "${target}" "${args[@]}" >/dev/null
    digest="$(crane_in "${ns}" digest "${target}")"
    crane_in "${ns}" config "${target}" | jq -c --arg ref "${ref}" --arg digest "${digest}" \
        --arg name "${name}" \
        '{name: $name, reference: $ref, repository: ($ref | sub(":[^:/]*$"; "")),
          tag: ($ref | capture(":(?<t>[^:/]*)$").t), digest: $digest,
          config: (.config | {Entrypoint, Cmd, Env, WorkingDir, User})}'
}

# push_images ROOT : start a registry on ROOT/registry in a new network namespace, push every
# image, stop it. A subshell, so its EXIT trap stops what it started, also on failure.
push_images() (
    root="$1" ns="" reg="" tries=0
    # shellcheck disable=SC2317  # called by the trap
    stop_registry() {
        # shellcheck disable=SC2181  # the status the subshell exits with
        (($? == 0)) || tail -n 30 "${WORK}/crane.log" >&2 2>/dev/null || true
        [[ -z "${reg}" ]] || { kill "${reg}" 2>/dev/null; wait "${reg}" 2>/dev/null || true; }
        [[ -z "${ns}" ]] || { kill "${ns}" 2>/dev/null; wait "${ns}" 2>/dev/null || true; }
    }
    trap stop_registry EXIT
    registry_config "${root}/registry" 127.0.0.1:5000 >"${WORK}/registry.yml"
    unshare --net sleep infinity &
    ns=$!
    until nsenter -t "${ns}" -n ip link set lo up 2>/dev/null; do sleep 0.1; done
    OTEL_TRACES_EXPORTER=none nsenter -t "${ns}" -n "${REGISTRY_DIR}/registry" serve \
        "${WORK}/registry.yml" >"${WORK}/registry.log" 2>&1 &
    reg=$!
    until nsenter -t "${ns}" -n curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ 2>/dev/null; do
        ((++tries < 100)) || { log "registry did not start"; cat "${WORK}/registry.log" >&2; exit 1; }
        sleep 0.1
    done
    while read -r line; do
        push_one "${ns}" "${line}"
    done < <(image_table) >"${root}/.index/images.json"
)

build_images() {
    local root="$1" line name
    WORK="${root}/.work"
    mkdir -p "${WORK}/layers" "${root}/registry" "${root}/.index"
    unpack_debian "${WORK}"
    cp "${WORK}/debian.json" "${root}/.index/debian.json"
    while IFS='|' read -r name line; do
        image_root "${name}" "${WORK}/rootfs/${name}" "${WORK}/debroot"
        reproducible_tgz "${WORK}/layers/${name}.tar.gz" "${WORK}/rootfs/${name}" .
    done < <(image_table)
    push_images "${root}"
    rm -rf "${WORK}"
}
