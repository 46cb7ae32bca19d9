"""sandboxed-k8s: libvirt VMs -> containerd + runc + gVisor/Kata -> kubeadm -> sandboxed pods."""

import pulumi

from components.cluster import SandboxedCluster, SandboxedClusterArgs
from components.config import read_stack_spec
from components.host import check_host
from components.spec.transitions import DEPLOYED_OUTPUT

spec = read_stack_spec()  # raises with every config problem before any resource exists
check_host()  # mkisofs (genisoimage) for the cloud-init seeds, before any resource exists
cluster = SandboxedCluster("sandboxed-k8s", SandboxedClusterArgs(spec))

pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("controlPlaneEndpoint", spec.control_plane_endpoint)
pulumi.export("nodes", {n.name: str(n.ip) for n in spec.nodes})
pulumi.export("adminUser", spec.admin_user)
pulumi.export("adminSshPrivateKey", cluster.access.admin_private_key)
pulumi.export("runtimeClasses", list(spec.enabled_sandboxes))
# Read back by the next `up` (components/config.py) to refuse changes the cluster cannot take.
pulumi.export(DEPLOYED_OUTPUT, cluster.deployed)
