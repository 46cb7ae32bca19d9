"""Fixtures of the e2e layer: the installed engine (or a skip naming what is missing), one
libvirtd in private namespaces per session, and a copy of the program as a Pulumi project."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.engine import LibvirtNamespace, Project, missing_prerequisites
from tests.vm.harness import ensure_image

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def engine() -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.skip("e2e needs " + "; ".join(missing))


@pytest.fixture(scope="session")
def libvirt_ns(engine: None, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[LibvirtNamespace]:
    ns = LibvirtNamespace(tmp_path_factory.mktemp("libvirt"))
    ns.start()
    try:
        yield ns
    finally:
        ns.stop()


@pytest.fixture(scope="session")
def project(libvirt_ns: LibvirtNamespace, tmp_path_factory: pytest.TempPathFactory) -> Project:
    return Project.create(tmp_path_factory.mktemp("project") / "sandboxed-k8s", libvirt_ns)


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-work")


@pytest.fixture(scope="session")
def image(work: Path) -> tuple[Path, Path, Path]:
    """The test image: disk for the pools, kernel and initrd for direct boot (copies)."""
    start = time.monotonic()
    vm_image = ensure_image()
    TIMINGS["VM image (cache lookup or build)"] = time.monotonic() - start
    boot = work / "boot"
    boot.mkdir(exist_ok=True)
    kernel, initrd = boot / "vmlinuz", boot / "initrd.img"
    kernel.write_bytes(vm_image.kernel.read_bytes())
    initrd.write_bytes(vm_image.initrd.read_bytes())
    return vm_image.disk, kernel, initrd


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("e2e durations")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {seconds:.0f} s")
