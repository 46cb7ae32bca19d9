"""lib.sh's authorize_forced_command: steps that run at the same time on one node (the
join-token issuer and the maintenance helper on the first control plane) each add their key;
neither overwrites the other's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from components.render.scripts import SCRIPTS_DIR

STEPS = 24


def test_keys_added_at_the_same_time_are_all_kept(tmp_path: Path) -> None:
    keys = tmp_path / "authorized_keys"
    keys.write_text("ssh-ed25519 AAAAadmin k8sadmin@test\n")
    script = f"""
source {SCRIPTS_DIR / "lib.sh"}
SCRIPT_NAME=test
for i in $(seq {STEPS}); do
  authorize_forced_command "$AUTHORIZED_KEYS" "marker-$i" restrict "ssh-ed25519 AAAA$i" &
done
wait
"""
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "AUTHORIZED_KEYS": str(keys)})
    assert done.returncode == 0, done.stderr
    lines = keys.read_text().splitlines()
    assert lines[0] == "ssh-ed25519 AAAAadmin k8sadmin@test"
    assert sorted(lines[1:]) == sorted(f"restrict ssh-ed25519 AAAA{i} marker-{i}"
                                       for i in range(1, STEPS + 1))
