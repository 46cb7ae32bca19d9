"""The program evaluated under Pulumi mocks, as the test layers use it. The evaluation itself
is product code shared with `python -m render`: render/graph.py and render/mocks.py."""

from render.graph import (
    PROJECT,
    ROOT,
    Graph,
    RecordingMonitor,
    Registration,
    engine_config,
    is_secret,
    run_program,
    stack_config,
    unwrap,
)
from render.mocks import FakeProviders, fake_state

__all__ = ["PROJECT", "ROOT", "FakeProviders", "Graph", "RecordingMonitor", "Registration",
           "engine_config", "fake_state", "is_secret", "run_program", "stack_config", "unwrap"]
