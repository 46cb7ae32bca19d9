"""benchmarks/graph_scale.py with tiny sizes, and the configs it grows."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import graph_scale


def test_config_grows_worker_pools_past_the_largest_count() -> None:
    pools = graph_scale.config_with_nodes(120)["sandboxed-k8s:pools"]
    assert [p["name"] for p in pools] == ["control-plane", "gvisor", "gvisor2", "gvisor3"]
    assert [p.get("count") for p in pools[1:]] == [50, 50, 19]
    assert all(p["runtimes"] == ["gvisor"] for p in pools[1:])
    with pytest.raises(ValueError, match="at least 2 nodes"):
        graph_scale.config_with_nodes(1)


def test_prints_time_per_node_and_a_constant_critical_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "graph.png"
    assert graph_scale.main(["--nodes", "2", "5", "--repeat", "1", "--chart", str(chart)]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| ")][1:]
    assert [r[1].strip() for r in rows] == ["2", "5"]
    assert {r[6].strip() for r in rows} == {"7"}  # wait ... join: the same 7 remote steps
    assert chart.read_bytes().startswith(b"\x89PNG")
