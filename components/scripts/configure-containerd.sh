#!/usr/bin/env bash
# Installs the containerd config matching the installed containerd (version 2 for 1.6/1.7,
# version 3 for 2.x), replacing the whole file; restarts containerd only when a file changed;
# then checks that containerd knows every configured handler.
# Parameters: CONTAINERD_CONFIG_V2_B64 CONTAINERD_CONFIG_V3_B64 HANDLERS ("runc runsc ...")
#             [RUNSC_TOML_B64] [CONTAINERD_BIN] [CONFIG_DIR] [RESTART_CMD]
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=configure-containerd
require_root
require_params CONTAINERD_CONFIG_V2_B64 CONTAINERD_CONFIG_V3_B64 HANDLERS
CONTAINERD_BIN=${CONTAINERD_BIN:-$(command -v containerd || echo /usr/local/bin/containerd)}
CONFIG_DIR=${CONFIG_DIR:-/etc/containerd}
RUNSC_TOML_B64=${RUNSC_TOML_B64:-}
changed=0

detect_containerd "$CONTAINERD_BIN"
if [[ $CONTAINERD_MINOR == 1.6 && " $HANDLERS " == *" runsc "* ]]; then
  die "gVisor's containerd shim needs containerd 1.7 or newer; this node has $CONTAINERD_MINOR"
fi
config_version=$CONTAINERD_CONFIG_VERSION
param="CONTAINERD_CONFIG_V${config_version}_B64"
log "containerd $CONTAINERD_MINOR reads config version $config_version"

if decode_param "$param" | write_if_changed "$CONFIG_DIR/config.toml" 0644; then changed=1; fi
if [[ -n $RUNSC_TOML_B64 ]]; then
  if decode_param RUNSC_TOML_B64 | write_if_changed "$CONFIG_DIR/runsc.toml" 0644; then changed=1; fi
fi

if [[ -n ${RESTART_CMD:-} ]]; then
  if ((changed)); then eval "$RESTART_CMD"; fi
elif ((changed)) || ! systemctl is-active --quiet containerd; then
  restart_service containerd
else
  log "configuration unchanged, containerd not restarted"
fi

check_handlers "$CONTAINERD_BIN" "$CONFIG_DIR/config.toml" "$HANDLERS"
