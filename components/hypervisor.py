"""libvirt: one provider per hypervisor, the node network, volumes, cloud-init seeds, domains.

The only module that imports pulumi_libvirt (0.5.x is deprecated upstream; a migration to
another provider touches this file alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_libvirt as libvirt
from pulumi_command import local

from components.render.cloudinit import render_seed_files
from components.render.scripts import SCRIPTS_DIR
from components.render.volumes import PRIVATE_VOLUME_XSLT
from components.spec import ClusterSpec, NodeSpec, PoolSpec

GIB = 1024**3


def kernel_cmdline(cmdline: str) -> list[dict[str, str]]:
    """Kernel arguments in the provider's `cmdlines` shape, as it reads them back from libvirt
    (one map of every `key=value` in sorted order, a new map when a key repeats, then one map
    `{"_": "flag flag"}` of the keyless ones), so a second `up` sees no difference."""
    maps: list[dict[str, str]] = []
    current: dict[str, str] = {}
    flags: list[str] = []
    for arg in sorted(cmdline.split()):
        if "=" not in arg:
            flags.append(arg)
            continue
        key, _, value = arg.partition("=")
        if key in current:
            maps.append(current)
            current = {}
        current[key] = value
    if current:
        maps.append(current)
    if flags:
        maps.append({"_": " ".join(flags)})
    return maps


def private_volume() -> libvirt.VolumeXmlArgs:
    """Volumes created 0600 (the provider writes 0644)."""
    return libvirt.VolumeXmlArgs(xslt=PRIVATE_VOLUME_XSLT)


@dataclass(frozen=True)
class NodeBootDocuments:
    """cloud-init NoCloud documents for one node (user-data holds its private host key)."""

    def seed_files(self) -> pulumi.Output[str]:
        """The documents as build-seed-iso.sh reads them (secret: user-data is)."""
        return pulumi.Output.secret(pulumi.Output.from_input(self.user_data).apply(
            lambda user_data: render_seed_files(user_data, self.meta_data, self.network_config)))

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
                    # Addresses are static (cloud-init network-config), known at plan time:
                    # no DHCP server hands out addresses that could collide with them.
                    dhcp=libvirt.NetworkDhcpArgs(enabled=False),
                    # dnsmasq serves the nodes' DNS; names in `domain` are answered locally,
                    # never forwarded (libvirt ignores localOnly without a domain).
                    domain=spec.network.domain,
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
                    source=self._verified_image(pool, index),
                    format="qcow2",
                    xml=private_volume(),
                    opts=self._opts(self.providers[pool.libvirt_uri], delete_before_replace=True),
                )

        self.domains = {}
        self.root_volumes: dict[str, libvirt.Volume] = {}
        self.seed_volumes: dict[str, libvirt.Volume] = {}
        for node in spec.nodes:
            self._node(spec, node, args.boot[node.name])

        self.register_outputs({
            "domains": {name: d.id for name, d in self.domains.items()},
        })

    def _verified_image(self, pool: PoolSpec, index: int) -> pulumi.Input[str]:
        """The base image as libvirt should read it: with a pinned checksum, a local copy
        fetched and verified on this machine first (the provider itself checks nothing)."""
        if pool.base_image_checksum is None:
            return pool.base_image
        fetched = local.Command(
            f"base-image-{index}-verified",
            create=(SCRIPTS_DIR / "local" / "fetch-base-image.sh").read_text(),
            interpreter=["/bin/bash", "-c"],
            environment={"IMAGE_SOURCE": pool.base_image,
                         "IMAGE_CHECKSUM": pool.base_image_checksum},
            opts=pulumi.ResourceOptions(parent=self),
        )
        return fetched.stdout.apply(lambda path: path.strip())

    def _seed_image(self, prefix: str, node: str, boot: NodeBootDocuments) -> pulumi.Output[str]:
        """The node's cloud-init seed, built privately on this machine: the provider's own
        CloudInitDisk cannot be created other than 0644 and holds the SSH host private key."""
        scripts = SCRIPTS_DIR / "local"
        built = local.Command(
            f"{node}-seed-image",
            create=(scripts / "build-seed-iso.sh").read_text(),
            delete=(scripts / "remove-seed-iso.sh").read_text(),
            interpreter=["/bin/bash", "-c"],
            stdin=boot.seed_files(),
            environment={"SEED_NAME": f"{prefix}-seed"},
            logging=local.Logging.NONE,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return built.stdout.apply(lambda path: path.strip())

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
            xml=private_volume(),
            opts=self._opts(provider, delete_before_replace=True),
        )
        seed = libvirt.Volume(
            f"{node.name}-seed",
            name=f"{prefix}-seed.iso",
            pool=spec.storage_pool,
            source=self._seed_image(prefix, node.name, boot),
            # What libvirt reports for an ISO 9660 image once uploaded: any other format would
            # read back as a change, and replace the seed on every `up`.
            format="iso",
            xml=private_volume(),
            opts=self._opts(provider, delete_before_replace=True),
        )
        # No `addresses`: the provider reads them back from DHCP leases or the guest agent only,
        # so a static address would show as a change on every `up`. The address is in the
        # node's network-config, matched by this fixed MAC.
        if spec.network.mode == "nat":
            nic = libvirt.DomainNetworkInterfaceArgs(
                network_id=self.networks[pool.libvirt_uri].id, hostname=node.name, mac=node.mac,
                wait_for_lease=False)
        else:
            nic = libvirt.DomainNetworkInterfaceArgs(
                bridge=spec.network.bridge, hostname=node.name, mac=node.mac,
                wait_for_lease=False)
        self.root_volumes[node.name] = root
        direct = pool.boot
        self.seed_volumes[node.name] = seed
        self.domains[node.name] = libvirt.Domain(
            node.name,
            name=prefix,
            type=pool.domain_type,
            vcpu=pool.cpu,
            memory=pool.memory_mib,
            # Never libvirt's default qemu64 model (no AES-NI and more); KVM inside the node
            # needs host-passthrough, which the spec enforces for pools that run it.
            cpu=libvirt.DomainCpuArgs(mode=pool.cpu_mode),
            # cloud-init finds its NoCloud seed by the `cidata` label on any disk.
            disks=[libvirt.DomainDiskArgs(volume_id=root.id),
                   libvirt.DomainDiskArgs(volume_id=seed.id)],
            network_interfaces=[nic],
            consoles=[libvirt.DomainConsoleArgs(type="pty", target_port="0",
                                                target_type="serial")],
            # Nothing reads the guest agent: with it on, the provider asks the agent for
            # addresses right after the VM starts, long before cloud-init could install it,
            # and the create fails.
            qemu_agent=False,
            autostart=True,
            # Direct kernel boot (paths on the hypervisor host) for images without a bootloader.
            kernel=direct.kernel if direct else None,
            initrd=direct.initrd if direct else None,
            cmdlines=kernel_cmdline(direct.cmdline) if direct and direct.cmdline else None,
            opts=self._opts(provider, delete_before_replace=True),
        )
