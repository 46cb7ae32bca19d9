"""Config handling of the program itself: invalid config fails before any resource exists."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import config as runtime_config

from components.config import read_stack_spec
from components.host import HostError, missing_tools
from components.spec import PROJECT, ConfigError
from tests.graph.harness import FakeProviders, Graph, engine_config, run_program, stack_config


def test_invalid_config_registers_nothing() -> None:
    config: dict[str, Any] = copy.deepcopy(stack_config("dev"))
    config["sandboxed-k8s:pools"][1]["runtimes"] = ["firecracker"]
    config["sandboxed-k8s:kubernetes"]["version"] = "latest"
    config["sandboxed-k8s:colour"] = "blue"
    config["sandboxed-k8s:tenant"] = [{"name": "a"}]
    graph = Graph()
    # Pulumi's RunError: the engine prints its message alone, without a Python traceback.
    with pytest.raises(pulumi.RunError) as error:
        graph = run_program(config, "dev")
    assert isinstance(error.value, ConfigError)  # python -m render reports it too
    message = str(error.value)
    assert "pools[gvisor].runtimes[0]" in message
    assert "kubernetes.version" in message
    assert "colour: unknown key; allowed: " in message
    assert "tenant: unknown key; did you mean tenants? allowed: " in message  # a project key
    assert graph.resources == []


def test_read_stack_spec_raises_pulumis_run_error_with_every_problem() -> None:
    config: dict[str, Any] = copy.deepcopy(stack_config("dev"))
    config["sandboxed-k8s:network"]["cidr"] = "10.17.0.0/33"
    config["sandboxed-k8s:kubernetes"]["version"] = "1.34.3"
    runtime_config.set_all_config(engine_config(config), [])
    pulumi.runtime.set_mocks(FakeProviders(), project=PROJECT, stack="dev", preview=False)
    with pytest.raises(pulumi.RunError) as error:
        read_stack_spec()
    assert str(error.value) == (
        "invalid stack configuration:\n"
        "  - network.cidr: '10.17.0.0/33' is not an IPv4 network in CIDR form (e.g. "
        "10.17.0.0/24)\n"
        "  - kubernetes.version: 1.34.3 has no pinned checksums: set kubernetes.kubeadmSha256, "
        "kubeletSha256 and kubectlSha256 (dl.k8s.io publishes each as <binary>.sha256)")
    # Nothing chained: the engine shows this message, not the validation's internals.
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_pool_on_a_second_hypervisor_gets_its_own_provider() -> None:
    config: dict[str, Any] = copy.deepcopy(stack_config("dev"))
    config["sandboxed-k8s:network"].update({"mode": "bridge", "bridge": "br0"})
    config["sandboxed-k8s:pools"][2]["libvirtUri"] = "qemu+ssh://ops@host2/system"
    graph = run_program(config, "dev")
    providers = {p.inputs["uri"]: p.urn for p in graph.of_type("pulumi:providers:libvirt")}
    assert set(providers) == {"qemu:///system", "qemu+ssh://ops@host2/system"}
    domains = {d.name: d for d in graph.of_type("libvirt:index/domain:Domain")}
    assert domains["worker2"].provider.startswith(providers["qemu+ssh://ops@host2/system"])
    assert domains["worker1"].provider.startswith(providers["qemu:///system"])
    # Bridge mode: no libvirt network, interfaces on the shared bridge.
    assert graph.of_type("libvirt:index/network:Network") == []
    assert domains["worker2"].inputs["networkInterfaces"][0]["bridge"] == "br0"
    # One base image per hypervisor.
    bases = [v for v in graph.of_type("libvirt:index/volume:Volume")
             if v.name.startswith("base-image-")]
    assert len(bases) == 2


def test_domain_type_cpu_mode_and_direct_boot_reach_the_domains() -> None:
    config: dict[str, Any] = copy.deepcopy(stack_config("dev"))
    config["sandboxed-k8s:libvirt"]["domainType"] = "qemu"
    boot = {"kernel": "/var/lib/images/vmlinuz", "initrd": "/var/lib/images/initrd.img",
            "cmdline": "root=/dev/vda rw console=ttyS0 net.ifnames=0"}
    for pool in config["sandboxed-k8s:pools"][:2]:
        pool["boot"] = boot
    config["sandboxed-k8s:pools"][2]["domainType"] = "kvm"
    graph = run_program(config, "dev")
    domains = {d.name: d.inputs for d in graph.of_type("libvirt:index/domain:Domain")}
    for name in ("master", "worker1"):
        assert domains[name]["type"] == "qemu"
        assert domains[name]["cpu"] == {"mode": "maximum"}
        assert domains[name]["kernel"] == "/var/lib/images/vmlinuz"
        assert domains[name]["initrd"] == "/var/lib/images/initrd.img"
        assert domains[name]["cmdlines"] == [
            {"console": "ttyS0", "net.ifnames": "0", "root": "/dev/vda"}, {"_": "rw"}]
    assert domains["worker2"]["type"] == "kvm"
    assert domains["worker2"]["cpu"] == {"mode": "host-passthrough"}
    assert "kernel" not in domains["worker2"]


def test_missing_mkisofs_fails_before_any_resource(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no mkisofs
    graph = Graph()
    with pytest.raises(HostError) as error:
        graph = run_program(stack_config("dev"), "dev")
    assert isinstance(error.value, pulumi.RunError)  # the engine prints it without a traceback
    assert "mkisofs not found on PATH" in str(error.value)
    assert "genisoimage" in str(error.value)
    assert graph.resources == []


def test_host_check_passes_with_mkisofs() -> None:
    assert missing_tools(lambda tool: f"/usr/bin/{tool}") == []
    [problem] = missing_tools(lambda tool: None)
    assert problem.startswith("mkisofs not found on PATH (nor genisoimage)")
    # build-seed-iso.sh runs either.
    assert missing_tools(lambda tool: "/usr/bin/genisoimage" if tool == "genisoimage"
                         else None) == []
