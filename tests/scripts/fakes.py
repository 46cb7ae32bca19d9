"""Fake node commands for the node-script tests: each records its calls in a state directory
and answers from files there, so a test sets up a node's situation and reads what was done."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from components.render.scripts import SCRIPTS_DIR

# Every fake appends "<name> <args>" to $FAKE_STATE/calls.
_RECORD = 'printf "%s\\n" "$(basename "$0") $*" >>"$FAKE_STATE/calls"\n'

FAKES = {
    "id": "#!/bin/sh\necho 0\n",  # the scripts require root; the tests need not be
    # kubeadm: tokens are lines "<token> valid|expired" in $FAKE_STATE/tokens; a join needs a
    # valid one and fails while $FAKE_STATE/fail-join exists (if it holds a count, that many
    # times: its last failures are counted down).
    "kubeadm": """#!/usr/bin/env bash
set -euo pipefail
""" + _RECORD + """s=$FAKE_STATE
case "$1 ${2:-}" in
  "token create")
    n=$(($(cat "$s/counter" 2>/dev/null || echo 0) + 1))
    echo "$n" >"$s/counter"
    token=$(printf 'tok%03d.%016d' "$n" "$n")
    echo "$token valid" >>"$s/tokens"
    echo "$token" ;;
  "join --config")
    token=$(sed -n 's/^ *token: *//p' "$3")
    grep -qxF "$token valid" "$s/tokens" 2>/dev/null || {
      echo "fake kubeadm: token $token is invalid or has expired" >&2; exit 1; }
    if [[ -e $s/fail-join ]]; then
      left=$(cat "$s/fail-join")
      if [[ -z $left ]]; then echo "fake kubeadm: join failed" >&2; exit 1; fi
      if ((left > 0)); then
        echo $((left - 1)) >"$s/fail-join"
        echo "fake kubeadm: context deadline exceeded" >&2; exit 1
      fi
    fi
    echo "$token" >>"$s/joined-with"
    mkdir -p "$K8S_DIR"
    touch "$K8S_DIR/kubelet.conf" "$s/kubelet-active"
    # A control plane's join starts its etcd member and API server, unless the test breaks it.
    if grep -q '^controlPlane:' "$3" && [[ ! -e $s/join-leaves-etcd-down ]]; then
      touch "$s/etcd-running"
      echo "True" >"$s/apiserver-ready"
      echo "a1b2c3d4e5f60718, started, $NODE_NAME, https://$FAKE_NODE_IP:2380," \
        "https://$FAKE_NODE_IP:2379, false" >>"$s/etcd-members"
    fi ;;
  "init --config")
    mkdir -p "$K8S_DIR/manifests"
    touch "$K8S_DIR/admin.conf" "$K8S_DIR/kubelet.conf" "$K8S_DIR/manifests/kube-apiserver.yaml" ;;
  "upgrade apply")  # --config FILE; the question on stdin must be answered
    [[ $3 == --config ]] || { echo "fake kubeadm: upgrade apply without --config" >&2; exit 2; }
    cp "$4" "$s/kubeadm-config"
    read -r answer || true
    printf '%s\n' "$answer" >"$s/kubeadm-stdin"
    [[ $answer == y ]] || { echo "fake kubeadm: the upgrade was not confirmed" >&2; exit 1; }
    version=$(sed -n 's/^ *kubernetesVersion: *//p' "$4")
    sed -i "s|kube-apiserver:v.*|kube-apiserver:$version|" \
      "$K8S_DIR/manifests/kube-apiserver.yaml" ;;
  "upgrade node")  # --config FILE
    [[ $3 == --config ]] || { echo "fake kubeadm: upgrade node without --config" >&2; exit 2; }
    cp "$4" "$s/kubeadm-config"
    if [[ -e $K8S_DIR/manifests/kube-apiserver.yaml ]]; then
      sed -i "s|kube-apiserver:v.*|kube-apiserver:$(cat "$s/cluster-version")|" \
        "$K8S_DIR/manifests/kube-apiserver.yaml"
    fi ;;
  "reset --force")  # as kubeadm's: the node's certificates go too
    rm -rf "$K8S_DIR/pki"
    rm -f "$K8S_DIR/kubelet.conf" "$s/kubelet-active" "$s/etcd-running" "$s/apiserver-ready"
    if [[ -e $s/etcd-members ]]; then
      grep -v ", $NODE_NAME, " "$s/etcd-members" >"$s/etcd-members.new" || true
      mv "$s/etcd-members.new" "$s/etcd-members"
    fi ;;
  *) echo "fake kubeadm: unexpected $*" >&2; exit 2 ;;
esac
""",
    "systemctl": """#!/usr/bin/env bash
set -euo pipefail
""" + _RECORD + """case "$1" in
  is-active) [[ -e $FAKE_STATE/${*: -1}-active ]] ;;
  *) : ;;
esac
""",
    # ssh: the forced command on the first control plane, run here: $FAKE_ISSUER. The key and
    # known_hosts it was given are kept for the test to read.
    "ssh": """#!/usr/bin/env bash
set -euo pipefail
""" + _RECORD + """if [[ -e $FAKE_STATE/ssh-down ]]; then
  echo "ssh: connect: refused" >&2
  exit 255
fi
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    -i) cp "${args[i + 1]}" "$FAKE_STATE/ssh-key" ;;
    UserKnownHostsFile=*) cp "${args[i]#*=}" "$FAKE_STATE/ssh-known-hosts" ;;
  esac
