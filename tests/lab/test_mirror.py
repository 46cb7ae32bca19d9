"""The lab mirror as its consumers see it, served inside a network namespace made here.

What is checked against what: image references against the names the program uses; image
contents against what kubeadm's manifests, the Flannel DaemonSet, the sample pod and the
proof Job run; file URLs against the program's default base URLs and the paths
components/scripts/install-*.sh compose; archive members against what those scripts extract.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.render.guardrails import proof_job
from components.spec import DEFAULTS, KUBE_VIP_REPOSITORY, PROOF_IMAGE, SAMPLE_IMAGE

from .mirror import (
    Mirror,
    ServedMirror,
    load_mirror,
    network_namespace,
    run_build_script,
    serve_mirror,
)

pytestmark = [pytest.mark.slow, pytest.mark.mirror]

ADDRESS = "10.19.0.1"
K8S = f"v{DEFAULTS['kubernetes']['version']}"
K8S_UPGRADE = "v1.34.3"  # MIRROR_UPGRADE_KUBERNETES_VERSION: what the cluster layer upgrades to
CNI = DEFAULTS["cni"]
PATH_DIRS = {"/usr/local/bin", "/usr/sbin", "/usr/bin", "/bin"}

# Every image the program pulls (kubeadm's control plane at its default version, the pod
# network, the enforcer it is moving to, kube-vip, the sample pod and proof Job) and the
# files in it its consumer runs.
IMAGE_FILES: dict[str, set[str]] = {
    "registry.k8s.io/pause:3.10.1": {"pause"},
    f"registry.k8s.io/kube-apiserver:{K8S}": {"usr/local/bin/kube-apiserver"},
    f"registry.k8s.io/kube-controller-manager:{K8S}": {"usr/local/bin/kube-controller-manager"},
    f"registry.k8s.io/kube-scheduler:{K8S}": {"usr/local/bin/kube-scheduler"},
    f"registry.k8s.io/kube-proxy:{K8S}": {
        "usr/local/bin/kube-proxy", "usr/sbin/iptables", "usr/sbin/iptables-restore",
        "usr/sbin/iptables-save", "usr/sbin/ip6tables", "usr/sbin/ip6tables-restore",
        "usr/sbin/conntrack"},
    "registry.k8s.io/etcd:3.6.5-0": {"usr/local/bin/etcd", "usr/local/bin/etcdctl"},
    "registry.k8s.io/coredns/coredns:v1.12.1": {"coredns"},
    f"{CNI['imageRegistry']}/flannel:{CNI['flannelVersion']}": {
        "opt/bin/flanneld", "bin/cp", "usr/sbin/iptables", "usr/sbin/ip6tables"},
    f"{CNI['imageRegistry']}/flannel-cni-plugin:{CNI['flannelCniPluginVersion']}": {
        "flannel", "bin/cp"},
    "registry.k8s.io/networking/kube-network-policies:v1.1.0": {"bin/netpol"},
    f"{KUBE_VIP_REPOSITORY}:{DEFAULTS['kubeVip']['version']}": {"kube-vip"},
    SAMPLE_IMAGE: {"usr/sbin/nginx", "etc/nginx/nginx.conf", "etc/passwd"},
    PROOF_IMAGE: {"bin/sh", "bin/uname", "bin/dmesg", "bin/head", "bin/sleep", "bin/httpd",
                  "bin/wget", "bin/nslookup"},
}
# And kubeadm's control plane at the version the cluster layer upgrades to.
IMAGE_FILES.update({
    reference.replace(f":{K8S}", f":{K8S_UPGRADE}"): files
    for reference, files in IMAGE_FILES.items() if reference.endswith(f":{K8S}")})
# (Entrypoint, Cmd) where the consumer relies on the image's own.
IMAGE_RUNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "registry.k8s.io/pause:3.10.1": (("/pause",), ()),
    "registry.k8s.io/coredns/coredns:v1.12.1": (("/coredns",), ()),
    f"{KUBE_VIP_REPOSITORY}:{DEFAULTS['kubeVip']['version']}": (("/kube-vip",), ()),
    "registry.k8s.io/networking/kube-network-policies:v1.1.0": ((), ("/bin/netpol",)),
    SAMPLE_IMAGE: ((), ("nginx", "-g", "daemon off;")),
}


@pytest.fixture(scope="module")
def mirror() -> Mirror:
    root, _, _ = run_build_script()
    return load_mirror(root)


@pytest.fixture(scope="module")
def served(mirror: Mirror) -> Iterator[ServedMirror]:
    with network_namespace(f"{ADDRESS}/24") as prefix, \
            serve_mirror(mirror, prefix, ADDRESS) as served:
        yield served


def crane(served: ServedMirror, mirror: Mirror, *args: str) -> str:
    proc = served.run(str(mirror.crane), "--insecure", *args)
    assert proc.returncode == 0, f"crane {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def fetch(served: ServedMirror, path: str, dest: Path) -> None:
    proc = served.run("curl", "-fsS", "-o", str(dest), f"{served.files_url}{path}")
    assert proc.returncode == 0, f"GET {path}: {proc.stderr}"


def exported(served: ServedMirror, mirror: Mirror, reference: str) -> tarfile.TarFile:
    """The image's flattened filesystem (`crane export`), pulled from the served registry."""
    export = subprocess.run([*served.prefix, str(mirror.crane), "--insecure", "export",
                             f"{served.registry}/{reference}", "-"],
                            capture_output=True, check=True, timeout=300).stdout
    return tarfile.open(fileobj=io.BytesIO(export))


