"""`python -m render STACK OUT`: what each stack's graph ships, as files, for every stack in
stacks/: deterministic, complete, in dependency order, and without a secret in any file."""

from __future__ import annotations

import base64
import functools
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import render.tree
from components.pki import encryption_key_from
from components.render.scripts import SCRIPTS_DIR
from components.spec import load
from render.__main__ import main
from render.graph import ROOT, stack_names
from render.mocks import fake_state
from render.redact import MARKER, masked_differences
from render.tree import render_stack
from tests.graph.conftest import stack_graph
from tests.graph.harness import Graph, stack_config

STACKS = stack_names()
COMMAND = "command:remote:Command"


def read_tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file()}


@functools.cache
def _rendered(stack: str, out: str) -> dict[str, bytes]:
    assert main([stack, out]) == 0
    return read_tree(Path(out))


@pytest.fixture(params=STACKS)
def rendered_bytes(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, bytes]]:
    stack = str(request.param)
    return stack, _rendered(stack, str(tmp_path_factory.getbasetemp() / f"render-{stack}"))


@pytest.fixture
def rendered(rendered_bytes: tuple[str, dict[str, bytes]]) -> tuple[str, dict[str, str]]:
    stack, tree = rendered_bytes
    return stack, {path: data.decode() for path, data in tree.items()}


def index_entries(tree: dict[str, str]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = yaml.safe_load(tree["index.yaml"])["resources"]
    return entries


def test_every_stack_file_is_a_stack_to_render() -> None:
    files = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))
    assert len(STACKS) == len(files) >= 2
    assert {"dev", "ha"} <= set(STACKS)


def test_two_renders_are_identical_byte_for_byte(rendered_bytes: tuple[str, dict[str, bytes]],
                                                 tmp_path: Path) -> None:
    stack, first = rendered_bytes
    assert main([stack, str(tmp_path)]) == 0
    assert len(first) > 50
    assert read_tree(tmp_path) == first


def test_output_does_not_depend_on_the_secret_values(
        rendered_bytes: tuple[str, dict[str, bytes]]) -> None:
    stack, tree = rendered_bytes
    other = render_stack(stack, seeds=("one", "two"))
    assert {path: text.encode() for path, text in other.items()} == tree


def secret_values(graph: Graph) -> list[str]:
    """Private keys, passwords and what the program derives from them, as the mocks make them
    (computed here, not by the renderer)."""
    values: list[str] = []
    for r in graph.resources:
        state = fake_state(r.type, r.name, r.inputs)
        if r.type == "tls:index/privateKey:PrivateKey":
            values += [state["privateKeyPem"], state["privateKeyOpenssh"]]
        if r.type == "random:index/randomPassword:RandomPassword":
            values.append(state["result"])
            if r.name == "secrets-encryption-key":
                values.append(encryption_key_from(state["result"]))
    return values


def forbidden(values: list[str]) -> set[str]:
    found = set()
    for value in values:
        found.add(value.strip())
        found.add(base64.b64encode(value.encode()).decode())
        found |= {line for line in value.splitlines() if line and not line.startswith("-----")}
    return found


def first_control_plane(graph: Graph) -> str:
    (init,) = [r.name for r in graph.of_type(COMMAND) if r.name.endswith("-kubeadm-init")]
    return init.removesuffix("-kubeadm-init")


