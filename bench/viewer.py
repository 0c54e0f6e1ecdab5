"""Viewer benchmark: server-side scene updates per second, their Python cost, and the viewer's
overhead on the simulation's own steps per second, for one env of each family.

    .venv/bin/python bench/viewer.py            # run the missing pieces, print one JSON object
    .venv/bin/python bench/viewer.py --force    # re-run every piece

Per family (one env, the policy acting: the shipped checkpoint where there is one, else random):

- ``update_ms``: mean wall time of one full redraw on the server (the scene's snapshot and its
  batched-mesh / image / chart messages, and the status), :meth:`ViewerApp.refresh` forced, over
  ``UPDATES`` calls with a step between each (the step is not counted).
- ``updates_per_s``: ``1000 / update_ms``, the rate the server can redraw at (target >= 30).
- ``sim_slowdown``: ``1 - s_view / s_sim`` where ``s_sim`` is the session's steps/s alone and
  ``s_view`` the steps/s of the viewer's own play step (step, plots, redraws at most 30/s and 15 % of the time),
  measured in alternating rounds and the median round kept (the machine is shared; target <= 0.2).

A viser server runs on 127.0.0.1 with no browser connected: browser frame rates here are bound by
software rendering (~2 frames/s, /work/shared/design/viewer.md), so the browser is tested for
function in tests/test_viewer.py, and speed is measured on the server. Pieces go to
bench/results/viewer/<family>.json, the report to bench/results/viewer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pieces import REPO, code_state, machine, run_piece  # noqa: E402

RESULTS = REPO / "bench" / "results" / "viewer"
POLICIES = REPO / "assets" / "policies"
FAMILIES = {
    "control": ("Control/InvertedPendulum-v0", POLICIES / "control_inverted_pendulum_ppo.pt"),
    "tactile": ("Tactile/PegInsert-v0", None),
    "beam": ("Beam/OrbitCorrection-CM1-v0", POLICIES / "beam_cm1_tbsac.pt"),
    "nav": ("Nav/ObjectNav-v0", None),
}
UPDATES = 200
ROUNDS = 5
ROUND_S = 1.0


def _rate(fn: Any, seconds: float) -> float:
    """Calls of ``fn`` per second over about ``seconds``."""
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def measure(task_id: str, checkpoint: Path | None) -> dict[str, Any]:
    import torch

    from embodied.sim.viewer.app import ViewerApp
    from embodied.sim.viewer.session import ViewerSession

    torch.set_num_threads(1)
    session = ViewerSession(task_id, checkpoint=checkpoint)
    app = ViewerApp(session, port=8765)
    try:
        for _ in range(20):  # warm-up: first draws, first chart
            app.step()
            app.refresh(force=True)
        costs = []
        for _ in range(UPDATES):
            session.step()
            start = time.perf_counter()
            app.refresh(force=True)
            costs.append(time.perf_counter() - start)
        update_ms = 1000 * statistics.mean(costs)
        ratios, sim_rates, view_rates = [], [], []
        for _ in range(ROUNDS):
            sim = _rate(session.step, ROUND_S)
            view = _rate(lambda: app.step(force_draw=False), ROUND_S)
            sim_rates.append(sim)
            view_rates.append(view)
            ratios.append(view / sim)
        ratio = statistics.median(ratios)
        return {
            "task_id": task_id,
            "policy": "checkpoint" if checkpoint else "random",
            "update_ms": update_ms,
            "update_ms_p90": 1000 * sorted(costs)[int(0.9 * len(costs))],
            "updates_per_s": 1000 / update_ms,
            "sim_steps_per_s": statistics.median(sim_rates),
            "viewer_steps_per_s": statistics.median(view_rates),
            "sim_slowdown": max(0.0, 1 - ratio),
            "machine": machine(),
            "code": code_state("sim/viewer", "bench/viewer.py"),
        }
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="re-run every piece")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    for family, (task_id, checkpoint) in FAMILIES.items():
        piece = run_piece(RESULTS, family, lambda t=task_id, c=checkpoint: measure(t, c), force=args.force)
        for key in ("updates_per_s", "update_ms", "sim_slowdown", "sim_steps_per_s", "viewer_steps_per_s"):
            report[f"{family}.{key}"] = piece[key]
    out = REPO / "bench" / "results" / "viewer.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
