"""bench/srl.py's report: means over the seeds present, and the cost paired by task and seed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def srl_bench():
    sys.path.insert(0, str(BENCH))
    try:
        import srl

        yield srl
    finally:
        sys.path.remove(str(BENCH))


def write_piece(results: Path, task: str, method: str, seed: int, fas: float, rate: float | None) -> None:
    piece = {"task": task, "method": method, "seed": seed, "fas": fas, "return_full_rate": 10.0 * fas,
             "fas_curve": [[1, 10.0 * fas], [2, 5.0 * fas]], "steps_per_s": rate}
    (results / "srl" / f"{task}_{method}_seed{seed}.json").write_text(json.dumps(piece))


def test_report_pairs_the_cost_by_task_and_seed(tmp_path, srl_bench):
    (tmp_path / "srl").mkdir()
    # Seed 1 ran alone (fast), seed 2 beside another job (everything a third slower): the pairs
    # give 1.5x on both, where pooling the rates would mix the two loads.
    for seed, load in ((1, 1.0), (2, 1.5)):
        write_piece(tmp_path, "Reacher", "sac1", seed, 0.8, 120.0 / load)
        write_piece(tmp_path, "Reacher", "srl8", seed, 0.9 + 0.02 * seed, 80.0 / load)
    write_piece(tmp_path, "Reacher", "planner", 1, 0.7, None)
    out = srl_bench.report(tmp_path, ["Reacher", "Hopper"], [1, 2])
    assert out["cost_per_step_vs_sac1"] == {"sac1": 1.0, "srl8": pytest.approx(1.5)}
    assert out["steps_per_s"]["srl8"] == pytest.approx((80.0 + 80.0 / 1.5) / 2)  # the median of two
    assert out["Reacher"]["fas"]["srl8"] == pytest.approx(0.93)
    assert out["Reacher"]["fas_per_seed"]["srl8"] == {1: 0.92, 2: pytest.approx(0.94)}
    assert "planner" not in out["Reacher"]["steps_per_s"] and out["Reacher"]["fas"]["planner"] == 0.7
    assert out["seeds"] == [1, 2] and list(out["budget"]) == ["Reacher"]
    assert "Reacher_planner_seed2" in out["missing"] and "Hopper_sac1_seed1" in out["missing"]
