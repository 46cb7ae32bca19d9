"""kubeadm configuration and the kube-vip static pod."""

from __future__ import annotations

import dataclasses

import kubernetes_validate
import yaml

from components.render.kubeadm import (
    CONTROL_PLANE_TAINT,
    KUBEADM_API,
    ClusterConfig,
    NodeRegistration,
    render_init_config,
    render_join_config,
    render_kube_vip_manifest,
    render_upgrade_config,
)

CLUSTER = ClusterConfig("1.34.2", "demo", "10.17.0.5:6443", "10.244.0.0/16", "10.96.0.0/12",
                        ("10.17.0.5", "10.17.0.10"))
WORKER = NodeRegistration("worker1", {"b": "2", "a": "1"},
                          (("sandboxed-k8s.io/sandbox", "true", "NoSchedule"),), False)
PLANE = NodeRegistration("cp-1", {}, (), True)
TOKEN = "abcdef.0123456789abcdef"


def test_init_config() -> None:
    init, cluster, kubelet = yaml.safe_load_all(
        render_init_config(CLUSTER, PLANE, "10.17.0.10", TOKEN, "30m"))
    assert init["apiVersion"] == KUBEADM_API and init["kind"] == "InitConfiguration"
    assert init["bootstrapTokens"][0]["token"] == TOKEN
    assert init["bootstrapTokens"][0]["ttl"] == "30m"
    assert init["localAPIEndpoint"]["advertiseAddress"] == "10.17.0.10"
    assert init["nodeRegistration"]["taints"] == [CONTROL_PLANE_TAINT]
    assert init["nodeRegistration"]["criSocket"].startswith("unix://")
    assert cluster["kubernetesVersion"] == "v1.34.2"
    assert cluster["controlPlaneEndpoint"] == "10.17.0.5:6443"
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16",
                                     "serviceSubnet": "10.96.0.0/12"}
    assert "10.17.0.5" in cluster["apiServer"]["certSANs"]
    assert kubelet["cgroupDriver"] == "systemd"
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert kubelet["authorization"]["mode"] == "Webhook"


def test_etcd_gets_raft_timers_only_when_the_stack_changes_them() -> None:
    slow = dataclasses.replace(CLUSTER, etcd_timers=(500, 5000))
    _, cluster, _ = yaml.safe_load_all(render_init_config(slow, PLANE, "10.17.0.10", TOKEN, "30m"))
    assert cluster["etcd"]["local"]["extraArgs"] == [
        {"name": "heartbeat-interval", "value": "500"},
        {"name": "election-timeout", "value": "5000"}]
    _, cluster, _ = yaml.safe_load_all(
        render_init_config(CLUSTER, PLANE, "10.17.0.10", TOKEN, "30m"))
    assert cluster["etcd"] == {"local": {"imageTag": "3.6.5-0"}}  # etcd's own 100/1000 ms


def test_worker_join_sets_labels_and_taints_at_registration() -> None:
    (join,) = yaml.safe_load_all(render_join_config(
        WORKER, "10.17.0.5:6443", TOKEN, "sha256:" + "a" * 64, "10.17.0.11"))
    assert join["kind"] == "JoinConfiguration"
    discovery = join["discovery"]["bootstrapToken"]
    assert discovery == {"apiServerEndpoint": "10.17.0.5:6443", "token": TOKEN,
                         "caCertHashes": ["sha256:" + "a" * 64]}
    registration = join["nodeRegistration"]
    assert registration["kubeletExtraArgs"] == [{"name": "node-labels", "value": "a=1,b=2"}]
    assert registration["taints"] == [
        {"key": "sandboxed-k8s.io/sandbox", "value": "true", "effect": "NoSchedule"}]
    assert "controlPlane" not in join


def test_control_plane_join() -> None:
    (join,) = yaml.safe_load_all(render_join_config(
        PLANE, "10.17.0.5:6443", TOKEN, "sha256:" + "b" * 64, "10.17.0.11"))
    assert join["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] == "10.17.0.11"
    assert CONTROL_PLANE_TAINT in join["nodeRegistration"]["taints"]


def test_a_join_waits_as_long_as_the_stack_allows_never_less_than_kubeadm() -> None:
    """A slow host's join outlasts kubeadm's own waits: its etcd member's promotion from
    learner (2m), the signed cluster-info (5m), the kubelet's TLS bootstrap (5m)."""
    def timeouts(timeout: str) -> dict[str, str]:
        (join,) = yaml.safe_load_all(render_join_config(
            PLANE, "10.17.0.5:6443", TOKEN, "sha256:" + "b" * 64, "10.17.0.11", timeout))
        return dict(join["timeouts"])

    assert timeouts("40m") == {"controlPlaneComponentHealthCheck": "40m",
                               "kubeletHealthCheck": "40m", "etcdAPICall": "40m",
                               "discovery": "40m", "tlsBootstrap": "40m"}
    assert timeouts("4m") == {"controlPlaneComponentHealthCheck": "4m",
                              "kubeletHealthCheck": "4m", "etcdAPICall": "4m"}
    assert timeouts("90s") == {"controlPlaneComponentHealthCheck": "90s",
                               "kubeletHealthCheck": "90s"}


def test_an_upgrade_waits_as_long_as_the_stack_allows_never_less_than_kubeadm() -> None:
    (upgrade,) = yaml.safe_load_all(render_upgrade_config("1.34.3", "40m"))
    assert upgrade["timeouts"] == {"controlPlaneComponentHealthCheck": "40m",
                                   "kubeletHealthCheck": "40m", "etcdAPICall": "40m",
                                   "upgradeManifests": "40m"}
    (upgrade,) = yaml.safe_load_all(render_upgrade_config("1.34.3", "4m"))
    assert "upgradeManifests" not in upgrade["timeouts"]  # kubeadm's 5m is longer


def test_kube_vip_manifest_is_a_valid_pod() -> None:
    text = render_kube_vip_manifest("10.17.0.5", "eth0", "ghcr.io/kube-vip/kube-vip:v0.9.2",
                                    "/etc/kubernetes/super-admin.conf", ("15s", "10s", "2s"))
    pod = yaml.safe_load(text)
    kubernetes_validate.validate(pod, "1.34", strict=True)
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["address"] == "10.17.0.5" and env["vip_interface"] == "eth0"
    assert pod["spec"]["volumes"][0]["hostPath"]["path"] == "/etc/kubernetes/super-admin.conf"


def test_kube_vip_holds_its_lease_as_long_as_the_stack_allows() -> None:
    """kube-vip's own 5 s lease was lost under load in the HA lab (three control planes under
    software emulation): the VIP went, and joins and the token issuer found no route to it."""
    text = render_kube_vip_manifest("10.17.0.5", "eth0", "ghcr.io/kube-vip/kube-vip:v0.9.2",
                                    "/etc/kubernetes/admin.conf", ("2m", "90s", "20s"))
    env = {e["name"]: e["value"] for e in yaml.safe_load(text)["spec"]["containers"][0]["env"]}
    assert (env["vip_leaseduration"], env["vip_renewdeadline"], env["vip_retryperiod"]) == \
        ("120", "90", "20")