done
# The maintenance key's forced command gets the caller's address and its request.
[[ -z ${FAKE_HELPER:-} ]] || exec bash "$FAKE_HELPER" "$FAKE_CLIENT" "${@: -1}"
exec bash "$FAKE_ISSUER"
""",
    # kubectl with the admin kubeconfig: nodes are files "node-<name>" holding their Ready
    # status; etcd (reached by exec into its pod) answers from "etcd-members" (`member list`)
    # and "etcd-health" (`endpoint health --cluster`).
    "kubectl": """#!/usr/bin/env bash
set -euo pipefail
""" + _RECORD + """s=$FAKE_STATE
[[ ${1:-} != --kubeconfig ]] || shift 2  # which credentials: the tests read the calls
case "$*" in
  "get --raw=/readyz") [[ ! -e $s/api-down ]] ;;
  "get --raw /version") printf '{"gitVersion": "%s"}\n' "$(cat "$s/server-version")" ;;
  "uncordon "*)
    if [[ -e $s/uncordon-fails ]]; then rm "$s/uncordon-fails"; exit 1; fi ;;
  "-n kube-system create configmap kubeadm-config "*) echo "kind: ConfigMap" ;;
  "replace -f -") cat >"$s/replaced" ;;
  # The upgrade health check's Job: it completes unless "job-never-completes" exists.
  "delete -f "*" --ignore-not-found"*) ;;
  "create -f "*" -o name")
    cp "$3" "$s/health-check-job"
    echo "job.batch/$(sed -n 's/^  name: //p' "$3")" ;;
  "-n kube-system wait --for=condition=complete job.batch/"*)
    if [[ -e $s/job-never-completes ]]; then
      echo "error: timed out waiting for the condition" >&2; exit 1
    fi ;;
  "-n kube-system describe job.batch/"*) echo "Events: none" ;;
  "get node "*" -o name --ignore-not-found") [[ ! -e $s/node-$3 ]] || echo "node/$3" ;;
  "get node "*" -o jsonpath="*) cat "$s/node-$3" ;;
  "cordon "*) [[ -e $s/node-$2 ]] ;;
  "drain "*)
    if [[ -e $s/drain-fails ]]; then
      echo "error: cannot evict pod: it would violate the pod's disruption budget" >&2
      exit 1
    fi ;;
  "delete node "*) rm -f "$s/node-$3" ;;
  "-n kube-system get pod kube-apiserver-"*)
    if [[ -e $s/apiserver-never-ready ]]; then echo False; else cat "$s/apiserver-ready"; fi ;;
  "-n kube-system exec "*)
    case "$*" in
      *" member list") cat "$s/etcd-members" ;;
      *" endpoint health --cluster")
        cat "$s/etcd-health"
        ! grep -q unhealthy "$s/etcd-health" ;;
      *" member remove "*)
        grep -v "^${*: -1}, " "$s/etcd-members" >"$s/etcd-members.new" || true
        mv "$s/etcd-members.new" "$s/etcd-members" ;;
      *) echo "fake etcdctl: unexpected $*" >&2; exit 2 ;;
    esac ;;
  *) echo "fake kubectl: unexpected $*" >&2; exit 2 ;;
esac
""",
    # ip: the node's network interfaces are the lines of "links".
    "ip": """#!/usr/bin/env bash
set -euo pipefail
""" + _RECORD + """s=$FAKE_STATE
touch "$s/links"
case "$1 $2" in
  "link show") grep -qxF "$3" "$s/links" ;;
  "link delete") grep -qxF "$3" "$s/links"
    grep -vxF "$3" "$s/links" >"$s/links.new" || true
    mv "$s/links.new" "$s/links" ;;
  *) echo "fake ip: unexpected $*" >&2; exit 2 ;;
esac
""",
    # crictl on a control plane: the etcd container runs while "etcd-running" exists; etcdctl
    # in it reads "etcd-members", and the local member is healthy unless "etcd-unhealthy".
    "crictl": """#!/usr/bin/env bash
set -euo pipefail
""" + _RECORD + """s=$FAKE_STATE
case "$*" in
  "ps --name ^etcd\\$ --state running -q") [[ ! -e $s/etcd-running ]] || echo 0123456789ab ;;
  "exec 0123456789ab etcdctl "*" member list") cat "$s/etcd-members" ;;
  "exec 0123456789ab etcdctl "*" endpoint health") [[ ! -e $s/etcd-unhealthy ]] ;;
  *) echo "fake crictl: unexpected $*" >&2; exit 2 ;;
esac
""",
}


class FakeNode:
    """A bin directory of fakes, their state, and a K8S_DIR standing in for /etc/kubernetes."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.state = root / "state"
        self.k8s_dir = root / "etc-kubernetes"
        for d in (self.bin, self.state, self.k8s_dir):
            d.mkdir(parents=True, exist_ok=True)
        for name, text in FAKES.items():
            self.add(name, text)

    def add(self, name: str, text: str) -> None:
        path = self.bin / name
        path.write_text(text)
        path.chmod(0o755)

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": f"{self.bin}:{os.environ['PATH']}", "FAKE_STATE": str(self.state),
                "K8S_DIR": str(self.k8s_dir), "STATE_DIR": str(self.state / "lib"),
                "FLANNEL_SUBNET_FILE": str(self.state / "subnet.env"), **extra}

    def calls(self, name: str | None = None) -> list[str]:
        path = self.state / "calls"
        lines = path.read_text().splitlines() if path.exists() else []
        return [c for c in lines if name is None or c.split(" ", 1)[0] == name]

    def read(self, name: str) -> str:
        path = self.state / name
        return path.read_text() if path.exists() else ""

    def run(self, script: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SCRIPTS_DIR / script)], env={**self.env(), **env},
                              capture_output=True, text=True, timeout=120)
