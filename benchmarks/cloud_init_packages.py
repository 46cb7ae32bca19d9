"""cloud-init's package step before and after the cut, on the test VM image, in one run.

    python -m benchmarks.cloud_init_packages [--runs 2] [--no-warm-up] [--raw DIR]

Boots the VM tests' Debian 12 image (tools/build-test-vm-image.sh) under qemu, one VM at a
time, with two user-data documents, interleaved (after, before, after, before, ...):
"after" is what the program renders today (runcmd installs only the packages the image
lacks); "before" is the same document plus cloud-init's `package_update: true` and
`packages:` (the old behaviour: apt-get update, then an install of every package). Both get
apt sources, as the program renders them for mirrors, pointing at a caching proxy of
Debian's archive on the host's loopback (benchmarks/apt_proxy.py), warmed by one unmeasured
"before" boot so the measured boots do not time the internet. Per boot: seconds from qemu's
start to SSH, to `cloud-init status --wait` returning, cloud-init's own total (`analyze
show`), its package module and runcmd's script (`analyze blame`), and what came from the
internet; then medians per variant and before - after.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks import apt_proxy
from benchmarks.stats import load_average, machine, table
from components.render.cloudinit import (
    PACKAGES,
    NodeCloudInit,
    StaticNetwork,
    render_meta_data,
    render_network_config,
    render_user_data,
)
from tests.vm.harness import VMImage, boot_vm, ensure_image
from tests.vm.releases import GUEST_HOST_ADDRESS
from tests.vm.ssh import VMError, generate_ed25519_keypair

AFTER, BEFORE = "after", "before"
HEADER = "#cloud-config\n"
# cloud-init's event names (Debian's cloud.cfg spells the module `scripts-user`): the
# package module, and the one that runs runcmd's script (`runcmd` itself only writes it).
PACKAGE_MODULE = "config-package-update-upgrade-install"
RUNCMD_MODULE = "config-scripts-user"
# qemu's user-mode network, as the VM tests address it.
NETWORK = StaticNetwork(
    mac="52:54:00:5a:4b:02",
    address=ipaddress.IPv4Interface("10.0.2.15/24"),
    gateway=ipaddress.IPv4Address(GUEST_HOST_ADDRESS),
    dns=[ipaddress.IPv4Address("10.0.2.3")],
)
ADMIN = "ops"
HOSTNAME = "sk8s-bench-node"


class BenchmarkError(RuntimeError):
    pass


@dataclass(frozen=True)
class Boot:
    """One boot's figures, in seconds unless named otherwise."""

    variant: str
    ssh_ready: float  # qemu started -> SSH answers
    cloud_init_done: float  # qemu started -> `cloud-init status --wait` returned
    cloud_init_total: float  # cloud-init's stages summed (`analyze show`)
    package_module: float  # config-package-update-upgrade-install (0: not run)
    runcmd: float  # config-scripts-user: runcmd's script
    archive_files: int  # fetched from Debian's archive during this boot
    load: float  # 1-minute load average when the boot ended


# ---- pure parts -----------------------------------------------------------------------------

_BLAME_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?)s \((.+)\)\s*$")
_TOTAL_LINE = re.compile(r"^Total Time: (\d+(?:\.\d+)?) seconds\s*$")


def parse_blame(text: str) -> list[dict[str, float]]:
    """`cloud-init analyze blame`: one dict per boot record, event name -> seconds. An event
    that ran more than once in a boot (each stage has its own `config-` events) is summed."""
    records: list[dict[str, float]] = []
    for line in text.splitlines():
        if line.startswith("-- Boot Record"):
            records.append({})
            continue
        match = _BLAME_LINE.match(line)
        if match and records:
            name = match.group(2)
            records[-1][name] = records[-1].get(name, 0.0) + float(match.group(1))
    return records


def module_seconds(record: dict[str, float], module: str) -> float:
    """Seconds of `module` (e.g. `config-scripts-user`) in one boot record, whatever its stage;
    0.0 when it has no event: cloud-init skips a module none of whose keys are set."""
    def norm(name: str) -> str:
        return name.rsplit("/", 1)[-1].replace("_", "-")

    return sum(seconds for name, seconds in record.items() if norm(name) == norm(module))


