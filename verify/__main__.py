"""Command line: `python -m verify --kubeconfig FILE [--timeout SECONDS] [--kubectl PATH]`.

Exit status: 0 when every row passed, 1 when any row failed or could not be checked, 2 for a
usage problem (missing kubeconfig, kubectl not found, bad option).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from verify.checks import run_checks
from verify.kube import Cluster, Kubectl
from verify.report import exit_code, render_table

Connect = Callable[[Path, float, str], Cluster]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be at least 1 second")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m verify",
        description="Check a sandboxed-k8s cluster: sandbox proofs, admission denials, no "
                    "service-account token, tenant network isolation.")
    p.add_argument("--kubeconfig", type=Path, required=True,
                   help="admin kubeconfig (pulumi stack output kubeconfig --show-secrets)")
    p.add_argument("--timeout", type=_positive, default=60,
                   help="seconds to wait for each pod and each kubectl call (default 60)")
    p.add_argument("--kubectl", default="kubectl", help="kubectl binary (default: on PATH)")
    return p


def _kubectl(kubeconfig: Path, timeout: float, kubectl: str) -> Cluster:
    return Kubectl(kubeconfig, timeout, kubectl)


def main(argv: Sequence[str] | None = None, connect: Connect | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not args.kubeconfig.is_file():
        p.error(f"kubeconfig {args.kubeconfig} not found; write it with `pulumi stack output "
                f"kubeconfig --show-secrets > {args.kubeconfig}`")
    if connect is None:
        if shutil.which(args.kubectl) is None:
            p.error(f"kubectl binary {args.kubectl!r} not found; install it or pass --kubectl")
        connect = _kubectl
    rows = run_checks(connect(args.kubeconfig, args.timeout, args.kubectl), args.timeout)
    print(render_table(rows))
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
