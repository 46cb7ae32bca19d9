"""The GitHub Actions workflows: parseable, with the jobs the pull-request checks need, every
action pinned by commit, and clean under actionlint (which runs shellcheck on `run:` blocks)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from render.graph import stack_names
from tests.build_tools import REPO_ROOT, run_build_script

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
PULL_REQUEST = WORKFLOWS / "pull-request.yml"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def workflow(path: Path) -> dict[Any, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), path.name
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean true.
    document.setdefault("on", document.pop(True, None))
    return document


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(f"{action}@")]


def run_text(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in job["steps"])


def test_every_workflow_parses_and_pins_its_actions() -> None:
    paths = sorted(WORKFLOWS.glob("*.y*ml"))
    assert PULL_REQUEST in paths
    for path in paths:
        document = workflow(path)
        assert document["on"] and document["jobs"], path.name
        for name, job in document["jobs"].items():
            assert job.get("runs-on") and job.get("steps"), (path.name, name)
            for step in job["steps"]:
                if "uses" in step:
                    assert PINNED.match(step["uses"]), (path.name, name, step["uses"])
    # The version each commit stands for is written beside it.
    for line in PULL_REQUEST.read_text().splitlines():
        if "uses:" in line:
            assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line


def test_pull_request_workflow_has_the_expected_jobs() -> None:
    document = workflow(PULL_REQUEST)
    assert "pull_request" in document["on"]
    assert document["permissions"] == {"contents": "read"}
    jobs = document["jobs"]
    assert set(jobs) == {"tests", "render", "preview"}

    tests = jobs["tests"]
    assert tests["container"] == "debian:12"  # what .ci/run installs for
    assert 'bash .ci/run -m "not slow"' in run_text(tests)

    render = jobs["render"]
    assert "python -m render" in run_text(render)
    assert "stacks/Pulumi.*.yaml" in run_text(render)  # every stack, whatever is added
    (upload,) = steps_using(render, "actions/upload-artifact")
    assert upload["with"]["path"] == "rendered/"

    preview = jobs["preview"]
    assert "vars.PULUMI_PREVIEW == 'true'" in preview["if"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in preview["if"]
    assert "self-hosted" in preview["runs-on"]
    assert preview["permissions"]["pull-requests"] == "write"
    assert preview["strategy"]["matrix"]["stack"] == stack_names()
    (pulumi,) = steps_using(preview, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    for name in ("PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE"):
        assert preview["env"][name] == f"${{{{ secrets.{name} }}}}"
    assert preview["env"]["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}"


def test_ci_passes_its_arguments_to_the_test_command() -> None:
    assert (REPO_ROOT / ".ci" / "run").read_text().rstrip().endswith('tools/test "$@"')


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    bins, _ = run_build_script("lint", ["actionlint"])
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is needed: actionlint checks run: blocks with it"
    return [str(bins["actionlint"]), "-no-color", "-shellcheck", shellcheck]


@pytest.mark.slow
def test_actionlint_finds_nothing(actionlint: list[str]) -> None:
    result = subprocess.run([*actionlint], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_actionlint_reports_workflow_and_shell_mistakes(actionlint: list[str],
                                                        tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: pull_request\njobs:\n  x:\n    runs-on: ubuntu-24.04\n"
                   "    steps:\n      - run: echo $UNQUOTED ${{ github.event.nope }}\n"
                   "      - uses: actions/checkout@v7\n        with:\n          bogus: 1\n"
                   "    needs: [missing]\n")
    result = subprocess.run([*actionlint, str(bad)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SC2086" in result.stdout  # shellcheck ran on the run: block
    assert "missing" in result.stdout