def digest(path: Path, algorithm: str) -> str:
    return hashlib.new(algorithm, path.read_bytes()).hexdigest()


def test_the_mirror_holds_every_image_the_program_pulls(mirror: Mirror) -> None:
    assert {i.reference for i in mirror.images} == set(IMAGE_FILES)


@pytest.mark.parametrize("reference", sorted(IMAGE_FILES))
def test_image_pulls_by_its_upstream_name_with_the_recorded_digest(
        mirror: Mirror, served: ServedMirror, tmp_path: Path, reference: str) -> None:
    image = mirror.image(reference)
    ref = f"{served.registry}/{reference}"
    assert crane(served, mirror, "digest", ref).strip() == image.digest
    # Pulled by digest through the registry's v2 API: every blob is fetched and verified.
    crane(served, mirror, "pull", "--format", "oci", f"{served.registry}/{image.repository}"
          f"@{image.digest}", str(tmp_path / "oci"))
    config = crane(served, mirror, "config", ref)
    assert '"architecture":"amd64"' in config and '"os":"linux"' in config
    with exported(served, mirror, reference) as tar:
        members = {m.removeprefix("./") for m in tar.getnames()}
    assert IMAGE_FILES[reference] <= members, IMAGE_FILES[reference] - members
    path = next(e for e in image.env if e.startswith("PATH=")).removeprefix("PATH=")
    assert set(path.split(":")) >= PATH_DIRS
    if reference in IMAGE_RUNS:
        assert (image.entrypoint, image.cmd) == IMAGE_RUNS[reference]


def test_the_registry_is_served_read_only(mirror: Mirror, served: ServedMirror) -> None:
    pause = mirror.image("registry.k8s.io/pause:3.10.1")
    proc = served.run(str(mirror.crane), "--insecure", "copy",
                      f"{served.registry}/{pause.repository}@{pause.digest}",
                      f"{served.registry}/lab/written:1")
    assert proc.returncode != 0
    assert served.run(str(mirror.crane), "--insecure", "digest",
                      f"{served.registry}/lab/written:1").returncode != 0


def expected_urls(mirror: Mirror) -> dict[str, str]:
    """What the install scripts fetch from the program's default base URLs, at the mirror's
    versions (`upgrade-<binary>`: Kubernetes at the upgrade version): name -> URL."""
    v = mirror.versions
    k8s = f"{DEFAULTS['kubernetes']['baseUrl']}/{v['kubernetes_version']}/bin/linux/amd64"
    upgrade = (f"{DEFAULTS['kubernetes']['baseUrl']}/{v['upgrade_kubernetes_version']}"
               "/bin/linux/amd64")
    ctd = v["containerd_version"].removeprefix("v")
    cni = v["cni_plugins_version"]
    crictl = v["crictl_version"]
    gvisor = f"{DEFAULTS['gvisor']['baseUrl']}/{v['gvisor_release']}/x86_64"
    return {
        **{b: f"{k8s}/{b}" for b in ("kubeadm", "kubelet", "kubectl")},
        **{f"upgrade-{b}": f"{upgrade}/{b}" for b in ("kubeadm", "kubelet", "kubectl")},
        "containerd": f"{DEFAULTS['containerd']['baseUrl']}/v{ctd}/"
                      f"containerd-{ctd}-linux-amd64.tar.gz",
        "runc": f"{DEFAULTS['runc']['baseUrl']}/{v['runc_version']}/runc.amd64",
        "cni": f"{DEFAULTS['cniPlugins']['baseUrl']}/{cni}/cni-plugins-linux-amd64-{cni}.tgz",
        "crictl": f"{DEFAULTS['crictl']['baseUrl']}/{crictl}/crictl-{crictl}-linux-amd64.tar.gz",
        "runsc": f"{gvisor}/runsc",
        "containerd-shim-runsc-v1": f"{gvisor}/containerd-shim-runsc-v1",
    }


def test_the_pins_are_the_programs_defaults(mirror: Mirror) -> None:
    v = mirror.versions
    assert v["kubernetes_version"] == K8S
    assert v["upgrade_kubernetes_version"] == K8S_UPGRADE
    assert v["containerd_version"] == f"v{DEFAULTS['containerd']['version']}"
    assert v["runc_version"] == f"v{DEFAULTS['runc']['version']}"
    assert v["cni_plugins_version"] == f"v{DEFAULTS['cniPlugins']['version']}"
    assert v["crictl_version"] == f"v{DEFAULTS['crictl']['version']}"


