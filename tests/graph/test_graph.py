"""The whole program under mocks, per stack: what is declared and how it is ordered."""

from __future__ import annotations

import base64
import copy
import itertools
import re
import shlex
from typing import Any

import pytest
import yaml

from components.hypervisor import kernel_cmdline
from components.spec import (
    POOL_LABEL,
    SANDBOX_HANDLERS,
    SANDBOX_TAINT_KEY,
    sandbox_label,
)
from tests.graph.conftest import stack_graph
from tests.graph.harness import Graph, Registration, run_program, stack_config

COMMAND = "command:remote:Command"
DOMAIN = "libvirt:index/domain:Domain"
RUNTIME_CLASS = "kubernetes:node.k8s.io/v1:RuntimeClass"
POD = "kubernetes:core/v1:Pod"
K8S_PROVIDER = "pulumi:providers:kubernetes"
JOB = "kubernetes:batch/v1:Job"
NAMESPACE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
NETWORK = "libvirt:index/network:Network"

EXPECTED_COUNTS = {
    "dev": {"libvirt:index/network:Network": 1, "libvirt:index/volume:Volume": 7,
            "command:local:Command": 3, DOMAIN: 3, COMMAND: 29,
            RUNTIME_CLASS: 1, POD: 1, "pulumi:providers:libvirt": 1, K8S_PROVIDER: 1,
            JOB: 1, NAMESPACE: 4, NETWORK_POLICY: 8},
    "ha": {"libvirt:index/network:Network": 1, "libvirt:index/volume:Volume": 13,
           "command:local:Command": 6, DOMAIN: 6, COMMAND: 58,
           RUNTIME_CLASS: 2, POD: 2, "pulumi:providers:libvirt": 1, K8S_PROVIDER: 1,
           JOB: 2, NAMESPACE: 4, NETWORK_POLICY: 8},
}
NODES = {
    "dev": {"master": "control-plane", "worker1": "gvisor", "worker2": "plain"},
    "ha": {"control-plane-1": "control-plane", "control-plane-2": "control-plane",
           "control-plane-3": "control-plane", "gvisor-1": "gvisor", "gvisor-2": "gvisor",
           "kata-1": "kata"},
}


def command(graph: Graph, name: str) -> Registration:
    return graph.named(name, COMMAND)


def script_params(reg: Registration) -> dict[str, str]:
    """The exported parameters at the top of a command's stdin."""
    params = {}
    for line in reg.inputs["stdin"].splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            params[key] = shlex.split(value)[0] if value else ""
    return params


def shipped_yaml(reg: Registration, param: str) -> list[Any]:
    text = base64.b64decode(script_params(reg)[param]).decode()
    return list(yaml.safe_load_all(text))


def registration_of(graph: Graph, node: str) -> dict[str, Any]:
    name, param = ((f"{node}-kubeadm-init", "KUBEADM_CONFIG_B64")
                   if any(r.name == f"{node}-kubeadm-init" for r in graph.resources)
                   else (f"{node}-kubeadm-join", "KUBEADM_JOIN_CONFIG_B64"))
    docs = shipped_yaml(command(graph, name), param)
    return next(d["nodeRegistration"] for d in docs if "nodeRegistration" in d)


def node_labels(registration: dict[str, Any]) -> dict[str, str]:
    args = {a["name"]: a["value"] for a in registration.get("kubeletExtraArgs", [])}
    pairs = [p.split("=", 1) for p in args.get("node-labels", "").split(",") if p]
    return {k: v for k, v in pairs}


def test_resource_counts(graph: Graph, stack: str) -> None:
    for typ, expected in EXPECTED_COUNTS[stack].items():
        assert len(graph.of_type(typ)) == expected, typ


