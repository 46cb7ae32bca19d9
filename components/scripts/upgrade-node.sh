#!/usr/bin/env bash
# Upgrades this node in place when a pinned version differs from what it runs: Kubernetes,
# containerd, runc, the CNI plugins, gVisor or Kata. The program runs one node's upgrade after
# the other: the first control plane, the other control planes, then the workers. Nothing
# differs (a new node, an `up` without version changes): nothing is done.
# kubeadm's procedure: a new kubeadm first; on the first control plane the cluster's
# configuration and `kubeadm upgrade apply`, on the other control planes `kubeadm upgrade node`;
# then the node is drained, its runtimes replaced (the node's own install steps, shipped here and
# run again with NODE_DRAINED=1), `kubeadm upgrade node` on a worker, kubelet and kubectl
# replaced, the kubelet restarted, and the node uncordoned once the kubelet is healthy. A run
# that stopped half-way is finished by the next.
# Parameters: NODE_NAME ROLE (first | control-plane | worker) K8S_VERSION K8S_BASE_URL
#             KUBEADM_SHA256 DRAIN_TIMEOUT STEPS (the node steps shipped as STEP_<NAME>_B64, in
#             order; KUBERNETES last) UPGRADE_CONFIGURATION_B64 (kubeadm's upgrade --config:
#             the version and its waits) [CLUSTER_CONFIGURATION_B64 HEALTH_CHECK_JOB_B64
#             HEALTH_CHECK_TIMEOUT (first)]
#             [MAINTENANCE_HOST MAINTENANCE_USER MAINTENANCE_KEY_B64 MAINTENANCE_KNOWN_HOSTS_B64
#             (workers: the first control plane's maintenance helper, see helper_ssh)]
set -euo pipefail
# shellcheck source=lib.sh
declare -F fetch_verified >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=upgrade-node
require_root
require_params NODE_NAME ROLE K8S_VERSION K8S_BASE_URL KUBEADM_SHA256 DRAIN_TIMEOUT STEPS \
  UPGRADE_CONFIGURATION_B64
