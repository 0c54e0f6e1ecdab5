"""Run a ROS test file again inside a private network and PID namespace, where only loopback exists.

The ROS tests start masters and nodes that must not reach the network, and killed nodes must
not outlive the test; ``unshare --net --pid --fork --mount-proc`` (as root) gives both. The
normal run collects one outer test per file, which calls :func:`run_inside_a_namespace`; inside,
``flag`` is set in the environment and the file's real tests run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NAMESPACE = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c"]


def run_inside_a_namespace(test_file: Path, flag: str, markers: str = "not slow") -> None:
    """Run ``test_file``'s tests selected by ``markers`` in a fresh namespace; skip with the reason if none can be made."""
    probe = subprocess.run([*NAMESPACE, "ip link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a private network and PID namespace ({probe.stderr.strip()}); run as root")
    inner = f"ip link set lo up && {sys.executable} -m pytest -q -p no:cacheprovider -p no:xdist -rs -m '{markers}' {test_file}"
    result = subprocess.run([*NAMESPACE, inner], capture_output=True, text=True, timeout=600,
                            env={**os.environ, flag: "1"}, cwd=test_file.parent.parent)
    print(result.stdout[-6000:])
    assert result.returncode == 0, f"{test_file.name} failed:\n{result.stdout[-8000:]}\n{result.stderr[-3000:]}"
    assert " passed" in result.stdout and "skipped" not in result.stdout
