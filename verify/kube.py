"""What `verify` needs from a cluster: a small interface the checks use and tests replace.

`verify.client.KubeClient` implements it with the Kubernetes Python client. Errors come in two
kinds: `KubeError` when one call failed (that check cannot run: an ERROR row), `Unreachable`
when the API server cannot be talked to at all (nothing can be checked). An admission denial
or a non-zero exit inside a pod is an answer, not an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Obj = dict[str, Any]
PodCondition = Literal["Ready", "Succeeded"]


@dataclass(frozen=True)
class ApiStatus:
    """The API server's own account of a refusal (a `Status` object): HTTP code, the machine
    reason (`Forbidden`, `NotFound`, `Invalid`, ... or "" when the server gave none) and its
    message."""

    code: int
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}" if self.reason else \
            f"{self.code}: {self.message}"

    def as_json(self) -> Obj:
        return {"code": self.code, "reason": self.reason, "message": self.message}


class KubeError(Exception):
    """One API call failed: the check that needed it could not run."""

    def __init__(self, message: str, status: ApiStatus | None = None) -> None:
        super().__init__(message)
        self.status = status


class Unreachable(Exception):
    """The API server cannot be reached, or it refused our credentials: nothing can be
    checked. Deliberately not a KubeError, so no check turns it into a row."""


class Cluster(Protocol):
    def get_json(self, resource: str, name: str | None = None, namespace: str | None = None,
                 selector: str | None = None) -> Obj:
        """One object as the API serves it (JSON), or a List (`items`) when name is None."""
        ...

    def create(self, manifest: Obj) -> Obj: ...

    def dry_run_create(self, manifest: Obj) -> ApiStatus | None:
        """Server-side dry run: None if admitted, the refusal if admission denied it. Any
        other failure (RBAC, an invalid object, a server error) raises KubeError."""
        ...

    def delete(self, resource: str, name: str, namespace: str) -> None:
        """Delete without waiting; an object already gone is not an error."""
        ...

    def logs(self, pod: str, namespace: str) -> str: ...

    def exec(self, pod: str, namespace: str, command: Sequence[str]) -> tuple[int, str, str]:
        """The command's (exit code, stdout, stderr) inside the pod's first container."""
        ...

    def wait_pod(self, pod: str, namespace: str, condition: PodCondition,
                 timeout: float) -> None: ...
