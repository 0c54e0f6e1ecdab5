"""`embodied demo`: every shipped policy loads, acts, and clearly beats a random policy."""

from __future__ import annotations

import pytest

from embodied.assets import asset_path
from embodied.demo import DEMOS, run_demo
from embodied.tasks import registry


@pytest.mark.parametrize("task_id,policy_file", DEMOS, ids=[f for _, f in DEMOS])
def test_demo_entries_point_at_registered_tasks_and_shipped_files(task_id, policy_file):
    assert task_id in registry.list_tasks()
    assert asset_path("policies", policy_file).stat().st_size < 5_000_000


def test_demo_runs_and_trained_policies_beat_random(capsys):
    rows = run_demo(episodes=4)
    assert len(rows) == len(DEMOS)
    for row in rows:
        spread = abs(row["random_return"]) + 1.0
        assert row["return"] > row["random_return"] + 0.5 * spread, row
    assert capsys.readouterr().out.count("\n") == len(DEMOS)


def test_missing_asset_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="no_such_policy.pt"):
        asset_path("policies", "no_such_policy.pt")
