"""Every Kubernetes object the graph declares, applied to a real API server."""

from __future__ import annotations

import pytest

from tests.apiserver.program import manifest
from tests.apiserver.stack import AppliedStack, apply, object_key

pytestmark = [pytest.mark.slow, pytest.mark.apiserver]

# Kinds without a generation whose status controllers keep writing.
STATUS_WRITTEN = ("Namespace", "Pod", "ResourceQuota")


def test_every_object_is_accepted(applied: AppliedStack) -> None:
    assert len(applied.objects) >= 30
    refused = {key: error for key, error in applied.results.items() if error}
    assert not refused, f"{applied.stack}: the API server refused {refused}"


def test_every_object_is_stored_as_declared(applied: AppliedStack) -> None:
    """Each object exists, and fields we set are not dropped (no unknown or pruned field)."""
    for registration in applied.objects:
        obj = manifest(registration)
        meta = obj["metadata"]
        args = [obj["kind"].lower(), meta["name"]]
        if meta.get("namespace"):
            args += ["-n", meta["namespace"]]
        stored = applied.kubectl.get(*args)
        for key, value in meta.get("labels", {}).items():
            assert stored["metadata"]["labels"].get(key) == value, (object_key(obj), key)
        for section in ("spec", "rules", "roleRef", "subjects", "handler", "data"):
            if section in obj:
                assert section in stored, (object_key(obj), section)


def test_applying_again_changes_nothing(applied: AppliedStack) -> None:
    """A second `pulumi up` finds the objects as it left them: no defaulting fights."""
    for registration in applied.objects:
        obj = manifest(registration)
        meta = obj["metadata"]
        args = [obj["kind"].lower(), meta["name"], *(["-n", meta["namespace"]]
                                                     if meta.get("namespace") else [])]
        before = applied.kubectl.get(*args)["metadata"]
        assert apply(applied.kubectl, obj) == ""
        after = applied.kubectl.get(*args)["metadata"]
        if "generation" in before:  # the spec's version; status writes do not count
            assert after["generation"] == before["generation"], object_key(obj)
        elif obj["kind"] not in STATUS_WRITTEN:
            assert after["resourceVersion"] == before["resourceVersion"], object_key(obj)