def test_one_domain_per_node_with_pool_sizing(graph: Graph, stack: str) -> None:
    domains = {d.name: d.inputs for d in graph.of_type(DOMAIN)}
    assert set(domains) == set(NODES[stack])
    for name, inputs in domains.items():
        assert inputs["name"] == f"{stack}-{name}"
        assert inputs["vcpu"] >= 2 and inputs["memory"] >= 1700
        # The stacks leave the domain type at its default: KVM with the host CPU passed
        # through (never libvirt's qemu64 model).
        assert inputs["type"] == "kvm"
        assert inputs["cpu"] == {"mode": "host-passthrough"}
        nic = inputs["networkInterfaces"][0]
        assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", nic["mac"])
        assert nic["waitForLease"] is False
        assert "kernel" not in inputs  # the stacks' images boot with their own bootloader


def test_domains_need_no_guest_agent(graph: Graph) -> None:
    # With the agent on, the provider asks it for addresses right after the VM starts and
    # the create fails: nothing installs the agent before cloud-init runs.
    for domain in graph.of_type(DOMAIN):
        assert domain.inputs.get("qemuAgent") is False, domain.name


def test_no_domain_input_is_read_back_differently(graph: Graph) -> None:
    # The provider reads NIC addresses back from DHCP leases or the guest agent only; a
    # static address given as an input comes back empty and shows as a change on every `up`.
    # Addresses live in cloud-init's network-config, and no DHCP server hands any out.
    for domain in graph.of_type(DOMAIN):
        for nic in domain.inputs["networkInterfaces"]:
            assert "addresses" not in nic, domain.name
    for network in graph.of_type(NETWORK):
        assert network.inputs["dhcp"] == {"enabled": False}


def test_nat_network_answers_its_own_domain_locally(graph: Graph, stack: str) -> None:
    # libvirt ignores localOnly unless the network has a DNS domain.
    network = graph.named("network-0", NETWORK).inputs
    assert network["dns"] == {"enabled": True, "localOnly": True}
    assert re.fullmatch(r"[a-z0-9.-]+", network["domain"])
    assert network["domain"] == f"{stack}-{network['name'].removeprefix(stack + '-')}.internal"


def runs_on_create(step: Registration) -> bool:
    """A node removal step runs nothing until it is deleted."""
    return "create" in step.inputs


def test_every_node_step_carries_its_domain_id(graph: Graph, stack: str) -> None:
    # Ordering alone (dependsOn) does not re-run a step when its VM is replaced; an input
    # that holds the Domain's id does: the engine replaces the step with the new id.
    domains = {d.name: d.urn for d in graph.of_type(DOMAIN)}
    for step in graph.of_type(COMMAND):
        # "<node>-<step>", or "<first control plane>-remove-<node>" for what runs on the first
        # control plane when <node> leaves: the leaving node's VM, not the first's.
        node = next(n for n in domains if step.name.startswith(f"{n}-"))
        node = step.name.split("-remove-", 1)[1] if "-remove-" in step.name else node
        assert step.property_dependencies.get("triggers") == [domains[node]], step.name
        assert step.inputs["triggers"][0] == f"{node}-id"  # the mock's id for that Domain


def test_sample_pod_runs_in_its_class(graph: Graph, stack: str) -> None:
    pods = {p.inputs["metadata"]["name"]: p.inputs for p in graph.of_type(POD)}
    classes = {c.inputs["metadata"]["name"]: c.inputs for c in graph.of_type(RUNTIME_CLASS)}
    assert set(pods) == {f"nginx-{c}" for c in classes}
    for name, cls in classes.items():
        assert cls["handler"] == SANDBOX_HANDLERS[name]
        assert set(cls["overhead"]["podFixed"]) == {"cpu", "memory"}
        pod = pods[f"nginx-{name}"]
        assert pod["spec"]["runtimeClassName"] == name
        assert pod["spec"]["containers"][0]["image"].split(":")[0].endswith("nginx")


def test_classic_gvisor_pod() -> None:
    graph = stack_graph("dev")
    gvisor = graph.named("gvisor", RUNTIME_CLASS).inputs
    assert gvisor["handler"] == "runsc"
    pod = graph.named("nginx-gvisor", POD).inputs
    assert pod["spec"]["runtimeClassName"] == "gvisor"
    # It can only land on worker1: the only node carrying the class's selector label.
    selector = gvisor["scheduling"]["nodeSelector"]
    matching = [n for n in NODES["dev"]
                if selector.items() <= node_labels(registration_of(graph, n)).items()]
    assert matching == ["worker1"]


