"""Every user-data document the graph puts on a node's NoCloud disk passes `cloud-init schema`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.graph.harness import Graph

CLOUD_INIT_DISK = "libvirt:index/cloudInitDisk:CloudInitDisk"


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="needs Debian's cloud-init")
def test_every_node_user_data_passes_cloud_init_schema(graph: Graph, tmp_path: Path) -> None:
    disks = graph.of_type(CLOUD_INIT_DISK)
    assert len(disks) >= 3
    for disk in disks:
        path = tmp_path / f"{disk.name}.yaml"
        path.write_text(disk.inputs["userData"])
        result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{disk.name}: {result.stdout}{result.stderr}"
        assert "Valid cloud-config" in result.stdout, disk.name
