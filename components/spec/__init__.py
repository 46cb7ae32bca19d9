"""Stack configuration validated into typed, frozen objects.

Everything the program reads from `pulumi.Config` passes through `load()`: every problem is
collected (each naming its key path and what is allowed) and raised together, before a single
resource is registered. No Pulumi imports here, so the rules are testable as plain Python.
"""

from components.spec.defaults import *  # noqa: F403
from components.spec.loader import from_pulumi_config as from_pulumi_config
from components.spec.loader import load as load
from components.spec.model import *  # noqa: F403
from components.spec.pools import node_mac as node_mac

