"""One remote step: a node script run over SSH with its parameters on stdin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
