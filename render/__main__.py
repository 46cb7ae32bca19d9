"""Command line: `python -m render STACK OUT`.

Evaluates the program for stack STACK (its file `stacks/Pulumi.<STACK>.yaml`) under mocks, with
no Pulumi CLI, plugin or cloud, and writes what its graph would ship under the directory OUT,
which must be absent, empty, or an earlier render (then it is replaced).

Exit status: 0 when written; 2 for an unknown stack, an invalid configuration (every problem
printed) or an OUT that holds anything else.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from components.spec import ConfigError
from render.graph import stack_names
from render.redact import MARKER
from render.tree import INDEX, render_stack


def write_tree(out: Path, tree: Mapping[str, str]) -> None:
    for relative, text in tree.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _is_render(out: Path) -> bool:
    index = out / INDEX
    return index.is_file() and index.read_text().startswith("# What stack ")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m render",
        description="Write everything a stack's graph would ship (cloud-init documents, node "
                    "steps with their parameters and files, Kubernetes objects, an index in "
                    "dependency order) without the Pulumi CLI or a cloud. Secrets read "
                    f"{MARKER}; keys, certificates and ids are fixed stand-ins.")
    parser.add_argument("stack", help="a stack name (stacks/Pulumi.<name>.yaml)")
    parser.add_argument("out", type=Path, help="the directory to write")
    args = parser.parse_args(argv)
    known = stack_names()
    if args.stack not in known:
        print(f"unknown stack {args.stack!r}: no stacks/Pulumi.{args.stack}.yaml "
              f"(stacks: {', '.join(known)})", file=sys.stderr)
        return 2
    out: Path = args.out
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or _is_render(out))):
        print(f"{out} exists and is not an empty directory or an earlier render; "
              "not writing into it", file=sys.stderr)
        return 2
    try:
        tree = render_stack(args.stack)
    except ConfigError as err:
        print(f"stacks/Pulumi.{args.stack}.yaml: {err}", file=sys.stderr)
        return 2
    if out.exists():
        shutil.rmtree(out)
    write_tree(out, tree)
    print(f"{len(tree)} files for stack {args.stack} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