def parse_show_totals(text: str) -> list[float]:
    """`cloud-init analyze show`: each boot record's "Total Time" (its stages summed)."""
    return [float(m.group(1)) for m in map(_TOTAL_LINE.match, text.splitlines()) if m]


def before_user_data(after: str) -> str:
    """The old behaviour: `after` plus cloud-init's package keys, nothing else changed."""
    if not after.startswith(HEADER):
        raise ValueError("user-data must start with #cloud-config")
    document = yaml.safe_load(after[len(HEADER):])
    document["package_update"] = True
    document["packages"] = list(PACKAGES)
    return HEADER + yaml.safe_dump(document, sort_keys=False, width=4096)


def boot_order(runs: int, warm_up: bool) -> list[tuple[str, bool]]:
    """(variant, measured) in boot order: the unmeasured warm-up first, then interleaved."""
    order = [(BEFORE, False)] if warm_up else []
    return order + [(v, True) for _ in range(runs) for v in (AFTER, BEFORE)]


METRICS = (("SSH ready s", "ssh_ready"), ("cloud-init done s", "cloud_init_done"),
           ("cloud-init total s", "cloud_init_total"), ("package module s", "package_module"),
           ("runcmd s", "runcmd"))


def summary_rows(boots: Sequence[Boot]) -> list[list[object]]:
    """Per metric: the median of each variant and before - after."""
    rows: list[list[object]] = []
    for label, attr in METRICS:
        after = statistics.median(getattr(b, attr) for b in boots if b.variant == AFTER)
        before = statistics.median(getattr(b, attr) for b in boots if b.variant == BEFORE)
        # (+ 0.0: a difference that rounds to -0.0 prints as 0)
        rows.append([label, round(after, 1), round(before, 1), round(before - after, 1) + 0.0])
    return rows


def boot_table(boots: Sequence[Boot]) -> str:
    header = ["boot", "variant", *(label for label, _ in METRICS), "from archive", "load"]
    rows = [[i, b.variant, *(round(getattr(b, attr), 1) for _, attr in METRICS),
             f"{b.archive_files} files", f"{b.load:.2f}"] for i, b in enumerate(boots, 1)]
    return table(header, rows, left=2)


def summary_table(boots: Sequence[Boot]) -> str:
    return table(["median", AFTER, BEFORE, "before - after"], summary_rows(boots))


# ---- the boots ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Guest:
    """What every boot shares: the image, the admin key and the node's user-data."""

    image: VMImage
    admin_key: Path
    node: NodeCloudInit
    user_data: dict[str, str]  # variant -> document


def make_guest(image: VMImage, keys: Path, mirror: str, security_mirror: str) -> Guest:
    admin_key, admin_pub = generate_ed25519_keypair(keys, "admin_ed25519", f"{ADMIN}@bench")
    host_key, host_pub = generate_ed25519_keypair(keys, "host_ed25519", f"root@{HOSTNAME}")
    node = NodeCloudInit(hostname=HOSTNAME, admin_user=ADMIN, admin_ssh_public_key=admin_pub,
                         host_key_ed25519_private=host_key.read_text(),
                         host_key_ed25519_public=host_pub, apt_mirror=mirror,
                         apt_security_mirror=security_mirror)
    after = render_user_data(node)
    return Guest(image, admin_key, node, {AFTER: after, BEFORE: before_user_data(after)})


