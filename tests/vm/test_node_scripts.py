"""The node scripts on a real Debian 12 VM provisioned by our rendered cloud-init.

The program itself (``__main__.py`` under Pulumi mocks, tests/graph/harness.py) renders the
remote steps of a gVisor worker, with the stack config's download base URLs, versions and
checksums pointed at a local release mirror (tests/vm/releases.py) holding the Go-built
containerd 2.x and gVisor and Debian's runc and CNI plugins. Each step's recorded ``create``
command and ``stdin`` are run over the pinned SSH connection, exactly what pulumi-command
would send, in the order of the program's dependencies:

    wait-cloud-init -> preflight -> (node-firewall | install-containerd | install-gvisor)
        -> configure-containerd

containerd is started once, by the config step, with the node's config. Then a pod runs under
runsc (and one under runc) through the CRI inside the VM, every step is run again and nothing
may change (files, binaries, containerd's process). Finally one changed runsc flag must make
configure-containerd rewrite runsc.toml without restarting containerd, and the next runsc pod
must run with it; a hand-edited containerd config is put back with exactly one restart; a
replaced runsc is installed again from the pinned release. The static pod firewall drops a
pod-like namespace's connection to the node's sshd but not to another pod, and a runsc pod's
sandbox sits in the pod's systemd slice under its memory limit.

All tests share the session VM (tests/vm/conftest.py) and run in file order.
"""

from __future__ import annotations

import shlex
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .conftest import NOTES, TIMINGS, NodeFixture
from .harness import REPO_ROOT, BootedVM
from .program import (
    STEP_SUFFIXES,
    ProgramPlan,
    StepRun,
    decoded_param,
    mirror_config,
    program_plan,
    run_plan,
    run_step,
)
from .releases import RecordingServer, ReleaseMirror, build_mirror, serve
from .ssh import RunResult
from .vmnode import (
    CONFIG_TOML,
    CRICTL,
    REMOTE_IMAGES,
    RUNSC_TOML,
    RemoteCrictl,
    containerd_starts,
    containerd_unit,
    file_state,
    installed_files,
    node_state,
    sudo,
)

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from components.render.containerd import render_containerd_config, render_runsc_toml
from components.render.firewall import RULESET_PATH, UNIT
from components.render.scripts import REMOTE_RUNNER
from tests.node.conftest import node_tools  # noqa: F401  (tests/node's session fixture)
from tests.node.nodes import TEST_IMAGE
from tests.node.oci import build_busybox_archive, pause_entrypoint
from tests.node.tools import NodeTools, containerd_version

pytestmark = [pytest.mark.slow, pytest.mark.vm]

HANDLERS = ("runc", "runsc")
# An allowlisted runsc flag that widens nothing and leaves a visible trace (log files).
CHANGED_FLAGS = {"debug-log": "/var/log/sk8s-test-runsc/"}


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    mirror: ReleaseMirror
    server: RecordingServer


@dataclass(frozen=True)
class FirstRun:
    runs: dict[str, StepRun]
    requests: list[tuple[str, int]]