def test_runtime_class_scheduling_matches_its_pool_exactly(graph: Graph, stack: str) -> None:
    for cls in graph.of_type(RUNTIME_CLASS):
        runtime = cls.inputs["metadata"]["name"]
        scheduling = cls.inputs["scheduling"]
        assert scheduling["nodeSelector"] == {sandbox_label(runtime): "true"}
        for node, pool in NODES[stack].items():
            registration = registration_of(graph, node)
            labels = node_labels(registration)
            selected = scheduling["nodeSelector"].items() <= labels.items()
            assert selected == (pool == runtime), (runtime, node)
            if selected:
                sandbox_taints = [t for t in registration["taints"]
                                  if t["key"] == SANDBOX_TAINT_KEY]
                assert len(sandbox_taints) == 1
                assert scheduling["tolerations"] == [{**sandbox_taints[0], "operator": "Equal"}]


def test_plain_pools_carry_no_sandbox_taint(graph: Graph, stack: str) -> None:
    for node, pool in NODES[stack].items():
        registration = registration_of(graph, node)
        labels = node_labels(registration)
        assert labels[POOL_LABEL] == pool
        has_taint = any(t["key"] == SANDBOX_TAINT_KEY for t in registration["taints"])
        assert has_taint == (pool in SANDBOX_HANDLERS), node


def test_installs_depend_on_their_own_domain_only(graph: Graph, stack: str) -> None:
    for node in NODES[stack]:
        install = command(graph, f"{node}-containerd")
        domains = {graph.by_urn()[u].name for u in graph.ancestors(install.urn)
                   if graph.by_urn()[u].type == DOMAIN}
        assert domains == {node}


def test_init_and_joins_wait_for_their_runtime_install(graph: Graph, stack: str) -> None:
    init = next(r for r in graph.of_type(COMMAND) if r.name.endswith("-kubeadm-init"))
    for node, pool in NODES[stack].items():
        step = graph.named(f"{node}-kubeadm-init" if init.name.startswith(f"{node}-")
                           else f"{node}-kubeadm-join", COMMAND)
        needed = [f"{node}-containerd-config", f"{node}-kubernetes-tools"]
        needed += {"gvisor": [f"{node}-gvisor"], "kata": [f"{node}-kata"]}.get(pool, [])
        for name in needed:
            assert graph.depends_on(step, command(graph, name)), (step.name, name)
        if step is not init:
            assert graph.depends_on(step, init)


def test_workers_install_while_control_plane_initialises(graph: Graph, stack: str) -> None:
    init = next(r for r in graph.of_type(COMMAND) if r.name.endswith("-kubeadm-init"))
    for node, pool in NODES[stack].items():
        if pool == "control-plane":
            continue
        assert not graph.depends_on(command(graph, f"{node}-containerd-config"), init)
        # A worker's runtime install never waits for another node's.
        others = {f"{n}-containerd" for n in NODES[stack] if n != node}
        names = {graph.by_urn()[u].name for u in
                 graph.ancestors(command(graph, f"{node}-containerd-config").urn)}
        assert not names & others


def test_worker_joins_run_in_parallel(graph: Graph, stack: str) -> None:
    workers = [n for n, p in NODES[stack].items() if p != "control-plane"]
    for a in workers:
        for b in workers:
            if a != b:
                assert not graph.depends_on(command(graph, f"{a}-kubeadm-join"),
                                            command(graph, f"{b}-kubeadm-join"))


@pytest.mark.parametrize("workers", [1, 8])
def test_cluster_time_does_not_grow_with_workers(workers: int) -> None:
    config = copy.deepcopy(stack_config("dev"))
    pools = config["sandboxed-k8s:pools"]
    pools[1].pop("names")
    pools[1]["count"] = workers
    graph = run_program(config, "dev")
    # wait, preflight, gVisor, containerd config, init, token issuer, join: 7 steps, for any
    # count. (The upgrade steps come after, one node at a time by design: on a new cluster each
    # is a quick check, beside the Kubernetes objects.)
    assert graph.critical_path(
        COMMAND, lambda r: runs_on_create(r) and not r.name.endswith("-upgrade")) == 7
    # master, the gVisor workers, worker2
    assert graph.critical_path(COMMAND, lambda r: r.name.endswith("-upgrade")) == 2 + workers


