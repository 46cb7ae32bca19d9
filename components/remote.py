"""One remote step: a node script run over SSH with its parameters on stdin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.render.scripts import REMOTE_RUNNER, b64, render_invocation

# A VM still booting refuses connections: keep dialling for ~10 minutes, never forever.
DIAL_ERROR_LIMIT = 40
PER_DIAL_TIMEOUT = 15


def node_connection(host: str, user: str, private_key: pulumi.Input[str],
                    host_key: pulumi.Input[str]) -> remote.ConnectionArgs:
    return remote.ConnectionArgs(
        host=host,
        user=user,
        private_key=private_key,
        host_key=host_key,  # pinned: a different host key fails the step
        dial_error_limit=DIAL_ERROR_LIMIT,
        per_dial_timeout=PER_DIAL_TIMEOUT,
    )


@dataclass(frozen=True)
class HelperAccess:
    """How a node's step runs one program on the first control plane over SSH (helper_ssh in
    lib.sh): a key whose public half may run that program only, and the host key it pins.
    `name` prefixes the step's parameters: <name>_HOST, _USER, _KEY_B64, _KNOWN_HOSTS_B64."""

    name: str
    host: str
    user: str
    host_public_key: pulumi.Input[str]
    private_key: pulumi.Input[str]  # secret

    def params(self) -> dict[str, str]:
        return {f"{self.name}_HOST": self.host, f"{self.name}_USER": self.user}

    def files(self) -> dict[str, pulumi.Input[str]]:
        known_hosts = pulumi.Output.from_input(self.host_public_key).apply(
            lambda key: f"{self.host} {key.strip()}\n")
        return {f"{self.name}_KEY": self.private_key,
                f"{self.name}_KNOWN_HOSTS": known_hosts}


def script_step(
    name: str,
    script: str,
    connection: pulumi.Input[remote.ConnectionArgs],
    params: Mapping[str, pulumi.Input[str]],
    *,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
    files: Mapping[str, pulumi.Input[str]] | None = None,
    triggers: Sequence[pulumi.Input[str]] = (),
    machine_id: pulumi.Input[str],
    sensitive: bool = False,
) -> remote.Command:
    """A remote.Command running `script` with `params` (and `files` as base64 `<NAME>_B64`).

    The command string is the same for every step; the script and its parameters are on
    stdin, so a change to either re-runs the step and no value ever appears in the command.
    `machine_id` (the node VM's id) is the first trigger: a replaced VM replaces the step, so
    it runs again on the new machine. `sensitive` steps may print secrets (kubeadm does): no
    logs, stdout/stderr kept secret.
    """
    names = list(params)
    file_names = list(files or {})
    values = [params[k] for k in names] + [(files or {})[k] for k in file_names]

    def render(resolved: list[str]) -> str:
        merged = dict(zip(names, resolved[: len(names)], strict=True))
        merged.update({f"{k}_B64": b64(v)
                       for k, v in zip(file_names, resolved[len(names):], strict=True)})
        return render_invocation(script, merged)

    stdin = pulumi.Output.all(*values).apply(render)
    return remote.Command(
        name,
        connection=connection,
        create=REMOTE_RUNNER,
        stdin=stdin,
        triggers=[machine_id, *triggers],
        logging=remote.Logging.NONE if sensitive else remote.Logging.STDOUT_AND_STDERR,
        add_previous_output_in_env=False,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            additional_secret_outputs=["stdout", "stderr"] if sensitive else None,
        ),
    )
