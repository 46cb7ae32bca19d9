#!/usr/bin/env bash
# Installs the containerd config matching the installed containerd (version 2 for 1.6/1.7,
# version 3 for 2.x), replacing the whole file; restarts containerd only when that file changed
# (or containerd is not running); then checks that containerd knows every configured handler.
# runsc.toml is read by gVisor's shim each time it creates a pod, so a change to it alone needs
# no restart: new pods get the new flags, running pods keep theirs. The same holds for the
# registry mirrors (certs.d/<registry>/hosts.toml, read at every pull); certs.d is owned whole:
# a registry no longer listed loses its hosts.toml.
# Parameters: CONTAINERD_CONFIG_V2_B64 CONTAINERD_CONFIG_V3_B64 HANDLERS ("runc runsc ...")
#             [RUNSC_TOML_B64] [REGISTRY_HOSTS_B64 (lines "<registry> <hosts.toml base64>")]
#             [CONTAINERD_BIN] [CONFIG_DIR] [RESTART_CMD]
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=configure-containerd
require_root
require_params CONTAINERD_CONFIG_V2_B64 CONTAINERD_CONFIG_V3_B64 HANDLERS
CONTAINERD_BIN=${CONTAINERD_BIN:-$(command -v containerd || echo /usr/local/bin/containerd)}
CONFIG_DIR=${CONFIG_DIR:-/etc/containerd}
RUNSC_TOML_B64=${RUNSC_TOML_B64:-}
REGISTRY_HOSTS_B64=${REGISTRY_HOSTS_B64:-}
changed=0

# install_registry_hosts : one hosts.toml per listed registry; other registries' are removed.
install_registry_hosts() {
  local certs_dir=$CONFIG_DIR/certs.d registry content dir
  local -A listed=()
  mkdir -p "$certs_dir"
  decode_param REGISTRY_HOSTS_B64 >"$WORK/registry-hosts"
  while read -r registry content; do
    [[ -n $registry ]] || continue
    [[ $registry =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]+)?$ ]] ||
      die "REGISTRY_HOSTS names an invalid registry: $registry"
    mkdir -p "$certs_dir/$registry"
    base64 -d <<<"$content" >"$WORK/hosts.toml" || die "hosts.toml for $registry is not base64"
    if write_if_changed "$certs_dir/$registry/hosts.toml" 0644 <"$WORK/hosts.toml"; then
      log "registry mirror for $registry updated"
    fi
    listed[$registry]=1
  done <"$WORK/registry-hosts"
  for dir in "$certs_dir"/*/; do
    [[ -d $dir ]] || continue
    registry=$(basename "$dir")
    if [[ -z ${listed[$registry]:-} ]]; then
      rm -rf -- "$dir"
      log "registry mirror for $registry removed"
    fi
  done
}

detect_containerd "$CONTAINERD_BIN"
if [[ $CONTAINERD_MINOR == 1.6 && " $HANDLERS " == *" runsc "* ]]; then
  die "gVisor's containerd shim needs containerd 1.7 or newer; this node has $CONTAINERD_MINOR"
fi
config_version=$CONTAINERD_CONFIG_VERSION
param="CONTAINERD_CONFIG_V${config_version}_B64"
log "containerd $CONTAINERD_MINOR reads config version $config_version"

if [[ -n $RUNSC_TOML_B64 ]]; then
  # Before config.toml: containerd must never start with a runsc handler whose file is missing.
  if decode_param RUNSC_TOML_B64 | write_if_changed "$CONFIG_DIR/runsc.toml" 0644; then
    log "runsc.toml changed: new gVisor pods use it, running pods keep their flags"
  fi
fi
make_workdir
install_registry_hosts
if decode_param "$param" | write_if_changed "$CONFIG_DIR/config.toml" 0644; then changed=1; fi

if [[ -n ${RESTART_CMD:-} ]]; then
  if ((changed)); then eval "$RESTART_CMD"; fi
elif ((changed)) || ! systemctl is-active --quiet containerd; then
  restart_service containerd
else
  log "configuration unchanged, containerd not restarted"
fi

check_handlers "$CONTAINERD_BIN" "$CONFIG_DIR/config.toml" "$HANDLERS"
