#!/usr/bin/env bash
# Checks what the node's runtimes and kubeadm need; names every unmet requirement, then fails.
# Parameters: REQUIRE_GVISOR (0|1), REQUIRE_KVM (0|1), MIN_FREE_GIB (free space under /var).
# Overridable for checks of a fake host: PROC_ROOT SYS_ROOT KVM_DEVICE.
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=preflight

REQUIRE_GVISOR=${REQUIRE_GVISOR:-0}
REQUIRE_KVM=${REQUIRE_KVM:-0}
MIN_FREE_GIB=${MIN_FREE_GIB:-5}
PROC_ROOT=${PROC_ROOT:-/proc}
SYS_ROOT=${SYS_ROOT:-/sys}
KVM_DEVICE=${KVM_DEVICE:-/dev/kvm}
problems=()

kernel=$(uname -r)
if [[ $REQUIRE_GVISOR == 1 ]]; then
  IFS=.- read -r major minor _ <<<"$kernel"
  if ((major < 5 || (major == 5 && minor < 6))); then
    problems+=("kernel $kernel is older than 5.6, which gVisor's systrap platform needs")
  fi
fi

if [[ ! -f $SYS_ROOT/fs/cgroup/cgroup.controllers ]]; then
  problems+=("cgroup v2 is not mounted at $SYS_ROOT/fs/cgroup (unified hierarchy required)")
fi

# A module built into the kernel has a /sys/module entry only if it takes parameters, and
# br_netfilter takes none: what each module provides shows that it is there.
module_present() {
  [[ -d $SYS_ROOT/module/$1 ]] && return 0
  case $1 in
    overlay) grep -qw overlay "$PROC_ROOT/filesystems" 2>/dev/null ;;
    # Its sysctls exist only while it is in the kernel (loaded or built in).
    br_netfilter) [[ -e $PROC_ROOT/sys/net/bridge/bridge-nf-call-iptables ]] ;;
    *) return 1 ;;
  esac
}
for module in overlay br_netfilter; do
  if ! module_present "$module"; then
    problems+=("kernel module $module is not loaded (modprobe $module; list it in /etc/modules-load.d/ to keep it)")
  fi
done
sysctls=(net.ipv4.ip_forward)
# Without br_netfilter its sysctl is missing too: reported once, as the module.
if module_present br_netfilter; then
  sysctls+=(net.bridge.bridge-nf-call-iptables)
fi

for entry in "${sysctls[@]}"; do
  file=$PROC_ROOT/sys/${entry//.//}
  value=$(cat "$file" 2>/dev/null || echo missing)
  if [[ $value != 1 ]]; then
    problems+=("sysctl $entry is $value, must be 1 (sysctl -w $entry=1; set it in /etc/sysctl.d/ to keep it)")
  fi
done

if [[ -n $(tail -n +2 "$PROC_ROOT/swaps" 2>/dev/null) ]]; then
  problems+=("swap is on; the kubelet refuses to start with swap")
fi

free_kib=$(df -Pk /var | awk 'NR == 2 { print $4 }')
if ((free_kib < MIN_FREE_GIB * 1024 * 1024)); then
  problems+=("only $((free_kib / 1024 / 1024)) GiB free under /var, need $MIN_FREE_GIB GiB")
fi

if [[ $REQUIRE_KVM == 1 && ! -c $KVM_DEVICE ]]; then
  problems+=("$KVM_DEVICE is missing: Kata and runsc --platform=kvm need nested virtualisation (libvirt cpu mode host-passthrough on a host with nested KVM enabled)")
fi

if ((${#problems[@]} > 0)); then
  for problem in "${problems[@]}"; do
    log "unmet: $problem"
  done
  die "${#problems[@]} preflight requirement(s) unmet"
fi
log "all requirements met (kernel $kernel)"