def test_no_secret_value_in_any_file(rendered: tuple[str, dict[str, str]]) -> None:
    stack, tree = rendered
    graph = stack_graph(stack)
    node = first_control_plane(graph)
    needles = forbidden(secret_values(graph))
    assert len(needles) >= 40
    for path, text in tree.items():
        leaked = [n for n in needles if n in text]
        assert not leaked, f"{path} holds a secret: {leaked[0][:12]}..."
    # The marker stands where they were.
    init = f"steps/{node}-kubeadm-init/files"
    assert tree[f"{init}/CA_KEY"] == f"{MARKER}\n"
    assert f"token: {MARKER}.{MARKER}\n" in tree[f"{init}/KUBEADM_CONFIG"]
    encryption = yaml.safe_load(tree[f"{init}/ENCRYPTION_CONFIG"])
    assert encryption["resources"][0]["providers"][0]["aescbc"]["keys"][0]["secret"] == MARKER
    user_data = tree[f"cloud-init/{node}/user-data"]
    assert f"-----BEGIN OPENSSH PRIVATE KEY-----\n    {MARKER}\n" in user_data
    step = yaml.safe_load(tree[f"steps/{node}-preflight/step.yaml"])
    assert step["connection"]["privateKey"] == MARKER
    outputs = yaml.safe_load(tree["outputs.yaml"])
    assert outputs["kubeconfig"] == outputs["adminSshPrivateKey"] == MARKER


def test_cloud_init_documents_of_every_node(rendered: tuple[str, dict[str, str]]) -> None:
    stack, tree = rendered
    graph = stack_graph(stack)
    nodes = list(graph.seed_images())
    assert len(nodes) >= 3
    for node in nodes:
        base = f"cloud-init/{node}"
        assert tree[f"{base}/user-data"].startswith("#cloud-config\n")
        user_data = yaml.safe_load(tree[f"{base}/user-data"])
        meta = yaml.safe_load(tree[f"{base}/meta-data"])
        network = yaml.safe_load(tree[f"{base}/network-config"])
        assert user_data["hostname"] == meta["local-hostname"] == node
        assert network["version"] == 2


