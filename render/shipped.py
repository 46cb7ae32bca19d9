"""What one resource of the graph ships, as files: a node's cloud-init documents, a remote
step's script with its parameters and decoded files, a Kubernetes object, or the inputs of any
other resource. Every value passes through the redactor; paths are relative to the output."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Collection, Mapping
from typing import Any

import yaml

from components.render.cloudinit import parse_seed_files
from components.render.scripts import LIBRARY, SCRIPTS_DIR, parse_invocation, read_script
from render.graph import LOCAL_COMMAND, SEED_IMAGE_SUFFIX, Registration
from render.redact import Redactor

Files = dict[str, str]
REMOTE_COMMAND = "command:remote:Command"
LIBRARY_PATH = f"steps/{LIBRARY}"
FILE_SUFFIX = "_B64"  # a step's file parameter: `<NAME>_B64`, the file base64-encoded


def cloud_init_documents(r: Registration) -> tuple[str, dict[str, str], set[str]] | None:
    """The node, its NoCloud documents (`user-data`, `meta-data`, `network-config`) and the
    input properties that carry them, for the local step that builds a node's seed image;
    None for any other resource. The one place that knows the seed's resource shape."""
    if r.type != LOCAL_COMMAND or not r.name.endswith(SEED_IMAGE_SUFFIX):
        return None
    return r.name.removesuffix(SEED_IMAGE_SUFFIX), parse_seed_files(r.inputs["stdin"]), {"stdin"}


def plain(value: Any) -> Any:
    """Inputs as YAML should show them: the engine's numbers are floats (`22.0`), keys of
    objects in a fixed order."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # every value written out in full, no &id001 anchors


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None  # scripts, configs, PEM: readable blocks
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def _safe(name: str) -> str:
    return name.replace("/", "_")


def type_path(typ: str) -> str:
    """`libvirt:index/domain:Domain` -> `libvirt/Domain`; `pulumi:providers:libvirt` ->
    `providers/libvirt`."""
    package, _, kind = typ.split(":")
    return f"providers/{kind}" if typ.startswith("pulumi:providers:") else f"{package}/{kind}"


def resource_file(r: Registration, redact: Redactor, skip: Collection[str] = ()) -> Files:
    inputs = {k: v for k, v in r.inputs.items() if k not in skip}
    return {f"resources/{type_path(r.type)}/{_safe(r.name)}.yaml":
            to_yaml(plain(redact.value(inputs)))}


def seed_disk_files(r: Registration, redact: Redactor) -> Files | None:
    found = cloud_init_documents(r)
    if found is None:
        return None
    node, documents, fields = found
    files = {f"cloud-init/{_safe(node)}/{name}": redact.text(text)
             for name, text in documents.items()}
    return {**files, **resource_file(r, redact, skip=fields)}


def _decoded(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def step_files(r: Registration, redact: Redactor) -> Files | None:
    """A remote step: `step.yaml` (connection, triggers, the script, its parameters), the
    script, and each file parameter decoded under `files/`. Paths in `step.yaml` are relative
    to the output, like the index's."""
    if r.type != REMOTE_COMMAND:
        return None
    base = f"steps/{_safe(r.name)}"
    step: dict[str, Any] = plain(redact.value(
        {k: v for k, v in r.inputs.items() if k != "stdin"}))
    files: Files = {}
    stdin = r.inputs.get("stdin")
    if isinstance(stdin, str):
        try:
            invocation = parse_invocation(stdin)
        except ValueError:  # not one of our node scripts: the text as it is
            files[f"{base}/stdin"] = redact.text(stdin)
            step["stdin"] = f"{base}/stdin"
        else:
            params: dict[str, str] = {}
            shipped: dict[str, str] = {}
            for key in sorted(invocation.params):
                value = invocation.params[key]
                text = _decoded(value) if key.endswith(FILE_SUFFIX) else None
                if text is None:
                    params[key] = redact.text(value)
                    continue
                path = f"{base}/files/{key.removesuffix(FILE_SUFFIX)}"
                files[path] = redact.text(text)
                shipped[key] = path
            script = f"{base}/{invocation.script}"
            files[script] = read_script(invocation.script)
            files[LIBRARY_PATH] = (SCRIPTS_DIR / LIBRARY).read_text()
            step["stdin"] = {"runs": [LIBRARY_PATH, script], "params": params, "files": shipped}
    return {f"{base}/step.yaml": to_yaml(step), **files}


def kubernetes_files(r: Registration, redact: Redactor) -> Files | None:
    if not r.type.startswith("kubernetes:"):
        return None
    body = plain(redact.value(r.inputs))
    head = {k: body.pop(k) for k in ("apiVersion", "kind", "metadata") if k in body}
    meta = head.get("metadata") or {}
    scope = meta.get("namespace") or "_cluster"
    kind = str(head.get("kind") or r.type.rsplit(":", 1)[1]).lower()
    path = f"kubernetes/{_safe(scope)}/{kind}-{_safe(str(meta.get('name') or r.name))}.yaml"
    return {path: to_yaml({**head, **body})}


RENDERERS: tuple[Callable[[Registration, Redactor], Files | None], ...] = (
    seed_disk_files, step_files, kubernetes_files)


def shipped_files(r: Registration, redact: Redactor) -> Mapping[str, str]:
    for renderer in RENDERERS:
        files = renderer(r, redact)
        if files is not None:
            return files
    return resource_file(r, redact)
