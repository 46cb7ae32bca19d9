"""components.host: what a stack needs from each hypervisor, as tools/check-hypervisor reads
it (`python -m components.host STACK`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.host import HypervisorNeeds, hypervisor_needs, main
from components.spec import load
from components.spec.stack_file import load_stack_file, stack_file

REMOTE = "qemu+ssh://root@hv2/system"


def pools(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "control-plane", "role": "control-plane", "names": ["master"]}, *extra]


def test_the_stacks_need_kvm_and_nested_virtualisation_only_for_kata() -> None:
    assert hypervisor_needs(load_stack_file(stack_file("dev"))) == [
        HypervisorNeeds("qemu:///system", "default", kvm=True, nested=False)]
    assert hypervisor_needs(load_stack_file(stack_file("ha"))) == [
        HypervisorNeeds("qemu:///system", "default", kvm=True, nested=True)]


def test_needs_are_per_uri_from_the_pools_placed_there() -> None:
    spec = load({
        "libvirt": {"domainType": "qemu", "storagePool": "vms"},
        "network": {"mode": "bridge", "bridge": "br0"},
        "pools": pools(
            {"name": "gvisor", "runtimes": ["gvisor"]},
            {"name": "kata", "runtimes": ["kata"], "libvirtUri": REMOTE, "domainType": "kvm",
             "cpuMode": "host-passthrough"},
            {"name": "plain", "libvirtUri": REMOTE}),
    }, "lab")
    assert hypervisor_needs(spec) == [
        HypervisorNeeds("qemu:///system", "vms", kvm=False, nested=False),
        HypervisorNeeds(REMOTE, "vms", kvm=True, nested=True),
    ]


def test_gvisor_on_its_kvm_platform_needs_nested_virtualisation() -> None:
    spec = load({"gvisor": {"platform": "kvm"},
                 "pools": pools({"name": "gvisor", "runtimes": ["gvisor"]})}, "lab")
    assert hypervisor_needs(spec) == [
        HypervisorNeeds("qemu:///system", "default", kvm=True, nested=True)]


def test_the_command_prints_one_tab_separated_line_per_uri(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["ha"]) == 0
    assert capsys.readouterr().out == "qemu:///system\tdefault\tkvm\tnested\n"
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  sandboxed-k8s:pools: 3\n")
    assert main([str(bad)]) == 2
    assert "pools" in capsys.readouterr().err
    assert main([str(tmp_path / "Pulumi.none.yaml")]) == 2
    assert "cannot read stack file" in capsys.readouterr().err