def test_steps_ship_their_script_parameters_and_decoded_files(
        rendered: tuple[str, dict[str, str]]) -> None:
    stack, tree = rendered
    graph = stack_graph(stack)
    steps = graph.of_type(COMMAND)
    assert tree["steps/lib.sh"] == (SCRIPTS_DIR / "lib.sh").read_text()
    for r in steps:
        step = yaml.safe_load(tree[f"steps/{r.name}/step.yaml"])
        library, script = step["stdin"]["runs"]
        assert library == "steps/lib.sh"
        assert tree[script] == (SCRIPTS_DIR / Path(script).name).read_text(), r.name
        for path in step["stdin"]["files"].values():
            assert path in tree, (r.name, path)
    gvisor_nodes = [r.name.removesuffix("-gvisor") for r in steps if r.name.endswith("-gvisor")]
    assert gvisor_nodes
    for node in gvisor_nodes:
        config = yaml.safe_load(tree[f"steps/{node}-containerd-config/step.yaml"])
        assert config["stdin"]["params"]["HANDLERS"].split() == ["runc", "runsc"]
        files = f"steps/{node}-containerd-config/files"
        assert tomllib.loads(tree[f"{files}/RUNSC_TOML"])["runsc_config"]["platform"] == "systrap"
        containerd = tomllib.loads(tree[f"{files}/CONTAINERD_CONFIG_V3"])
        runtimes = containerd["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]
        assert runtimes["runsc"]["runtime_type"] == "io.containerd.runsc.v1"
        preflight = yaml.safe_load(tree[f"steps/{node}-preflight/step.yaml"])
        assert preflight["stdin"]["params"]["REQUIRE_GVISOR"] == "1"
        assert preflight["connection"]["port"] == 22  # an integer, not the engine's 22.0
    init = f"steps/{first_control_plane(graph)}-kubeadm-init/files/KUBEADM_CONFIG"
    kubeadm = list(yaml.safe_load_all(tree[init]))
    assert [d["kind"] for d in kubeadm][:2] == ["InitConfiguration", "ClusterConfiguration"]


def test_kubernetes_objects_as_valid_yaml(rendered: tuple[str, dict[str, str]]) -> None:
    stack, tree = rendered
    minor = load({k.split(":", 1)[1]: v for k, v in stack_config(stack).items()},
                 stack).kubernetes.minor
    manifests = {p: yaml.safe_load(t) for p, t in tree.items() if p.startswith("kubernetes/")}
    graph = stack_graph(stack)
    objects = [r for r in graph.resources if r.type.startswith("kubernetes:")]
    assert len(manifests) == len(objects) >= 20
    for path, manifest in manifests.items():
        kubernetes_validate.validate(manifest, minor, strict=True)
        assert list(manifest)[:3] == ["apiVersion", "kind", "metadata"], path
    pod = manifests["kubernetes/default/pod-nginx-gvisor.yaml"]
    assert pod["spec"]["runtimeClassName"] == "gvisor"
    assert pod["spec"]["containers"][0]["ports"][0]["containerPort"] == 80


def test_index_lists_every_resource_in_dependency_order(
        rendered: tuple[str, dict[str, str]]) -> None:
    stack, tree = rendered
    graph = stack_graph(stack)
    entries = index_entries(tree)
    key = {r.urn: f"{r.type} {r.name}" for r in graph.resources if r.custom}
    order = [e["resource"] for e in entries]
    assert sorted(order) == sorted(key.values())
    position = {name: i for i, name in enumerate(order)}
    for entry in entries:
        for dependency in entry["waits_for"]:
            assert position[dependency] < position[entry["resource"]], (entry, dependency)
    # Checked against the graph itself, transitively.
    for urn, name in key.items():
        for ancestor in graph.ancestors(urn) & key.keys():
            assert position[key[ancestor]] < position[name], (name, key[ancestor])
    init = f"{COMMAND} {first_control_plane(graph)}-kubeadm-init"
    assert position[init] < position[
        "kubernetes:core/v1:Pod nginx-gvisor"]
    listed = {f for e in entries for f in e["files"]}
    assert listed | {"index.yaml", "outputs.yaml"} == set(tree)


def test_unknown_stack_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-stack", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown stack 'no-such-stack'" in err and "dev" in err
    assert not (tmp_path / "out").exists()


def test_an_invalid_configuration_is_refused_with_every_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = {**stack_config("dev"), "sandboxed-k8s:adminUser": "Bad User",
              "sandboxed-k8s:bogus": 1}
    monkeypatch.setattr(render.tree, "stack_config", lambda stack: config)
    assert main(["dev", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "stacks/Pulumi.dev.yaml: invalid stack configuration" in err
    assert "bogus: unknown key" in err and "adminUser" in err
    assert not (tmp_path / "out").exists()


def test_a_directory_holding_other_files_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["dev", str(tmp_path)]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_an_earlier_render_is_replaced_whole(tmp_path: Path) -> None:
    assert main(["dev", str(tmp_path)]) == 0
    (tmp_path / "steps" / "stale").write_text("from an older program")
    assert main(["dev", str(tmp_path)]) == 0
    assert not (tmp_path / "steps" / "stale").exists()


def test_runs_as_a_module_without_the_tools_pulumi_up_needs(tmp_path: Path) -> None:
    # An empty PATH: no pulumi, no mkisofs (which `pulumi up` checks for on this machine).
    env = {**os.environ, "PATH": str(tmp_path / "empty-bin")}
    result = subprocess.run([sys.executable, "-m", "render", "dev", str(tmp_path / "out")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "kubernetes" / "default" / "pod-nginx-gvisor.yaml").is_file()
    bad = subprocess.run([sys.executable, "-m", "render", "nope", str(tmp_path / "x")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown stack 'nope'" in bad.stderr


def test_differences_are_masked_by_token() -> None:
    assert masked_differences("a\nsecret: abc+/=\nb\n", "a\nsecret: xyz12=\nb\n") == \
        f"a\nsecret: {MARKER}\nb\n"
    assert masked_differences("same\n", "same\n") == "same\n"
    assert masked_differences("one\ntwo\n", "one\n") == f"{MARKER}\n"