def test_domains_are_created_in_parallel(graph: Graph) -> None:
    domains = graph.of_type(DOMAIN)
    for a in domains:
        assert not any(graph.depends_on(a, b) for b in domains if b is not a)


def test_control_planes_join_one_at_a_time(graph: Graph, stack: str) -> None:
    planes = [n for n, p in NODES[stack].items() if p == "control-plane"]
    # The first control plane runs init; the others join in turn.
    for earlier, later in itertools.pairwise(planes[1:]):
        assert graph.depends_on(command(graph, f"{later}-kubeadm-join"),
                                command(graph, f"{earlier}-kubeadm-join"))


def test_workload_waits_for_class_provider_and_pool_installs(graph: Graph, stack: str) -> None:
    provider = graph.of_type(K8S_PROVIDER)[0]
    for pod in graph.of_type(POD):
        runtime = pod.inputs["spec"]["runtimeClassName"]
        assert graph.depends_on(pod, graph.named(runtime, RUNTIME_CLASS))
        assert graph.depends_on(pod, provider)
        pool_nodes = [n for n, p in NODES[stack].items() if p == runtime]
        assert pool_nodes
        installer = {"gvisor": "gvisor", "kata": "kata"}[runtime]
        for node in pool_nodes:
            for step in (f"{node}-{installer}", f"{node}-containerd-config"):
                assert graph.depends_on(pod, command(graph, step)), (pod.name, step)


def test_kubernetes_resources_use_the_explicit_provider(graph: Graph) -> None:
    provider = graph.of_type(K8S_PROVIDER)[0]
    k8s = [r for r in graph.resources if r.type.startswith("kubernetes:")]
    assert k8s
    for r in k8s:
        assert r.provider.startswith(provider.urn + "::"), r.name


def test_the_provider_and_every_object_wait_for_the_control_plane(graph: Graph,
                                                                   stack: str) -> None:
    # pulumi-kubernetes checks the cluster once, when configured; the engine configures a
    # provider as soon as its inputs are known. Its kubeconfig must carry the control plane's
    # last step (a property dependency, not only an ordering one), or the first `up` configures
    # it before any VM exists and every object then fails as "cluster unreachable".
    provider = graph.of_type(K8S_PROVIDER)[0]
    planes = [n for n, p in NODES[stack].items() if p == "control-plane"]
    last = (command(graph, f"{planes[-1]}-kubeadm-join") if len(planes) > 1
            else command(graph, f"{planes[0]}-kubeadm-init"))
    assert last.urn in provider.property_dependencies["kubeconfig"]
    objects = [r for r in graph.resources if r.type.startswith("kubernetes:") and r.custom]
    assert objects
    for r in objects:
        assert graph.depends_on(r, last), r.name


def test_libvirt_resources_use_an_explicit_provider(graph: Graph) -> None:
    for r in graph.resources:
        if r.type.startswith("libvirt:"):
            assert r.provider.startswith("urn:pulumi:") and "providers:libvirt" in r.provider


def test_every_child_has_a_component_parent(graph: Graph) -> None:
    for r in graph.resources:
        if r.type != "sandboxed-k8s:index:SandboxedCluster":
            assert "SandboxedCluster" in r.parent, r.name


def test_scripts_rerun_when_parameters_change(graph: Graph) -> None:
    # The command text is constant; the script and its parameters are on stdin, so any change
    # to either changes an input and re-runs the step.
    runners = {r.inputs["create"] if runs_on_create(r) else r.inputs["delete"]
               for r in graph.of_type(COMMAND)}
    assert len(runners) == 1
    for r in graph.of_type(COMMAND):
        assert "set -euo pipefail" in r.inputs["stdin"]