def boot_once(guest: Guest, variant: str, proxy: apt_proxy.AptProxy, workdir: Path,
              raw: Path | None, label: str) -> Boot:
    """Boot, wait for cloud-init, fail unless it finished cleanly, read its own timings."""
    fetched_at_start = proxy.snapshot().fetched
    with boot_vm(guest.image, guest.user_data[variant], admin_user=ADMIN,
                 private_key=guest.admin_key, host_public_key=guest.node.host_key_ed25519_public,
                 meta_data=render_meta_data(f"sk8s-bench-{time.time_ns()}", HOSTNAME),
                 network_config=render_network_config(NETWORK), mac=NETWORK.mac,
                 workdir=workdir) as vm:
        ssh_ready = vm.boot_seconds or 0.0
        start = time.monotonic()
        vm.run("cloud-init status --wait", check=False, timeout=1800)
        waited = time.monotonic() - start
        vm.wait_cloud_init()  # raises unless done without errors
        blame = vm.run("sudo -n cloud-init analyze blame").stdout
        show = vm.run("sudo -n cloud-init analyze show").stdout
    if raw is not None:
        (raw / f"{label}-blame.txt").write_text(blame)
        (raw / f"{label}-show.txt").write_text(show)
    records, totals = parse_blame(blame), parse_show_totals(show)
    if len(records) != 1 or len(totals) != 1:
        raise BenchmarkError(f"{label}: expected one boot record, got {len(records)} in "
                             f"blame and {len(totals)} in show:\n{blame}\n{show}")
    package = module_seconds(records[0], PACKAGE_MODULE)
    if (package > 0) != (variant == BEFORE):
        what = "did not run" if package == 0 else "ran"
        raise BenchmarkError(f"{label}: {PACKAGE_MODULE} {what} in the {variant!r} variant:"
                             f"\n{blame}")
    return Boot(variant, ssh_ready, ssh_ready + waited, totals[0], package,
                module_seconds(records[0], RUNCMD_MODULE),
                proxy.snapshot().fetched - fetched_at_start, load_average())


def run(args: argparse.Namespace, log: Callable[[str], None]) -> list[Boot]:
    image = ensure_image()
    boots: list[Boot] = []
    with tempfile.TemporaryDirectory(prefix="bench-cloud-init-") as tmp, \
            apt_proxy.serve(args.cache) as proxy:
        base = f"http://{GUEST_HOST_ADDRESS}:{proxy.port}"
        guest = make_guest(image, Path(tmp) / "keys", f"{base}/debian",
                           f"{base}/debian-security")
        print(f"apt sources: {base}/debian and {base}/debian-security (a proxy of "
              f"{apt_proxy.UPSTREAM}, cached in {args.cache})", flush=True)
        for i, (variant, measured) in enumerate(boot_order(args.runs, not args.no_warm_up)):
            label = f"{i:02d}-{variant}" + ("" if measured else "-warm-up")
            workdir = Path(tmp) / label
            log(f"boot {label}")
            boot = boot_once(guest, variant, proxy, workdir, args.raw, label)
            shutil.rmtree(workdir, ignore_errors=True)
            log(f"boot {label}: cloud-init done at {boot.cloud_init_done:.0f} s, "
                f"{boot.archive_files} files from the archive")
            if measured:
                boots.append(boot)
            else:
                print(f"warm-up boot ({variant}, not measured): {boot.archive_files} files "
                      f"from Debian's archive, cloud-init done at {boot.cloud_init_done:.0f} s",
                      flush=True)
        counts = proxy.snapshot()
    print(f"proxy: {counts.served} files served, {counts.fetched} fetched from the archive "
          f"({counts.fetched_bytes / 1e6:.1f} MB), {counts.failed} upstream failures")
    return boots


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cloud_init_packages",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="boots of each variant (default 2)")
    parser.add_argument("--no-warm-up", action="store_true",
                        help="skip the unmeasured first boot that fills the proxy's cache")
    parser.add_argument("--cache", type=Path, default=apt_proxy.DEFAULT_CACHE,
                        help=f"the proxy's cache (default {apt_proxy.DEFAULT_CACHE})")
    parser.add_argument("--raw", type=Path,
                        help="keep each boot's `cloud-init analyze blame` and `show` here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.raw is not None:
        args.raw.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    print(f"machine: {machine()}")
    print(f"load average (1 min) at start: {load_average():.2f}", flush=True)

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - start:6.0f} s] {msg}", file=sys.stderr, flush=True)

    try:
        boots = run(args, log)
    except (VMError, BenchmarkError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print("\n## Boots (seconds from qemu's start; cloud-init's own figures from `analyze`)")
    print(boot_table(boots))
    print(f"\n## Medians ({args.runs} boot{'s' * (args.runs > 1)} of each) and before - after")
    print(summary_table(boots))
    print(f"\nload average (1 min) at end: {load_average():.2f}")
    print(f"total: {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
