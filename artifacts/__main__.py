"""Command line: `python -m artifacts STACK [-o text|json] [--internet-only]`.

STACK is a stack name (its file `stacks/Pulumi.<name>.yaml`) or the path of a stack file. No
Pulumi CLI or cloud is needed: the stack's config is validated exactly as `pulumi up` does.

Exit status: 0 with the list; 1 when --internet-only finds any, or when the reader closed the
pipe early (`| head`); 2 for an unreadable stack file or an invalid configuration (every
problem printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict

from components.spec.artifacts import Fetch, stack_fetches

# Stack files are read by components.spec.stack_file; its names stay importable from here.
from components.spec.stack_file import STACKS_DIR as STACKS_DIR
from components.spec.stack_file import load_stack_argument
from components.spec.stack_file import load_stack_file as load_stack_file
from components.spec.stack_file import project_config as project_config
from components.spec.stack_file import stack_file as stack_file
from components.spec.stack_file import stack_name as stack_name


def render_text(fetches: Sequence[Fetch]) -> str:
    width = max((len(f.kind) for f in fetches), default=0)
    lines = []
    for f in fetches:
        line = f"{f.kind:<{width}}  {f.origin:<8}  {f.source}"
        if f.checksum:
            line += f"  {f.checksum}"
        if f.via:
            line += f"  via {f.via}"
        lines.append(line)
    return "".join(f"{line}\n" for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m artifacts",
        description="List every file, image and package archive a stack fetches, with the "
                    "pinned checksum where there is one and where it comes from (mirror, a "
                    "source the stack names, or the internet).")
    parser.add_argument("stack", help="a stack name (stacks/Pulumi.<name>.yaml) or stack file")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.add_argument("--internet-only", action="store_true",
                        help="only what would still come from the internet; exit 1 if any")
    args = parser.parse_args(argv)
    spec = load_stack_argument(args.stack)
    if spec is None:
        return 2
    fetches = stack_fetches(spec)
    if args.internet_only:
        fetches = [f for f in fetches if f.origin == "internet"]
    if args.output == "json":
        print(json.dumps([asdict(f) for f in fetches], indent=2))
    else:
        sys.stdout.write(render_text(fetches))
    return 1 if args.internet_only and fetches else 0


def run() -> int:
    """main(), quiet when the reader stops early (`python -m artifacts dev | head`)."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's advice: point stdout at /dev/null so the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status


if __name__ == "__main__":
    sys.exit(run())