def test_kubernetes_version_pinned_in_kubeadm_and_tools(graph: Graph, stack: str) -> None:
    init = next(r for r in graph.of_type(COMMAND) if r.name.endswith("-kubeadm-init"))
    cluster = next(d for d in shipped_yaml(init, "KUBEADM_CONFIG_B64")
                   if d["kind"] == "ClusterConfiguration")
    for node in NODES[stack]:
        params = script_params(command(graph, f"{node}-kubernetes-tools"))
        assert cluster["kubernetesVersion"] == f"v{params['K8S_VERSION']}"
        assert re.fullmatch(r"[0-9a-f]{64}", params["KUBEADM_SHA256"])


def test_ha_uses_a_virtual_ip_endpoint(graph: Graph, stack: str) -> None:
    init = next(r for r in graph.of_type(COMMAND) if r.name.endswith("-kubeadm-init"))
    cluster = next(d for d in shipped_yaml(init, "KUBEADM_CONFIG_B64")
                   if d["kind"] == "ClusterConfiguration")
    vip_manifest = script_params(init).get("KUBE_VIP_B64")
    if stack == "ha":
        assert cluster["controlPlaneEndpoint"] == "10.18.0.5:6443"
        assert vip_manifest
        # A replaced first control plane finds the cluster at the VIP and does not init.
        assert script_params(init)["CLUSTER_ENDPOINT"] == "10.18.0.5:6443"
        for node in ("control-plane-2", "control-plane-3"):
            join = shipped_yaml(command(graph, f"{node}-kubeadm-join"),
                                "KUBEADM_JOIN_CONFIG_B64")[0]
            assert "controlPlane" in join
    else:
        assert cluster["controlPlaneEndpoint"] == "10.17.0.10:6443"
        assert vip_manifest is None and "CLUSTER_ENDPOINT" not in script_params(init)


def test_join_discovery_is_pinned_to_the_ca(graph: Graph, stack: str) -> None:
    for node in NODES[stack]:
        if any(r.name == f"{node}-kubeadm-init" for r in graph.resources):
            continue
        join = shipped_yaml(command(graph, f"{node}-kubeadm-join"), "KUBEADM_JOIN_CONFIG_B64")[0]
        hashes = join["discovery"]["bootstrapToken"]["caCertHashes"]
        assert len(hashes) == 1 and re.fullmatch(r"sha256:[0-9a-f]{64}", hashes[0])
        assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}",
                            join["discovery"]["bootstrapToken"]["token"])


def test_static_address_is_in_the_network_config(graph: Graph) -> None:
    addresses = graph.stack_outputs["nodes"][0]
    for domain in graph.of_type(DOMAIN):
        nic = domain.inputs["networkInterfaces"][0]
        seed = graph.seed_files(domain.name)
        eth0 = yaml.safe_load(seed["network-config"])["ethernets"]["eth0"]
        assert eth0["match"]["macaddress"] == nic["mac"]
        assert eth0["addresses"][0].split("/")[0] == addresses[domain.name]
        user_data = yaml.safe_load(seed["user-data"])
        assert user_data["hostname"] == domain.name


@pytest.mark.parametrize(("cmdline", "maps"), [
    ("root=/dev/vda rw console=ttyS0 net.ifnames=0",
     [{"console": "ttyS0", "net.ifnames": "0", "root": "/dev/vda"}, {"_": "rw"}]),
    ("quiet console=tty0 console=ttyS0 ro",
     [{"console": "tty0"}, {"console": "ttyS0"}, {"_": "quiet ro"}]),
    ("root=/dev/vda", [{"root": "/dev/vda"}]),
])
def test_kernel_cmdline_in_the_shape_the_provider_reads_back(cmdline: str,
                                                             maps: list[dict[str, str]]) -> None:
    # terraform-provider-libvirt 0.8.1 writes the arguments sorted and reads them back as one
    # map of key=value pairs (a new map when a key repeats) plus one map of the keyless ones
    # under "_": any other shape is a change on every `up` (and `cmdline` forces a new VM).
    assert kernel_cmdline(cmdline) == maps
