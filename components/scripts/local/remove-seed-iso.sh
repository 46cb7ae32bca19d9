#!/usr/bin/env bash
# Not a node script: the delete step of build-seed-iso.sh, on the machine that runs `pulumi
# up`. Removes the seed image that step printed (PULUMI_COMMAND_STDOUT), and nothing else.
set -euo pipefail

die() { printf 'remove-seed-iso: %s\n' "$*" >&2; exit 1; }

: "${SEED_NAME:?SEED_NAME is required}"
seed=${PULUMI_COMMAND_STDOUT:-}
seed=${seed%$'\n'}
[[ -n $seed ]] || exit 0
[[ $(basename -- "$seed") =~ ^${SEED_NAME//./\\.}-[0-9a-f]{64}\.iso$ ]] ||
  die "refusing to remove $seed: not a seed image of $SEED_NAME"
rm -f -- "$seed"
