"""Result rows, the table and the JSON document printed for them, and the exit status."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from verify.kube import ApiStatus

JSON_SCHEMA = "sandboxed-k8s.io/verify/v1"


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"  # the cluster was observed to break the expectation
    ERROR = "ERROR"  # the check could not run or proves nothing: never counted as a pass


class Exit(IntEnum):
    OK = 0  # every check passed
    CHECKS = 1  # a check failed or could not run
    USAGE = 2  # bad option, no kubeconfig (argparse uses 2 too)
    UNREACHABLE = 3  # the API server could not be reached or refused the credentials


@dataclass(frozen=True)
class Row:
    name: str
    expectation: str
    observed: str
    status: Status
    api_status: ApiStatus | None = None  # the server's Status behind the row, if any


HEADERS = ("CHECK", "EXPECTATION", "OBSERVED", "RESULT")
OBSERVED_WIDTH = 90


def one_line(text: str, width: int | None = None) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    if width is not None and len(flat) > width:
        return flat[: width - 3] + "..."
    return flat


def _counts(rows: Sequence[Row]) -> dict[Status, int]:
    return {s: sum(1 for r in rows if r.status is s) for s in Status}


def render_table(rows: Sequence[Row]) -> str:
    cells = [HEADERS, *((r.name, r.expectation, one_line(r.observed, OBSERVED_WIDTH),
                         r.status.value) for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADERS))]

    def line(row: Sequence[str]) -> str:
        return " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    out = [line(cells[0]), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in cells[1:]]
    out.append(f"\n{len(rows)} checks: " + ", ".join(f"{n} {s}"
                                                       for s, n in _counts(rows).items()))
    return "\n".join(out)


def json_document(rows: Sequence[Row], server: str = "", version: str = "",
                  error: str | None = None) -> dict[str, Any]:
    """The `-o json` document. Every key is always present; `error` is set (and `checks` is
    empty) only when the cluster could not be checked at all."""
    counts = _counts(rows)
    return {
        "schema": JSON_SCHEMA,
        "cluster": {"server": server, "version": version},
        "error": error,
        "checks": [{"name": r.name, "expectation": r.expectation, "result": r.status.value,
                    "detail": one_line(r.observed),
                    "apiStatus": r.api_status.as_json() if r.api_status else None}
                   for r in rows],
        "summary": {"total": len(rows), **{s.value: counts[s] for s in Status},
                    "exitCode": int(exit_code(rows) if error is None else Exit.UNREACHABLE)},
    }


def render_json(rows: Sequence[Row], server: str = "", version: str = "",
                error: str | None = None) -> str:
    return json.dumps(json_document(rows, server, version, error), indent=2)


def exit_code(rows: Sequence[Row]) -> Exit:
    """0 only when there are rows and every one passed."""
    return Exit.OK if rows and all(r.status is Status.PASS for r in rows) else Exit.CHECKS
