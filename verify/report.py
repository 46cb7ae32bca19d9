"""Result rows, the table printed for them, and the exit status they give."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"  # the cluster was observed to break the expectation
    ERROR = "ERROR"  # the check could not run or proves nothing: never counted as a pass


@dataclass(frozen=True)
class Row:
    name: str
    expectation: str
    observed: str
    status: Status


HEADERS = ("CHECK", "EXPECTATION", "OBSERVED", "RESULT")
OBSERVED_WIDTH = 90


def one_line(text: str, width: int | None = None) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    if width is not None and len(flat) > width:
        return flat[: width - 3] + "..."
    return flat


def render_table(rows: Sequence[Row]) -> str:
    cells = [HEADERS, *((r.name, r.expectation, one_line(r.observed, OBSERVED_WIDTH),
                         r.status.value) for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADERS))]

    def line(row: Sequence[str]) -> str:
        return " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    out = [line(cells[0]), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in cells[1:]]
    counts = {s: sum(1 for r in rows if r.status is s) for s in Status}
    out.append(f"\n{len(rows)} checks: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(out)


def exit_code(rows: Sequence[Row]) -> int:
    """0 only when there are rows and every one passed."""
    return 0 if rows and all(r.status is Status.PASS for r in rows) else 1
