"""Evaluating the program under mocks at growing cluster sizes.

    python -m benchmarks.graph_scale [--nodes 3 20 100] [--repeat 3] [--chart FILE]

The dev stack's gVisor pool grows until the cluster has N nodes; the program (__main__.py)
is evaluated under the mocks `python -m render` uses (render/graph.py). Prints, per size, the
resources declared, the evaluation time (median of --repeat) per node, and the critical path
in remote steps (Graph.critical_path): the longest chain of SSH steps that each wait for the
previous one, which bounds `pulumi up` and must not grow with the node count.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.stats import load_average, machine, median, table
from render.graph import Graph, Registration, run_program, stack_config

REMOTE_STEP = "command:remote:Command"
DOMAIN = "libvirt:index/domain:Domain"
GROWING_POOL = "gvisor"
MAX_POOL_COUNT = 50  # components/spec/pools.py
DEFAULT_CHART = Path("benchmarks/out/graph_scale.png")


def config_with_nodes(nodes: int) -> dict[str, Any]:
    """The dev stack's config with worker pools sized so the cluster has `nodes` nodes: its
    control plane as it is, workers in its gVisor pool and, past a pool's largest count,
    in more pools like it."""
    config = copy.deepcopy(stack_config("dev"))
    pools = config["sandboxed-k8s:pools"]
    template = next(p for p in pools if p["name"] == GROWING_POOL)
    planes = [p for p in pools if p.get("role") == "control-plane"]
    workers = nodes - sum(len(p["names"]) if p.get("names") else int(p.get("count", 1))
                          for p in planes)
    if workers < 1:
        raise ValueError(f"the dev stack needs at least {nodes - workers + 1} nodes")
    grown: list[dict[str, Any]] = []
    while workers > 0:
        pool = {k: v for k, v in copy.deepcopy(template).items() if k != "names"}
        pool["name"] = GROWING_POOL if not grown else f"{GROWING_POOL}{len(grown) + 1}"
        pool["count"] = min(workers, MAX_POOL_COUNT)
        workers -= pool["count"]
        grown.append(pool)
    config["sandboxed-k8s:pools"] = [*planes, *grown]
    return config


def builds_the_cluster(step: Registration) -> bool:
    """Steps that run on create, before the cluster is up: not the removal steps (they run
    only when a node leaves) nor the upgrade checks (one node after another by design, beside
    the Kubernetes objects)."""
    return "create" in step.inputs and not step.name.endswith("-upgrade")


def measure(nodes: int, repeat: int) -> tuple[Graph, list[float]]:
    config = config_with_nodes(nodes)
    seconds, graph = [], Graph()
    for _ in range(repeat):
        start = time.perf_counter()
        graph = run_program(config, "dev")
        seconds.append(time.perf_counter() - start)
    return graph, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.graph_scale",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 20, 100])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chart", type=Path, default=DEFAULT_CHART)
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    print(f"load average (1 min): {load_average():.2f}")
    measure(min(args.nodes), 1)  # warm-up: imports and first-run caches, not recorded
    rows, per_node = [], []
    for nodes in args.nodes:
        graph, seconds = measure(nodes, args.repeat)
        domains = len(graph.of_type(DOMAIN))
        if domains != nodes:
            raise AssertionError(f"asked for {nodes} nodes, the program declared {domains}")
        ms_per_node = 1000 * median(seconds) / nodes
        per_node.append(ms_per_node)
        rows.append([nodes, len(graph.resources), median(seconds), ms_per_node,
                     1000 * median(seconds) / len(graph.resources),
                     graph.critical_path(REMOTE_STEP, builds_the_cluster)])
    print(table(["nodes", "resources", "evaluation s", "ms per node", "ms per resource",
                 "critical path (remote steps)"], rows))
    print(f"load average (1 min) at the end: {load_average():.2f}")
    chart(args.nodes, per_node, args.chart)
    print(f"chart: {args.chart}")
    return 0


def chart(nodes: list[int], ms_per_node: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(nodes, ms_per_node, marker="o")
    ax.set_xscale("log")
    ax.set_xlabel("nodes")
    ax.set_ylabel("evaluation ms per node (median)")
    ax.set_ylim(bottom=0)
    ax.set_title("Program evaluation under mocks")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
