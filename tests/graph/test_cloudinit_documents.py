"""Every user-data document the graph puts on a node's NoCloud disk passes `cloud-init schema`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.graph.harness import Graph


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="needs Debian's cloud-init")
def test_every_node_user_data_passes_cloud_init_schema(graph: Graph, tmp_path: Path) -> None:
    nodes = list(graph.seed_images())
    assert len(nodes) >= 3
    for node in nodes:
        path = tmp_path / f"{node}.yaml"
        path.write_text(graph.seed_files(node)["user-data"])
        result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{node}: {result.stdout}{result.stderr}"
        assert "Valid cloud-config" in result.stdout, node
