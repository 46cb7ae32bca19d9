"""What the machine running `pulumi preview`/`up` needs besides Python and the Pulumi engine,
and what a stack needs from each hypervisor.

The tools are checked before any resource is registered, so a missing one is named up front
instead of failing half-way through a deployment. The hypervisor's needs are printed by
`python -m components.host STACK` for tools/check-hypervisor, which checks them on the host.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pulumi

from components.spec import ClusterSpec
from components.spec.stack_file import load_stack_argument

# Executables, any one of which will do -> why it is needed and where it comes from.
REQUIRED_TOOLS: Mapping[tuple[str, ...], str] = {
    ("mkisofs", "genisoimage"): "the program builds each node's cloud-init seed (an ISO image) "
                                "with it on this machine; Debian/Ubuntu: apt install "
                                "genisoimage; Fedora/RHEL: dnf install genisoimage (or "
                                "xorriso's mkisofs)",
}


class HostError(pulumi.RunError):
    """Every tool this machine lacks, one per line; as Pulumi's RunError, `pulumi up` prints
    the list alone, without a Python traceback."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("this machine cannot run the program:\n"
                         + "\n".join(f"  - {p}" for p in problems))


def missing_tools(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """One line per required executable that is not on PATH."""
    return [f"{tools[0]} not found on PATH (nor {', '.join(tools[1:])}): {why}"
            for tools, why in REQUIRED_TOOLS.items() if all(which(t) is None for t in tools)]


def check_host(which: Callable[[str], str | None] = shutil.which) -> None:
    problems = missing_tools(which)
    if problems:
        raise HostError(problems)


@dataclass(frozen=True)
class HypervisorNeeds:
    """What the pools placed on one libvirt URI need from that hypervisor."""

    uri: str
    storage_pool: str
    kvm: bool  # a pool there has domain type kvm: the host needs /dev/kvm
    nested: bool  # a pool there runs KVM inside its nodes (Kata, runsc's kvm platform)

    def line(self) -> str:
        return "\t".join((self.uri, self.storage_pool, "kvm" if self.kvm else "qemu",
                          "nested" if self.nested else "-"))


def hypervisor_needs(spec: ClusterSpec) -> list[HypervisorNeeds]:
    """One entry per libvirt URI the stack's pools use, in the order the pools name them."""
    return [HypervisorNeeds(
        uri=uri, storage_pool=spec.storage_pool,
        kvm=any(p.domain_type == "kvm" for p in spec.pools if p.libvirt_uri == uri),
        nested=any(spec.needs_kvm(p) for p in spec.pools if p.libvirt_uri == uri),
    ) for uri in spec.libvirt_uris]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.host",
        description="What a stack needs from each hypervisor, one tab-separated line per "
                    "libvirt URI: URI, storage pool, domain type (kvm if any pool there uses "
                    "it, else qemu), nested (a pool there runs KVM inside its nodes) or -. "
                    "Read by tools/check-hypervisor --stack.")
    parser.add_argument("stack", help="a stack name (stacks/Pulumi.<name>.yaml) or stack file")
    args = parser.parse_args(argv)
    spec = load_stack_argument(args.stack)
    if spec is None:
        return 2
    for needs in hypervisor_needs(spec):
        print(needs.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
