"""The one training loop: checkpoints are atomic, and a killed run resumes with nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from embodied.policies.checkpoint import first_difference, load_checkpoint, save_checkpoint
from embodied.policies.train import TrainCfg, evaluate, export_policy, load_policy, train
from embodied.tasks.control.pendulum import PendulumEnv

SMALL_SAC = {"hidden_sizes": [32, 32], "batch_size": 32, "learning_starts": 100}


def cfg(run_dir: Path, total: int = 600, every: int = 200) -> TrainCfg:
    return TrainCfg(total_steps=total, num_envs=2, seed=3, run_dir=str(run_dir), checkpoint_every=every,
                    eval_episodes=2, progress=False, tensorboard=False)


def assert_same_tree(a, b) -> None:
    assert first_difference(a, b) is None, f"{first_difference(a, b)} differs"


def test_interrupted_run_resumes_bit_identically(tmp_path, monkeypatch):
    reference = load_checkpoint(train("Control/Pendulum-v0", "sac", cfg(tmp_path / "a"), learner_overrides=SMALL_SAC))

    # Ctrl-C the second run in the middle of a step: it finishes that step, checkpoints and stops.
    calls = {"n": 0}
    original_step = PendulumEnv.step

    def step_then_interrupt(self, action):
        calls["n"] += 1
        if calls["n"] == 157:
            signal.raise_signal(signal.SIGINT)
        return original_step(self, action)

    monkeypatch.setattr(PendulumEnv, "step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train("Control/Pendulum-v0", "sac", cfg(tmp_path / "b"), learner_overrides=SMALL_SAC)
    monkeypatch.setattr(PendulumEnv, "step", original_step)
    assert load_checkpoint(tmp_path / "b")["global_step"] == 314
    with pytest.raises(ValueError, match="is a sac run on Control/Pendulum-v0, not ppo"):
        train("Control/Pendulum-v0", "ppo", resume=tmp_path / "b")
    resumed = load_checkpoint(train("Control/Pendulum-v0", "sac", resume=tmp_path / "b"))
    assert resumed["global_step"] == reference["global_step"] == 600
    assert_same_tree(reference["learner"], resumed["learner"])
    assert_same_tree(reference["rng"], resumed["rng"])
    assert json.loads((tmp_path / "b" / "eval.json").read_text())["episodes"] == 2


def test_run_killed_with_sigkill_resumes_from_its_last_checkpoint(tmp_path):
    reference = load_checkpoint(train("Control/Pendulum-v0", "ppo", cfg(tmp_path / "a", total=1600, every=256)))
    code = (
        "import sys; from embodied.policies.train import TrainCfg, train;"
        f"train('Control/Pendulum-v0', 'ppo', TrainCfg(total_steps=10**9, num_envs=2, seed=3, run_dir=r'{tmp_path / 'b'}',"
        " checkpoint_every=256, progress=False, tensorboard=False))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    ckpt = tmp_path / "b" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt.exists() and load_checkpoint(ckpt)["global_step"] >= 512):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(ckpt)["global_step"]
    assert 512 <= step < 1600, "the killed run should have stopped between checkpoints"
    # The killed run was meant to go on forever; resume it up to the reference's length.
    resumed = load_checkpoint(train("Control/Pendulum-v0", "ppo", resume=tmp_path / "b", total_steps=1600))
    assert_same_tree(reference["learner"], resumed["learner"])


def test_checkpoint_writes_are_atomic_and_bad_files_are_refused(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"task_id": "Control/Pendulum-v0", "algo": "sac", "learner": {"w": torch.ones(2)}})
    assert not list(tmp_path.glob("*.tmp")), "no temp file may be left behind"
    assert torch.equal(load_checkpoint(path)["learner"]["w"], torch.ones(2))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable embodied checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="missing"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")


def test_exported_policy_is_small_and_acts_like_the_checkpoint(tmp_path):
    run_dir = train("Control/Pendulum-v0", "sac", cfg(tmp_path / "run", total=400), learner_overrides=SMALL_SAC)
    exported = export_policy(run_dir / "checkpoint.pt", tmp_path / "policy.pt")
    assert exported.stat().st_size < (run_dir / "checkpoint.pt").stat().st_size / 2
    full, _ = load_policy(run_dir / "checkpoint.pt")
    small, run = load_policy(exported)
    assert run["task_id"] == "Control/Pendulum-v0"
    a = evaluate("Control/Pendulum-v0", full, episodes=2, seed=5)
    b = evaluate("Control/Pendulum-v0", small, episodes=2, seed=5)
    assert a["returns"] == b["returns"]


def test_first_difference_names_the_first_differing_leaf():
    same = {"a": [torch.ones(2), 3], "b": {"c": torch.zeros(1)}}
    assert first_difference(same, {"a": [torch.ones(2), 3], "b": {"c": torch.zeros(1)}}) is None
    assert first_difference(same, {"a": [torch.ones(2), 4], "b": {"c": torch.zeros(1)}}) == "state.a[1]"
    assert first_difference(same, {"a": [torch.ones(2), 3], "b": {"c": torch.ones(1)}}) == "state.b.c"
    assert first_difference(same, {"a": [torch.ones(3), 3], "b": {"c": torch.zeros(1)}}) == "state.a[0]"
    assert "keys" in first_difference({"a": 1}, {"b": 1})