def test_every_file_downloads_with_its_recorded_checksums(
        mirror: Mirror, served: ServedMirror, tmp_path: Path) -> None:
    urls = {f.url for f in mirror.files}
    assert set(expected_urls(mirror).values()) <= urls
    for i, f in enumerate(mirror.files):
        dest = tmp_path / str(i)
        fetch(served, f.served_path, dest)
        assert digest(dest, "sha256") == f.sha256, f.url
        if f.sha512 is not None:
            assert digest(dest, "sha512") == f.sha512, f.url
        # The site's own checksum file names the same digest.
        for suffix, algorithm in ((".sha256", "sha256"), (".sha256sum", "sha256"),
                                  (".sha512", "sha512")):
            if f.url + suffix in urls:
                published = (mirror.root / mirror.file(f.url + suffix).path).read_text()
                assert published.split()[0] == digest(dest, algorithm), f.url + suffix
    runc = mirror.file(expected_urls(mirror)["runc"])
    sums = (mirror.root / mirror.file(runc.url.rsplit("/", 1)[0] + "/runc.sha256sum").path)
    assert f"{runc.sha256}  runc.amd64" in sums.read_text()


def archive_members(mirror: Mirror, url: str) -> set[str]:
    with tarfile.open(mirror.root / mirror.file(url).path) as tar:
        return set(tar.getnames())


def test_archives_hold_what_the_install_scripts_extract(mirror: Mirror) -> None:
    urls = expected_urls(mirror)
    assert {"bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr"} <= archive_members(
        mirror, urls["containerd"])
    # install-kubernetes.sh: tar -xzf <archive> crictl
    assert archive_members(mirror, urls["crictl"]) == {"crictl"}
    cni = archive_members(mirror, urls["cni"])
    assert {"./bridge", "./host-local", "./loopback", "./portmap"} <= cni


def run_file(mirror: Mirror, url: str, *args: str) -> str:
    path = mirror.root / mirror.file(url).path
    return subprocess.run([str(path), *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout


def test_the_binaries_report_their_versions(mirror: Mirror) -> None:
    urls, v = expected_urls(mirror), mirror.versions
    assert run_file(mirror, urls["kubeadm"], "version", "-o", "short").strip() == K8S
    assert run_file(mirror, urls["kubelet"], "--version").strip() == f"Kubernetes {K8S}"
    assert run_file(mirror, urls["upgrade-kubeadm"], "version", "-o", "short").strip() == \
        K8S_UPGRADE
    assert run_file(mirror, urls["upgrade-kubelet"], "--version").strip() == \
        f"Kubernetes {K8S_UPGRADE}"
    assert f'"gitVersion": "{K8S}"' in run_file(mirror, urls["kubectl"], "version",
                                                  "--client", "-o", "json")
    runc = run_file(mirror, urls["runc"], "--version")
    assert runc.startswith(f"runc version {v['runc_version'].removeprefix('v')}\n")
    assert re.search(r"^libseccomp: 2\.\d+\.\d+$", runc, re.MULTILINE), runc
    assert v["gvisor_version"] in run_file(mirror, urls["runsc"], "--version")


def test_a_second_build_is_a_no_op(mirror: Mirror) -> None:
    before = (mirror.root / "manifest.json").stat().st_mtime_ns
    start = time.monotonic()
    root, stderr, _ = run_build_script()
    assert root == mirror.root
    assert "cached" in stderr
    assert time.monotonic() - start < 30
    assert (mirror.root / "manifest.json").stat().st_mtime_ns == before


def unpacked_image(served: ServedMirror, mirror: Mirror, reference: str, dest: Path) -> Path:
    dest.mkdir()
    with exported(served, mirror, reference) as tar:
        tar.extractall(dest, filter="fully_trusted")
    return dest


def chrooted(root: Path, *cmd: str) -> list[str]:
    """`cmd` run in `root` as a container would: private mounts and PIDs, the host's /dev, a
    /proc. When the unshare process is stopped its child dies, and with it the PID namespace."""
    script = 'mount --rbind /dev "$0/dev" && mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'
    return ["unshare", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", script,
            str(root), *cmd]


def test_the_nginx_image_serves_on_port_80(mirror: Mirror, served: ServedMirror,
                                           tmp_path: Path) -> None:
    root = unpacked_image(served, mirror, SAMPLE_IMAGE, tmp_path / "root")
    nginx = subprocess.Popen([*served.prefix, *chrooted(root, *mirror.image(SAMPLE_IMAGE).cmd)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while (page := served.run("curl", "-fsS", f"http://{ADDRESS}/")).returncode != 0:
            assert nginx.poll() is None and time.monotonic() < deadline, page.stderr
            time.sleep(0.2)
        assert "Welcome to nginx" in page.stdout
    finally:
        nginx.kill()  # unshare --fork ignores SIGTERM; SIGKILL takes its PID namespace along
        nginx.wait(timeout=10)


def test_the_busybox_image_runs_the_proof_jobs_command(mirror: Mirror, served: ServedMirror,
                                                       tmp_path: Path) -> None:
    command = proof_job("gvisor")["spec"]["template"]["spec"]["containers"][0]["command"]
    root = unpacked_image(served, mirror, PROOF_IMAGE, tmp_path / "root")
    out = subprocess.run(chrooted(root, *command), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.match(r"kernel-release: \d+\.\d+", out.stdout), out.stdout
