# shellcheck shell=bash
# The images half of tools/build-lab-mirror.sh (sourced by it). Each image is one reproducible
# layer (a root filesystem tarred with fixed mtimes, owners and order) appended by crane onto an
# empty OCI base, its config set with `crane mutate`, pushed into the mirror's registry storage
# by a registry that listens on loopback inside a private network namespace. No container
# engine is involved. Userland the images need (busybox, nginx, iptables, conntrack) comes
# from Debian 12's packages, reduced to the files used and the libraries they load.

# shellcheck disable=SC2034  # read by lab-mirror-push.sh
IMAGE_PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Debian packages the images take files from (apt-get download, unpacked, never installed).
DEBIAN_PACKAGES=(busybox-static nginx nginx-common libc6 libcrypt1 libpcre2-8-0 libssl3 zlib1g
    iptables libip4tc2 libip6tc2 libxtables12 libnftnl11 libmnl0 libnetfilter-conntrack3
    libnfnetlink0 conntrack libnetfilter-cthelper0 libnetfilter-queue1)
LIB_DIRS=(lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib64)

# unpack_debian WORK : WORK/debroot holds every DEBIAN_PACKAGES file; WORK/debian.json their
# versions.
unpack_debian() {
    local work="$1" deb
    mkdir -p "${work}/debs" "${work}/debroot"
    # apt drops privileges to _apt for downloads; let it write here.
    chmod 0777 "${work}/debs"
    (cd "${work}/debs" && apt-get download -qq "${DEBIAN_PACKAGES[@]}" >&2) || {
        apt-get update -qq >&2
        (cd "${work}/debs" && apt-get download -qq "${DEBIAN_PACKAGES[@]}" >&2)
    }
    for deb in "${work}"/debs/*.deb; do
        dpkg-deb -x "${deb}" "${work}/debroot"
        jq -n --arg p "$(dpkg-deb -f "${deb}" Package)" --arg v "$(dpkg-deb -f "${deb}" Version)" \
            '{($p): $v}'
    done | jq -s add >"${work}/debian.json"
}

# resolve_lib DEBROOT SONAME : the path (relative to DEBROOT) of a library, symlinks resolved.
resolve_lib() {
    local debroot="$1" soname="$2" dir real
    for dir in "${LIB_DIRS[@]}"; do
        if [[ -e "${debroot}/${dir}/${soname}" ]]; then
            real="$(realpath "${debroot}/${dir}/${soname}")"
            printf '%s\n' "${real#"${debroot}/"}"
            return 0
        fi
    done
    return 1
}

# add_libs ROOT DEBROOT FILE... : copy into ROOT the dynamic loader and every library the FILEs
# (inside ROOT) need, transitively, each under its soname in the folder Debian ships it in.
add_libs() {
    local root="$1" debroot="$2" file needed rel interp
    shift 2
    local queue=("$@")
    while ((${#queue[@]})); do
        file="${queue[0]}"
        queue=("${queue[@]:1}")
        interp="$(readelf -lW "${file}" 2>/dev/null |
            sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')"
        if [[ -n "${interp}" && ! -e "${root}${interp}" ]]; then
            mkdir -p "$(dirname "${root}${interp}")"
            cp -L "${debroot}${interp}" "${root}${interp}"
        fi
        while read -r needed; do
            rel="$(resolve_lib "${debroot}" "${needed}")" ||
                { log "no ${needed} (needed by ${file}) in DEBIAN_PACKAGES"; return 1; }
            rel="$(dirname "${rel}")/${needed}"
            [[ ! -e "${root}/${rel}" ]] || continue
            mkdir -p "$(dirname "${root}/${rel}")"
            cp -L "${debroot}/${rel}" "${root}/${rel}"
            queue+=("${root}/${rel}")
        done < <(readelf -dW "${file}" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
    done
}

# base_root ROOT : the folders and accounts every image has.
base_root() {
    local root="$1"
    mkdir -p "${root}"/{dev,proc,sys,etc,run,var,usr/local/bin,bin,sbin}
    install -d -m 1777 "${root}/tmp"
    ln -sfn ../run "${root}/var/run"
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'www-data:x:33:33:www-data:/var/www:/bin/false' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"${root}/etc/passwd"
    printf '%s\n' 'root:x:0:' 'www-data:x:33:' 'nogroup:x:65534:' >"${root}/etc/group"
}

# add_busybox ROOT DEBROOT : Debian's static busybox with a /bin link per applet.
add_busybox() {
    local root="$1" applet
    install -m 0755 "$2/bin/busybox" "${root}/bin/busybox"
    for applet in $("$2/bin/busybox" --list); do
        [[ "${applet}" == busybox || -e "${root}/bin/${applet}" ]] ||
            ln -s busybox "${root}/bin/${applet}"
    done
}

# add_iptables ROOT DEBROOT : iptables/ip6tables (nf_tables backend, Debian 12's default, so
# rules land where the node's own iptables sees them), their extension modules and conntrack.
add_iptables() {
    local root="$1" debroot="$2" xt="usr/lib/x86_64-linux-gnu/xtables" name
    install -D -m 0755 "${debroot}/usr/sbin/xtables-nft-multi" "${root}/usr/sbin/xtables-nft-multi"
    install -D -m 0755 "${debroot}/usr/sbin/conntrack" "${root}/usr/sbin/conntrack"
    for name in iptables iptables-save iptables-restore ip6tables ip6tables-save \
        ip6tables-restore iptables-nft iptables-nft-save iptables-nft-restore ip6tables-nft \
        ip6tables-nft-save ip6tables-nft-restore; do
        ln -sfn xtables-nft-multi "${root}/usr/sbin/${name}"
    done
    mkdir -p "${root}/${xt}"
    cp -a "${debroot}/${xt}/." "${root}/${xt}/"
    add_libs "${root}" "${debroot}" "${root}/usr/sbin/xtables-nft-multi" \
        "${root}/usr/sbin/conntrack" "${root}/${xt}"/*.so
}

# add_nginx ROOT DEBROOT : Debian's nginx, its config, user and folders; logs to the
# container's stdout/stderr as upstream's image does, one server on port 80.
add_nginx() {
    local root="$1" debroot="$2"
    install -D -m 0755 "${debroot}/usr/sbin/nginx" "${root}/usr/sbin/nginx"
    cp -a "${debroot}/etc/nginx" "${root}/etc/nginx"
    mkdir -p "${root}/etc/nginx/modules-enabled" "${root}/etc/nginx/conf.d" \
        "${root}/var/lib/nginx" "${root}/var/log/nginx" "${root}/usr/share/nginx"
    rm -f "${root}/etc/nginx/sites-enabled/"*
    cp -a "${debroot}/usr/share/nginx/html" "${root}/usr/share/nginx/html"
    cat >"${root}/etc/nginx/conf.d/default.conf" <<'CONF'
server {
    listen 80 default_server;
    root /usr/share/nginx/html;
    index index.html;
}
CONF
    ln -sfn /dev/stdout "${root}/var/log/nginx/access.log"
    ln -sfn /dev/stderr "${root}/var/log/nginx/error.log"
    add_libs "${root}" "${debroot}" "${root}/usr/sbin/nginx"
}

# smoke ROOT COMMAND... : COMMAND must run inside ROOT, or the image is broken. Runs chrooted
# in a private mount namespace that lends ROOT the host's /dev and /proc meanwhile.
smoke() {
    # shellcheck disable=SC2016  # expanded by the inner sh
    local root="$1" script='mount --rbind /dev "$0/dev" && mount -t proc proc "$0/proc" &&
        exec chroot "$0" "$@"'
    shift
    unshare --mount --fork sh -c "${script}" "${root}" "$@" >/dev/null 2>&1 || {
        log "image root ${root}: '$*' fails:"
        unshare --mount --fork sh -c "${script}" "${root}" "$@" >&2 || true
        return 1
    }
}

# check_root NAME ROOT : what image NAME's consumers run works in a copy of ROOT (the checks
# leave files behind: pid files, nginx's temp folders).
check_root() {
    local name="${1%%+*}" copy="$2.check" k8s
    rm -rf "${copy}"
    cp -a "$2" "${copy}"
    case "${name}" in
        kube-proxy)
            smoke "${copy}" /usr/sbin/iptables --version
            smoke "${copy}" /usr/sbin/ip6tables-restore --version
            smoke "${copy}" /usr/sbin/conntrack --version ;;
        flannel)
            smoke "${copy}" /usr/sbin/iptables --version
            smoke "${copy}" /bin/cp --help ;;
        flannel-cni-plugin) smoke "${copy}" /bin/cp --help ;;
        nginx) smoke "${copy}" /usr/sbin/nginx -t ;;
        busybox) smoke "${copy}" /bin/sh -c 'command -v sleep httpd wget nslookup head dmesg uname' ;;
    esac
    for k8s in "${copy}"/usr/local/bin/{kube-*,etcd}; do
        [[ ! -x "${k8s}" ]] || smoke "${copy}" "${k8s#"${copy}"}" --version
    done
    [[ ! -x "${copy}/usr/local/bin/etcdctl" ]] || smoke "${copy}" etcdctl version
    rm -rf "${copy}"
}

# image_root NAME ROOT DEBROOT : assemble image NAME's root filesystem (NAME+VERSION: a
# Kubernetes image from that version's binaries).
image_root() {
    local name="${1%%+*}" root="$2" debroot="$3" k8s="${K8S_DIR}"
    [[ "$1" != *+* ]] || k8s="$(kubernetes_dir "${1#*+}")"
    base_root "${root}"
    case "${name}" in
        pause) install -m 0755 "${PAUSE_DIR}/pause" "${root}/pause" ;;
        kube-apiserver | kube-controller-manager | kube-scheduler)
            install -m 0755 "${k8s}/${name}" "${root}/usr/local/bin/${name}" ;;
        kube-proxy)
            install -m 0755 "${k8s}/kube-proxy" "${root}/usr/local/bin/kube-proxy"
            add_iptables "${root}" "${debroot}" ;;
        etcd)
            install -m 0755 "${ETCD_DIR}/etcd" "${root}/usr/local/bin/etcd"
            install -m 0755 "${ETCDCTL_DIR}/etcdctl" "${root}/usr/local/bin/etcdctl" ;;
        coredns) install -m 0755 "${COREDNS_DIR}/coredns" "${root}/coredns" ;;
        flannel)
            install -D -m 0755 "${FLANNEL_DIR}/flanneld" "${root}/opt/bin/flanneld"
            add_busybox "${root}" "${debroot}"
            add_iptables "${root}" "${debroot}" ;;
        flannel-cni-plugin)
            install -m 0755 "${FLANNEL_CNI_DIR}/flannel" "${root}/flannel"
            add_busybox "${root}" "${debroot}" ;;
        kube-network-policies) install -m 0755 "${NETPOL_DIR}/netpol" "${root}/bin/netpol" ;;
        kube-vip) install -m 0755 "${KUBE_VIP_DIR}/kube-vip" "${root}/kube-vip" ;;
        nginx)
            add_busybox "${root}" "${debroot}"
            add_nginx "${root}" "${debroot}" ;;
        busybox) add_busybox "${root}" "${debroot}" ;;
        *) log "no recipe for image ${name}"; return 1 ;;
    esac
    check_root "${name}" "${root}"
}
