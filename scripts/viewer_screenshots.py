"""Save a screenshot of the viewer for each family to docs/figures/viewer_<family>.png.

The screenshots are the browser tests' own (tests/test_viewer.py, Debian's chromium through
Playwright, 960 x 600): this runs those tests with ``EMBODIED_VIEWER_FIGURES`` set, so the
figures in docs/viewer.md show exactly what the tests checked.

    .venv/bin/python scripts/viewer_screenshots.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    env = {**os.environ, "EMBODIED_VIEWER_FIGURES": str(REPO / "docs" / "figures")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "2", "tests/test_viewer.py", "-k", "test_viewer_page"]
    return subprocess.call(cmd, cwd=REPO, env=env)


if __name__ == "__main__":
    sys.exit(main())
