"""The static pod firewall as nft reads it, and libvirt volume XML through the volume XSLT."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

import pytest

from components.node import firewall_files
from components.render.firewall import SystemPodDestination, render_ruleset
from components.render.volumes import PRIVATE_VOLUME_XSLT
from components.spec import load
from tests.test_spec import dev_config

# What pulumi-libvirt 0.5.4 (terraform-provider-libvirt's newDefVolume) sends for a root disk.
PROVIDER_VOLUME_XML = """\
<volume><name>dev-worker1-root.qcow2</name><capacity unit="bytes">21474836480</capacity>\
<target><format type="qcow2"></format><permissions><mode>644</mode></permissions></target>\
<backingStore><path>/var/lib/libvirt/images/dev-base-0.qcow2</path><format type="qcow2">\
</format><permissions><mode>644</mode></permissions></backingStore></volume>
"""


def test_sandbox_nodes_make_no_exception_and_others_only_for_api_and_dns() -> None:
    config = dev_config()
    config["network"]["deniedEgressCidrs"] = ["203.0.113.0/24"]
    spec = load(config, "dev")
    nodes = {n.name: n for n in spec.nodes}
    gvisor = firewall_files(spec, nodes["worker1"])["FIREWALL_RULESET"]
    plain = firewall_files(spec, nodes["worker2"])["FIREWALL_RULESET"]
    assert "system_pod_destinations" not in gvisor
    assert ("elements = { 10.17.0.10 . tcp . 6443, 10.17.0.1 . udp . 53, "
            "10.17.0.1 . tcp . 53 }") in plain
    for ruleset in (gvisor, plain):
        assert ("elements = { 10.0.0.0/8, 100.64.0.0/10, 169.254.0.0/16, 172.16.0.0/12, "
                "192.168.0.0/16, 203.0.113.0/24, 224.0.0.0/4 }") in ruleset
        # pods first: the pod CIDR (inside 10/8) is accepted before the private ranges drop
        egress = ruleset.split("chain pod_egress {")[1]
        assert egress.index("ip daddr 10.244.0.0/16 accept") < egress.index("@denied")


@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft (Debian: nftables)")
def test_nft_accepts_the_ruleset(tmp_path: Path) -> None:
    ruleset = tmp_path / "pod-firewall.nft"
    ruleset.write_text(render_ruleset(
        "10.244.0.0/16", ["10.0.0.0/8", "169.254.0.0/16", "10.17.0.0/24"],
        [SystemPodDestination(ipaddress.IPv4Address("10.17.0.10"), "tcp", 6443)]))
    check = subprocess.run(["nft", "-c", "-f", str(ruleset)], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stderr


@pytest.mark.skipif(shutil.which("xsltproc") is None, reason="needs xsltproc")
def test_volume_xslt_makes_a_provider_volume_private(tmp_path: Path) -> None:
    (tmp_path / "private.xsl").write_text(PRIVATE_VOLUME_XSLT)
    results = {}
    for name, xml in (("provider", PROVIDER_VOLUME_XML),
                      ("no permissions", "<volume><name>v</name><target><format type='raw'/>"
                                         "</target></volume>"),
                      ("no target", "<volume><name>v</name></volume>")):
        (tmp_path / "volume.xml").write_text(xml)
        out = subprocess.run(["xsltproc", str(tmp_path / "private.xsl"),
                              str(tmp_path / "volume.xml")],
                             capture_output=True, text=True, check=True).stdout
        results[name] = "".join(out.split())
    assert "<target><formattype=\"qcow2\"/><permissions><mode>0600</mode></permissions>" \
           "</target>" in results["provider"]
    # the backing store is described, not created: left as it is
    assert "<backingStore><path>/var/lib/libvirt/images/dev-base-0.qcow2</path>" \
           "<formattype=\"qcow2\"/><permissions><mode>644</mode>" in results["provider"]
    assert "<name>dev-worker1-root.qcow2</name>" in results["provider"]
    for name in ("no permissions", "no target"):
        assert "<permissions><mode>0600</mode></permissions></target>" in results[name], name
