"""libvirt: one provider per hypervisor, the node network, volumes, cloud-init disks, domains.

The only module that imports pulumi_libvirt (0.5.x is deprecated upstream; a migration to
another provider touches this file alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_libvirt as libvirt

from components.spec import ClusterSpec, NodeSpec

GIB = 1024**3


@dataclass(frozen=True)
class NodeBootDocuments:
    """cloud-init NoCloud documents for one node (user-data holds its private host key)."""

    user_data: pulumi.Input[str]
    meta_data: str
    network_config: str


@dataclass(frozen=True)
class HypervisorArgs:
    spec: ClusterSpec
    boot: dict[str, NodeBootDocuments]


class Hypervisor(pulumi.ComponentResource):
    """Declares every VM of the cluster; all domains are created in parallel."""

    domains: dict[str, libvirt.Domain]

    def __init__(self, name: str, args: HypervisorArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandboxed-k8s:libvirt:Hypervisor", name, None, opts)
        spec = args.spec
        stack = spec.stack
        self.providers = {
            uri: libvirt.Provider(f"libvirt-{i}", uri=uri,
                                  opts=pulumi.ResourceOptions(parent=self))
            for i, uri in enumerate(spec.libvirt_uris)
        }
        self.networks: dict[str, libvirt.Network] = {}
        if spec.network.mode == "nat":
            for i, (uri, provider) in enumerate(self.providers.items()):
                self.networks[uri] = libvirt.Network(
                    f"network-{i}",
                    name=f"{stack}-{spec.network.name}",
                    mode="nat",
                    addresses=[str(spec.network.cidr)],
                    autostart=True,
                    # Addresses are static (cloud-init network-config), known at plan time;
                    # each NIC's fixed MAC also gets a DHCP reservation for the same address
                    # (libvirt keeps reservations under <dhcp>, so DHCP stays on).
                    dhcp=libvirt.NetworkDhcpArgs(enabled=True),
                    dns=libvirt.NetworkDnsArgs(enabled=True, local_only=True),
                    opts=self._opts(provider, delete_before_replace=True),
                )

        # One base image per (host, image): every node's root disk is a copy-on-write clone.
        self.base_volumes: dict[tuple[str, str], libvirt.Volume] = {}
        for pool in spec.pools:
            key = (pool.libvirt_uri, pool.base_image)
            if key not in self.base_volumes and pool.node_names:
                index = len(self.base_volumes)
                self.base_volumes[key] = libvirt.Volume(
                    f"base-image-{index}",
                    name=f"{stack}-base-{index}.qcow2",
                    pool=spec.storage_pool,
                    source=pool.base_image,
                    format="qcow2",
                    opts=self._opts(self.providers[pool.libvirt_uri], delete_before_replace=True),
                )

        self.domains = {}
        self.root_volumes: dict[str, libvirt.Volume] = {}
        self.cloudinit_disks: dict[str, libvirt.CloudInitDisk] = {}
        for node in spec.nodes:
            self._node(spec, node, args.boot[node.name])

        self.register_outputs({
            "domains": {name: d.id for name, d in self.domains.items()},
        })

    def _opts(self, provider: libvirt.Provider, *, delete_before_replace: bool = False,
              depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=provider,
                                      delete_before_replace=delete_before_replace,
                                      depends_on=depends_on)

    def _node(self, spec: ClusterSpec, node: NodeSpec, boot: NodeBootDocuments) -> None:
        pool = node.pool
        provider = self.providers[pool.libvirt_uri]
        prefix = f"{spec.stack}-{node.name}"
        root = libvirt.Volume(
            f"{node.name}-root",
            name=f"{prefix}-root.qcow2",
            pool=spec.storage_pool,
            base_volume_id=self.base_volumes[(pool.libvirt_uri, pool.base_image)].id,
            size=pool.disk_gib * GIB,
            format="qcow2",
            opts=self._opts(provider, delete_before_replace=True),
        )
        cloudinit = libvirt.CloudInitDisk(
            f"{node.name}-cloudinit",
            name=f"{prefix}-cloudinit.iso",
            pool=spec.storage_pool,
            user_data=boot.user_data,
            meta_data=boot.meta_data,
            network_config=boot.network_config,
            opts=self._opts(provider, delete_before_replace=True),
        )
        if spec.network.mode == "nat":
            nic = libvirt.DomainNetworkInterfaceArgs(
                network_id=self.networks[pool.libvirt_uri].id, hostname=node.name, mac=node.mac,
                addresses=[str(node.ip)], wait_for_lease=False)
        else:
            nic = libvirt.DomainNetworkInterfaceArgs(
                bridge=spec.network.bridge, hostname=node.name, mac=node.mac,
                wait_for_lease=False)
        self.root_volumes[node.name] = root
        self.cloudinit_disks[node.name] = cloudinit
        self.domains[node.name] = libvirt.Domain(
            node.name,
            name=prefix,
            vcpu=pool.cpu,
            memory=pool.memory_mib,
            # KVM inside the node needs the host CPU's virtualisation extensions.
            cpu=(libvirt.DomainCpuArgs(mode="host-passthrough") if spec.needs_kvm(pool)
                 else None),
            cloudinit=cloudinit.id,
            disks=[libvirt.DomainDiskArgs(volume_id=root.id)],
            network_interfaces=[nic],
            consoles=[libvirt.DomainConsoleArgs(type="pty", target_port="0",
                                                target_type="serial")],
            qemu_agent=True,
            autostart=True,
            opts=self._opts(provider, delete_before_replace=True),
        )
