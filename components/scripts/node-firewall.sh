#!/usr/bin/env bash
# Installs the node's static pod firewall (an nftables ruleset rendered by the program) and the
# unit that loads it at boot, before containerd and the kubelet, which require it. Loads the
# ruleset now: one `nft -f` transaction replaces the tables, so a re-run changes nothing and
# never leaves a moment without them. Fails (and keeps the loaded tables) if nft refuses it.
# Parameters: FIREWALL_RULESET_B64 FIREWALL_UNIT_B64 [RULESET_PATH] [UNIT_PATH]
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=node-firewall
require_root
require_params FIREWALL_RULESET_B64 FIREWALL_UNIT_B64
RULESET_PATH=${RULESET_PATH:-/etc/sandboxed-k8s/pod-firewall.nft}
UNIT_PATH=${UNIT_PATH:-/etc/systemd/system/sandboxed-k8s-pod-firewall.service}
unit=$(basename "$UNIT_PATH")
command -v nft >/dev/null || die "nft not found (Debian: apt install nftables); no pod firewall"

make_workdir
decode_param FIREWALL_RULESET_B64 >"$WORK/ruleset.nft"
# Checked before it replaces the installed file: a ruleset the kernel refuses never lands.
nft -c -f "$WORK/ruleset.nft" || die "nft refuses the rendered ruleset; nothing changed"
install_if_changed "$WORK/ruleset.nft" "$RULESET_PATH" 0644 || true
nft -f "$RULESET_PATH" || die "loading $RULESET_PATH failed"
log "pod firewall loaded from $RULESET_PATH"

if have_systemd; then
  unit_changed=0
  if decode_param FIREWALL_UNIT_B64 | write_if_changed "$UNIT_PATH" 0644; then unit_changed=1; fi
  if ((unit_changed)) || ! systemctl is-enabled --quiet "$unit"; then
    systemctl daemon-reload
    # Re-enabled after a change: the RequiredBy links follow the unit file.
    systemctl reenable "$unit" >/dev/null 2>&1 || die "cannot enable $unit"
    log "enabled $unit"
  fi
  # Never restarted here: containerd and the kubelet require the unit, and a restart would
  # restart them too. Starting an active oneshot is a no-op.
  systemctl start "$unit" || die "$unit failed; see: journalctl -u $unit"
else
  log "no systemd: the ruleset is loaded but nothing loads it at boot"
fi
