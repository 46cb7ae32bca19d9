#!/usr/bin/env bash
# Waits until cloud-init has finished on first boot; fails if it reported errors.
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=wait-cloud-init

rc=0
status=$(cloud-init status --wait 2>&1) || rc=$?
# cloud-init >= 23.4 exits 2 for "done with recoverable errors" (deprecations): not fatal.
if ((rc != 0 && rc != 2)); then
  die "cloud-init failed (exit $rc): $status"
fi
log "cloud-init finished: ${status##*status: }"
