"""The cluster layer's durations table keeps every run of a stage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster import conftest


@pytest.fixture
def timings(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, float]]:
    table: dict[str, float] = {}
    monkeypatch.setattr(conftest, "TIMINGS", table)
    yield table


def test_a_stage_run_again_keeps_its_first_duration(timings: dict[str, float]) -> None:
    conftest.record("step master-kubeadm-init", 172.0)
    conftest.record("step master-kubeadm-init", 16.0)
    conftest.record("step master-kubeadm-init", 15.0)
    assert timings == {"step master-kubeadm-init": 172.0,
                       "step master-kubeadm-init (run 2)": 16.0,
                       "step master-kubeadm-init (run 3)": 15.0}