PREFIX=${PREFIX:-/usr/local}
HEALTH_CHECKS=${HEALTH_CHECKS:-60}
HEALTH_CHECK_SECONDS=${HEALTH_CHECK_SECONDS:-5}
KUBELET_HEALTHZ=${KUBELET_HEALTHZ:-http://127.0.0.1:10248/healthz}
admin=$K8S_DIR/admin.conf
marker=$STATE_DIR/upgrade-in-progress
stays="the node stays cordoned; fix this and run \`pulumi up\` again"
make_workdir
upgrade_config=$WORK/upgrade-configuration.yaml
decode_param UPGRADE_CONFIGURATION_B64 >"$upgrade_config"

# minor VERSION : the minor number of v1.34.2 or 1.34.2.
minor() { local v=${1#v}; v=${v#*.}; printf '%s' "${v%%.*}"; }
# older A B : version A sorts before version B.
older() {
  [[ ${1#v} != "${2#v}" ]] &&
    [[ $(printf '%s\n%s\n' "${1#v}" "${2#v}" | sort -V | head -n 1) == "${1#v}" ]]
}

# maintenance ACTION : drain or uncordon this node, with the admin kubeconfig of a control plane
# or through the first control plane's helper (workers have no admin credentials).
maintenance() {
  if [[ -f $admin ]]; then
    case $1 in
      drain) kubectl --kubeconfig "$admin" drain "$NODE_NAME" --ignore-daemonsets \
        --delete-emptydir-data --force --timeout="$DRAIN_TIMEOUT" ;;
      uncordon) kubectl --kubeconfig "$admin" uncordon "$NODE_NAME" ;;
    esac
    return
  fi
  helper_ssh MAINTENANCE "$1"
}

# run_step NAME : one of the node's install steps, as its own step would run it, now allowed to
# replace what the running node uses.
run_step() {
  NODE_DRAINED=1 bash "$WORK/$1.sh" || die "the $1 step failed on the drained node; $stays"
}

# health_check : kubeadm's upgrade health check, a Job in kube-system that must complete (a pod
# scheduled, its image pulled, run), with the stack's wait; kubeadm's own gives it 15 seconds,
# which a slow host cannot meet, and is skipped in the UpgradeConfiguration.
health_check() {
  local manifest=$WORK/health-check-job.yaml job
  decode_param HEALTH_CHECK_JOB_B64 >"$manifest"
  kubectl --kubeconfig "$admin" delete -f "$manifest" --ignore-not-found --wait=true >/dev/null
  job=$(kubectl --kubeconfig "$admin" create -f "$manifest" -o name) ||
    die "cannot create the upgrade health check's Job"
  if ! kubectl --kubeconfig "$admin" -n kube-system wait --for=condition=complete "$job" \
    --timeout="$HEALTH_CHECK_TIMEOUT"; then
    kubectl --kubeconfig "$admin" -n kube-system describe "$job" >&2 || true
    die "the cluster ran no pod within $HEALTH_CHECK_TIMEOUT ($job did not complete);" \
      "nothing was upgraded"
  fi
  kubectl --kubeconfig "$admin" delete -f "$manifest" --ignore-not-found >/dev/null || true
  log "health check: $job completed"
}

# control_plane_version : the version this control plane's API server static pod runs.
control_plane_version() {
  sed -n 's|^ *image: .*/kube-apiserver:\(v[^ ]*\)$|\1|p' "$K8S_DIR/manifests/kube-apiserver.yaml"
}

# --- what differs ----------------------------------------------------------------------------
runtime_steps=() kubernetes=0 control_plane=0
for name in $STEPS; do
  require_params "STEP_${name}_B64"
  decode_param "STEP_${name}_B64" >"$WORK/$name.sh"
  [[ $name != CONTAINERD_CONFIG ]] || continue
  rc=0
  CHECK_ONLY=1 bash "$WORK/$name.sh" 2>>"$WORK/check.log" || rc=$?
  case $rc in
    0) ;;
    3) if [[ $name == KUBERNETES ]]; then kubernetes=1; else runtime_steps+=("$name"); fi ;;
    *) cat "$WORK/check.log" >&2; die "cannot tell what the $name step would install" ;;
  esac
done
if [[ $ROLE != worker ]] && [[ $(control_plane_version) != "v$K8S_VERSION" ]]; then
  control_plane=1
fi
if ((${#runtime_steps[@]} == 0 && !kubernetes && !control_plane)) && [[ ! -e $marker ]]; then
  log "$NODE_NAME is up to date"
  exit 0
fi
cat "$WORK/check.log" >&2

# --- version skew: one minor version up at a time, never down, control planes first ---------
if ((kubernetes || control_plane)); then
  running=$("$PREFIX/bin/kubelet" --version | awk '{ print $2 }')
  older "v$K8S_VERSION" "$running" && die "Kubernetes $running cannot go down to $K8S_VERSION"
  (($(minor "$K8S_VERSION") <= $(minor "$running") + 1)) ||
    die "Kubernetes $running to $K8S_VERSION skips a minor version; kubeadm goes one at a time"
  if [[ $ROLE == worker ]]; then
    server=$(kubectl --kubeconfig "$K8S_DIR/kubelet.conf" get --raw /version |
      sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p') || server=""
    [[ -n $server ]] || die "cannot read the API server's version with this node's credentials"
    ! older "$server" "v$K8S_VERSION" ||
      die "the control plane runs $server: a kubelet must not be newer than its API server;" \
        "the control planes are upgraded first"
  fi
fi

# --- the control plane: kubeadm's own upgrade ------------------------------------------------
if ((control_plane)); then
  install_kube_binary kubeadm "$KUBEADM_SHA256"
  if [[ $ROLE == first ]]; then
    # The configuration kubeadm upgrades to (version, image tags, flags): the program's, as
    # kubeadm init read it.
    require_params CLUSTER_CONFIGURATION_B64 HEALTH_CHECK_JOB_B64 HEALTH_CHECK_TIMEOUT
    health_check
    decode_param CLUSTER_CONFIGURATION_B64 >"$WORK/cluster-configuration.yaml"
    kubectl --kubeconfig "$admin" -n kube-system create configmap kubeadm-config \
      --from-file=ClusterConfiguration="$WORK/cluster-configuration.yaml" \
      --dry-run=client -o yaml | kubectl --kubeconfig "$admin" replace -f - ||
      die "cannot update the cluster's kubeadm configuration"
    # kubeadm refuses --yes beside --config; its question is answered instead, which keeps
    # the version policies that --force (the config's other way) would skip.
    printf 'y\n' | kubeadm upgrade apply --config "$upgrade_config" ||
      die "kubeadm upgrade apply v$K8S_VERSION failed; the cluster keeps running the version" \
        "it ran; see the messages above"
  else
    kubeadm upgrade node --config "$upgrade_config" ||
      die "kubeadm upgrade node failed on $NODE_NAME"
  fi
  [[ $(control_plane_version) == "v$K8S_VERSION" ]] ||
    die "the control plane on $NODE_NAME still runs $(control_plane_version), not" \
      "v$K8S_VERSION (is the first control plane upgraded? kubeadm upgrade node takes the" \
      "cluster's version)"
  log "control plane on $NODE_NAME runs v$K8S_VERSION"
fi

# --- the node: drained, replaced, restarted, uncordoned ---------------------------------------
mkdir -p "$STATE_DIR"
touch "$marker"
maintenance drain || die "draining $NODE_NAME did not finish (see: kubectl get pdb -A); $stays"
log "drained $NODE_NAME"
for name in "${runtime_steps[@]}"; do run_step "$name"; done
if ((${#runtime_steps[@]})) && [[ -f $WORK/CONTAINERD_CONFIG.sh ]]; then
  run_step CONTAINERD_CONFIG  # a new containerd may read another config schema
fi
if ((kubernetes)); then
  install_kube_binary kubeadm "$KUBEADM_SHA256"
  if [[ $ROLE == worker ]]; then
    kubeadm upgrade node --config "$upgrade_config" ||
      die "kubeadm upgrade node failed on $NODE_NAME; $stays"
  fi
fi
run_step KUBERNETES
systemctl daemon-reload
systemctl restart kubelet
for ((check = 1; check <= HEALTH_CHECKS; check++)); do
  curl -fsS --max-time 5 "$KUBELET_HEALTHZ" >/dev/null 2>&1 && break
  ((check < HEALTH_CHECKS)) || die "the kubelet is not healthy after the upgrade" \
    "(journalctl -u kubelet); $stays"
  sleep "$HEALTH_CHECK_SECONDS"
done
maintenance uncordon || die "uncordoning $NODE_NAME failed; it stays cordoned"
rm -f "$marker"
log "$NODE_NAME upgraded: Kubernetes $K8S_VERSION${runtime_steps[*]:+, ${runtime_steps[*],,}}"
