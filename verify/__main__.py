"""Command line: `python -m verify [--kubeconfig FILE] [--context NAME] [--timeout SECONDS]
[-o table|json]`.

The kubeconfig is found as kubectl finds it: --kubeconfig, else $KUBECONFIG, else
~/.kube/config. Exit status: 0 when every check passed, 1 when any check failed or could not
run, 2 for a usage problem (bad option, no usable kubeconfig), 3 when the API server cannot be
reached or refuses the credentials (then one line on stderr, and no checks).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from verify.checks import run_checks
from verify.client import ConfigError, Connection, Target, connect, kubeconfig_target
from verify.kube import Unreachable
from verify.report import Exit, exit_code, render_json, render_table

Connect = Callable[[Target, float], Connection]


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
    p.add_argument("--kubeconfig", type=Path,
                   help="admin kubeconfig (pulumi stack output kubeconfig --show-secrets); "
                        "default: $KUBECONFIG, else ~/.kube/config")
    p.add_argument("--context", help="kubeconfig context (default: its current-context)")
    p.add_argument("--timeout", type=_positive, default=60,
                   help="seconds to wait for each pod and each API call (default 60)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table",
                   help="table for people (default), json for programs")
    return p


def main(argv: Sequence[str] | None = None, connect_to: Connect = connect,
         environ: Mapping[str, str] | None = None, home: Path | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        target = kubeconfig_target(args.kubeconfig, os.environ if environ is None else environ,
                                   Path.home() if home is None else home, args.context)
        connection = connect_to(target, args.timeout)
        rows = run_checks(connection.cluster, args.timeout)
    except ConfigError as e:
        p.error(str(e))
    except Unreachable as e:
        print(f"verify: {e} (kubeconfig {target.config_file})", file=sys.stderr)
        if args.output == "json":
            print(render_json([], error=str(e)))
        return Exit.UNREACHABLE
    if args.output == "json":
        print(render_json(rows, connection.server, connection.version))
    else:
        print(render_table(rows))
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