def sandbox_image(config_text: str) -> str:
    """The pod sandbox ("pause") image a rendered config.toml names (version 2 or 3)."""
    plugins = tomllib.loads(config_text)["plugins"]
    if "io.containerd.cri.v1.images" in plugins:
        return str(plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"])
    return str(plugins["io.containerd.grpc.v1.cri"]["sandbox_image"])



@pytest.fixture(scope="module")
def tools(request: pytest.FixtureRequest) -> NodeTools:
    """tests/node's `node_tools` (Go-built containerd 2.x, gVisor, crictl; Debian runc)."""
    value = request.getfixturevalue("node_tools")
    assert isinstance(value, NodeTools)
    return value


@pytest.fixture(scope="module")
def served(tools: NodeTools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    start = time.monotonic()
    root = tmp_path_factory.mktemp("release-mirror")
    mirror = build_mirror(root, tools.bins, containerd_version(tools.bins["containerd"]))
    TIMINGS["release mirror build"] = time.monotonic() - start
    NOTES.append(
        f"release mirror: containerd {mirror.containerd.version} (Go-built), runc "
        f"{mirror.runc.version} and CNI plugins {mirror.cni_plugins.version} (Debian), "
        f"gVisor {mirror.gvisor_release} (Go-built, unpatched)"
    )
    with serve(root) as server:
        yield Served(mirror, server)


@pytest.fixture(scope="module")
def plan(served: Served) -> ProgramPlan:
    return program_plan(mirror_config(served.mirror, served.server))


@pytest.fixture(scope="module")
def first_run(node_vm: NodeFixture, plan: ProgramPlan, served: Served) -> FirstRun:
    mark = served.server.mark()
    runs = run_plan(node_vm.vm, plan, "1st run")
    return FirstRun(runs, served.server.requests_since(mark))


@pytest.fixture(scope="module")
def cri(node_vm: NodeFixture, tools: NodeTools, first_run: FirstRun,
        tmp_path_factory: pytest.TempPathFactory) -> RemoteCrictl:
    """crictl in the VM, the busybox image and the stand-in pause image imported."""
    vm = node_vm.vm
    start = time.monotonic()
    vm.copy(tools.crictl, CRICTL, mode=0o755, sudo=True)
    config_text = sudo(vm, f"cat {CONFIG_TOML}").stdout
    pause_ref = sandbox_image(config_text)
    images = tmp_path_factory.mktemp("vm-images")
    archives = [
        build_busybox_archive(images / "busybox.tar", TEST_IMAGE).path,
        build_busybox_archive(images / "pause.tar", pause_ref, entrypoint=pause_entrypoint()).path,
    ]
    remote = RemoteCrictl(vm)
    remote.wait_runtime_ready()
    for archive in archives:
        target = f"{REMOTE_IMAGES}/{archive.name}"
        vm.copy(archive, target, sudo=True)
        sudo(vm, f"/usr/local/bin/ctr -n k8s.io images import --snapshotter overlayfs {target}")
    remote.wait_image(TEST_IMAGE)
    remote.wait_image(pause_ref)
    TIMINGS["crictl + image import into the VM"] = time.monotonic() - start
    return remote


# ---------------------------------------------------------------------------------------------
# Tests, in the order they run
# ---------------------------------------------------------------------------------------------


def test_program_steps_run_in_graph_order_against_the_mirror(plan: ProgramPlan,
                                                              served: Served) -> None:
    deps = plan.depends
    assert deps["wait-cloud-init"] == set()
    assert deps["preflight"] == {"wait-cloud-init"}
    for parallel in ("pod-firewall", "containerd", "gvisor"):
        assert deps[parallel] == {"wait-cloud-init", "preflight"}, deps
    assert deps["containerd-config"] == {"wait-cloud-init", "preflight", "pod-firewall",
                                         "containerd", "gvisor"}
    assert plan.order[:2] == ["wait-cloud-init", "preflight"]
    assert plan.order[-1] == "containerd-config"
    for step in plan.steps.values():
        assert step.create == REMOTE_RUNNER, step.suffix
        assert f"SCRIPT_NAME={step.script.removesuffix('.sh')}" in step.stdin
    # The downloads point at the mirror, with the versions and checksums of what it serves.
    m, server = served.mirror, served.server
    installer = plan.steps["containerd"].exported()
    assert shlex.split(installer["CONTAINERD_BASE_URL"]) == [server.guest_url("containerd")]
    assert shlex.split(installer["CONTAINERD_SHA256"]) == [m.containerd.sha256]
    assert shlex.split(installer["RUNC_SHA256"]) == [m.runc.sha256]
    assert shlex.split(installer["CNI_PLUGINS_SHA256"]) == [m.cni_plugins.sha256]
    gvisor = plan.steps["gvisor"].exported()
    assert shlex.split(gvisor["GVISOR_BASE_URL"]) == [server.guest_url("gvisor")]
    assert shlex.split(gvisor["RUNSC_SHA512"]) == [m.gvisor_sha512["runsc"]]
    assert shlex.split(plan.steps["preflight"].exported()["REQUIRE_GVISOR"]) == ["1"]
    handlers = plan.steps["containerd-config"].exported()["HANDLERS"]
    assert shlex.split(handlers) == [" ".join(HANDLERS)]


def test_first_run_installs_and_configures_the_runtimes(
    node_vm: NodeFixture, plan: ProgramPlan, served: Served, first_run: FirstRun
) -> None:
    vm, m = node_vm.vm, served.mirror
    logs = {s: r.log for s, r in first_run.runs.items()}
    assert "all requirements met" in logs["preflight"], logs["preflight"]
    assert f"pod firewall loaded from {RULESET_PATH}" in logs["pod-firewall"], logs
    assert f"enabled {UNIT}" in logs["pod-firewall"], logs["pod-firewall"]
    # containerd never ran with its built-in defaults: only the config step started it.
    assert "restarted containerd" not in logs["containerd"], logs["containerd"]
    assert "started once its config is installed" in logs["containerd"], logs["containerd"]
    assert f"gVisor {m.gvisor_release} installed (binaries)" in logs["gvisor"], logs["gvisor"]
    config_log = logs["containerd-config"]
    assert "reads config version 3" in config_log, config_log
    assert f"updated {CONFIG_TOML}" in config_log and f"updated {RUNSC_TOML}" in config_log
    assert config_log.count("restarted containerd") == 1, config_log
    assert "handlers configured: runc runsc" in config_log, config_log
    assert len(containerd_starts(vm)) == 1

    # Every artifact was downloaded once from the mirror, and nothing else was asked for.
    expected = sorted([m.url_path("containerd"), m.url_path("runc"), m.url_path("cni-plugins"),
                       *(m.url_path(f"{b}{ext}") for b in ("runsc", "containerd-shim-runsc-v1")
                         for ext in ("", ".sha512"))])
    assert sorted(first_run.requests) == [(path, 200) for path in expected]

    # The node holds exactly the mirror's binaries and the program's rendered configs.
    state = file_state(vm, installed_files(m))
    for path, digest in m.expected_installs.items():
        assert state[path][0] == digest, path
    config_step = plan.steps["containerd-config"]
    node_config = sudo(vm, f"cat {CONFIG_TOML}").stdout
    assert node_config == decoded_param(config_step, "CONTAINERD_CONFIG_V3_B64")
    assert node_config == render_containerd_config(3, HANDLERS)
    node_runsc = sudo(vm, f"cat {RUNSC_TOML}").stdout
    assert node_runsc == decoded_param(config_step, "RUNSC_TOML_B64")
    assert node_runsc == render_runsc_toml("systrap", {})
    unit = containerd_unit(vm)
    assert unit["ActiveState"] == "active", unit
    assert vm.run("systemctl is-enabled containerd").stdout.strip() == "enabled"


def _probe(cri: RemoteCrictl, handler: str, label: str = "") -> tuple[RunResult, RunResult]:
    """uname -r and dmesg inside a fresh pod with `handler` (pod removed afterwards)."""
    start = time.monotonic()
    with cri.container(handler, f"{handler}-probe") as cid:
        uname = cri.exec(cid, "uname -r")
        dmesg = cri.exec(cid, "dmesg")
    TIMINGS[f"{label or handler + ' pod'}: run, exec uname+dmesg, remove"] = (
        time.monotonic() - start)
    return uname, dmesg


def test_runsc_pod_runs_inside_gvisor(node_vm: NodeFixture, cri: RemoteCrictl) -> None:
    vm_kernel = node_vm.vm.run("uname -r").stdout.strip()
    uname, dmesg = _probe(cri, "runsc")
    assert uname.rc == 0, uname
    assert dmesg.rc == 0, dmesg
    assert "gVisor" in dmesg.stdout, f"dmesg in a runsc pod does not mention gVisor:\n{dmesg}"
    assert uname.stdout.strip() and uname.stdout.strip() != vm_kernel, (uname, vm_kernel)


def test_runc_pod_sees_the_vm_kernel(node_vm: NodeFixture, cri: RemoteCrictl) -> None:
    vm_kernel = node_vm.vm.run("uname -r").stdout.strip()
    uname, dmesg = _probe(cri, "runc")
    assert uname.rc == 0, uname
    assert uname.stdout.strip() == vm_kernel
    assert "gVisor" not in dmesg.stdout


POD_MEMORY_MAX = 192 * 1024 * 1024


def _cgroup_of(vm: BootedVM, pid: str) -> str:
    return sudo(vm, f"cat /proc/{pid}/cgroup").stdout.strip().partition("::")[2]


def _effective_memory_max(vm: BootedVM, cgroup: str) -> int:
    """The lowest memory.max from the cgroup up to the root ('max' is unlimited)."""
    limits = sudo(vm, "p=/sys/fs/cgroup" + shlex.quote(cgroup) + "; while :; do "
                      "cat \"$p/memory.max\" 2>/dev/null || true; "
                      "[ \"$p\" = /sys/fs/cgroup ] && break; p=$(dirname \"$p\"); done").stdout
    return min((int(v) for v in limits.split() if v != "max"), default=2**63)


def test_runsc_sandbox_runs_in_the_pods_cgroup_under_its_memory_limit(
        node_vm: NodeFixture, cri: RemoteCrictl) -> None:
    """As the kubelet does with the systemd driver: the pod's slice carries its limit, and
    the sandbox (Sentry, gofer and their children) must sit below it."""
    vm = node_vm.vm
    slice_name = f"sk8spod{uuid.uuid4().hex[:12]}.slice"
    sudo(vm, f"mkdir -p /run/systemd/system && printf '[Slice]\\nMemoryMax={POD_MEMORY_MAX}\\n' "
             f"> /run/systemd/system/{slice_name} && systemctl daemon-reload && "
             f"systemctl start {slice_name}")
    start = time.monotonic()
    try:
        with cri.pod("runsc", "cgroup-probe", slice_name) as (pod_id, _):
            listed = sudo(vm, "ps -e -o pid=,ppid=,args=").stdout.splitlines()
            rows = [line.split(None, 2) for line in listed if len(line.split(None, 2)) == 3]
            args = {pid: argv for pid, _, argv in rows}
            (shim,) = [pid for pid, _, argv in rows
                       if argv.split()[0].endswith("containerd-shim-runsc-v1") and pod_id in argv]
            # The shim's descendants but the runsc CLI it runs itself (wait, events): the
            # Sentry, the gofer and systrap's stub processes.
            sandbox: set[str] = set()
            parents = {shim}
            while parents:
                parents = {pid for pid, ppid, argv in rows if ppid in parents
                           and argv.split()[0].rsplit("/", 1)[-1] != "runsc"} - sandbox
                sandbox |= parents
            sentries = [pid for pid in sandbox if args[pid].startswith("runsc-sandbox")]
            assert sentries, [args[pid] for pid in sandbox]
            assert all("--systemd-cgroup=true" in args[pid] for pid in sentries), (
                [args[pid] for pid in sentries])
            placed = {pid: _cgroup_of(vm, pid) for pid in sandbox}
            outside = {pid: cg for pid, cg in placed.items()
                       if not cg.startswith(f"/{slice_name}/")}
            assert not outside, (outside, [args[pid] for pid in outside])
            for pid, cgroup in placed.items():
                assert _effective_memory_max(vm, cgroup) == POD_MEMORY_MAX, (pid, cgroup)
    finally:
        sudo(vm, f"systemctl stop {slice_name}; rm -f /run/systemd/system/{slice_name}; "
                 "systemctl daemon-reload", check=False)
    TIMINGS["runsc pod in its slice: run, inspect, remove"] = time.monotonic() - start


def test_second_run_changes_nothing(
    node_vm: NodeFixture, plan: ProgramPlan, served: Served, first_run: FirstRun
) -> None:
    vm, m = node_vm.vm, served.mirror
    before = node_state(vm, m)
    starts = containerd_starts(vm)
    mark = served.server.mark()

    runs = run_plan(vm, plan, "2nd run")

    after = node_state(vm, m)
    assert after.files == before.files  # same bytes, same inodes and mtimes: nothing rewritten
    assert after.stamps == before.stamps
    for key in ("MainPID", "ActiveEnterTimestampMonotonic", "InvocationID", "ActiveState"):
        assert after.unit[key] == before.unit[key], (key, before.unit, after.unit)
    assert containerd_starts(vm) == starts
    assert served.server.requests_since(mark) == []  # nothing downloaded again

    logs = {s: r.log for s, r in runs.items()}
    install = logs["containerd"]
    assert f"containerd {m.containerd.version} already installed" in install, install
    assert f"runc {m.runc.version} already installed" in install, install
    assert f"CNI plugins {m.cni_plugins.version} already installed" in install, install
    assert "containerd unchanged, not restarted" in install, install
    assert f"gVisor {m.gvisor_release} already installed" in logs["gvisor"], logs["gvisor"]
    assert f"enabled {UNIT}" not in logs["pod-firewall"], logs["pod-firewall"]
    config_log = logs["containerd-config"]
    assert "configuration unchanged, containerd not restarted" in config_log, config_log
    assert "handlers configured: runc runsc" in config_log, config_log
    for suffix, log in logs.items():
        assert "updated " not in log and "restarted containerd" not in log, (suffix, log)


def test_changed_runsc_flag_reaches_new_pods_without_a_restart(
    node_vm: NodeFixture, plan: ProgramPlan, served: Served, cri: RemoteCrictl
) -> None:
    vm, m = node_vm.vm, served.mirror
    changed = program_plan(mirror_config(m, served.server, CHANGED_FLAGS))
    # One changed stack value re-runs only the containerd config step.
    differing = [s for s in STEP_SUFFIXES if changed.steps[s].stdin != plan.steps[s].stdin]
    assert differing == ["containerd-config"]

    before = node_state(vm, m)
    starts = containerd_starts(vm)
    run = run_step(vm, changed.steps["containerd-config"])
    TIMINGS["changed flag: configure-containerd.sh"] = run.seconds
    assert run.result.rc == 0, run.log
    after = node_state(vm, m)

    assert after.files != before.files  # the no-change check above can fail
    assert after.files[RUNSC_TOML][0] != before.files[RUNSC_TOML][0]
    untouched = [p for p in before.files if p != RUNSC_TOML]
    assert {p: after.files[p] for p in untouched} == {p: before.files[p] for p in untouched}
    node_runsc = sudo(vm, f"cat {RUNSC_TOML}").stdout
    assert node_runsc == render_runsc_toml("systrap", CHANGED_FLAGS)
    assert f"updated {RUNSC_TOML}" in run.log and f"updated {CONFIG_TOML}" not in run.log
    assert "restarted containerd" not in run.log, run.log
    assert containerd_starts(vm) == starts
    assert after.unit == before.unit

    # The same changed parameters again: nothing more to do.
    again = run_step(vm, changed.steps["containerd-config"])
    assert again.result.rc == 0, again.log
    assert "configuration unchanged, containerd not restarted" in again.log, again.log
    assert node_state(vm, m) == after

    # The new flag reaches runsc: a new runsc pod writes its debug logs where the flag says.
    log_dir = CHANGED_FLAGS["debug-log"]
    sudo(vm, f"rm -rf {log_dir} && mkdir -p {log_dir}")
    _, dmesg = _probe(cri, "runsc", "changed flag: runsc pod")
    assert "gVisor" in dmesg.stdout, dmesg
    listing = sudo(vm, f"ls -A {log_dir}", check=False)
    assert listing.rc == 0 and listing.stdout.split(), (
        f"runsc wrote no debug logs to {log_dir}: {listing}")


def test_edited_containerd_config_is_reconciled_with_one_restart(
    node_vm: NodeFixture, served: Served, cri: RemoteCrictl
) -> None:
    vm, m = node_vm.vm, served.mirror
    step = program_plan(mirror_config(m, served.server, CHANGED_FLAGS)).steps["containerd-config"]
    # A hand edit on the node (what `cat >>` installers leave behind).
    sudo(vm, f"printf '%s\\n' '# local edit' >> {CONFIG_TOML}")
    before = node_state(vm, m)
    starts = containerd_starts(vm)
    run = run_step(vm, step)
    TIMINGS["edited config: configure-containerd.sh"] = run.seconds
    assert run.result.rc == 0, run.log
    after = node_state(vm, m)

    assert sudo(vm, f"cat {CONFIG_TOML}").stdout == render_containerd_config(3, HANDLERS)
    assert f"updated {CONFIG_TOML}" in run.log and f"updated {RUNSC_TOML}" not in run.log
    assert run.log.count("restarted containerd") == 1, run.log
    assert "handlers configured: runc runsc" in run.log, run.log
    assert containerd_starts(vm) == [*starts, after.unit["InvocationID"]]
    assert after.unit["MainPID"] != before.unit["MainPID"]
    assert int(after.unit["ActiveEnterTimestampMonotonic"]) > int(
        before.unit["ActiveEnterTimestampMonotonic"])
    cri.wait_runtime_ready()


def test_a_replaced_runsc_is_reinstalled_from_the_pinned_release(
    node_vm: NodeFixture, plan: ProgramPlan, served: Served
) -> None:
    vm, m = node_vm.vm, served.mirror
    runsc = "/usr/local/bin/runsc"
    before = node_state(vm, m)
    sudo(vm, f"printf '#!/bin/sh\\necho runsc version tampered\\n' > {runsc}")
    mark = served.server.mark()
    run = run_step(vm, plan.steps["gvisor"])
    assert run.result.rc == 0, run.log
    assert "installed files changed since they were installed" in run.log, run.log
    assert f"gVisor {m.gvisor_release} installed" in run.log, run.log
    after = node_state(vm, m)
    assert after.files[runsc][0] == before.files[runsc][0] == m.expected_installs[runsc]
    assert after.stamps == before.stamps
    assert after.unit == before.unit  # runsc is run per pod: containerd keeps running
    assert sorted(p for p, _ in served.server.requests_since(mark)) == sorted(
        m.url_path(f"{b}{ext}") for b in ("runsc", "containerd-shim-runsc-v1")
        for ext in ("", ".sha512"))
