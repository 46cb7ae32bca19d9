"""The README's figures that the program determines stay true."""

from __future__ import annotations

import re

from tests.graph.harness import ROOT, run_program, stack_config


def test_the_quick_starts_resource_count_is_the_dev_graphs() -> None:
    readme = (ROOT / "README.md").read_text()
    planned = re.search(r"`\+ (\d+) to create` for `dev`", readme)
    created = re.search(r"^ +\+ (\d+) created$", readme, re.M)
    assert planned and created
    count = len(run_program(stack_config("dev"), "dev").resources) + 1  # and the stack itself
    assert int(planned.group(1)) == int(created.group(1)) == count
