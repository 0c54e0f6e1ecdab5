"""SRL-4 on another family: beam orbit correction (Beam/OrbitCorrection-CM1-v0, trend observations).

A real accelerator's correction loop decides slowly (a BPM read-out and a magnet settle between
decisions), so SRL trains here through the decision-rate adapter with the one training loop.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from embodied.policies.checkpoint import load_checkpoint
from embodied.policies.srl import SRL
from embodied.policies.train import TrainCfg, evaluate, load_policy, train

torch.set_num_threads(1)

CM1 = "Beam/OrbitCorrection-CM1-v0"
SMALL = {"J": 4, "hidden_sizes": [32, 32], "gru_size": 32, "model_hidden_sizes": [32, 32], "batch_size": 64}


def run_cfg(run_dir: Path, total: int, seed: int = 1) -> TrainCfg:
    return TrainCfg(
        total_steps=total,
        num_envs=1,
        seed=seed,
        run_dir=str(run_dir),
        checkpoint_every=0,
        eval_episodes=0,
        progress=False,
        tensorboard=False,
    )


def held_out(run_dir: Path, episodes: int = 16) -> dict:
    """The run's deterministic policy on episodes (seed 1000) the training never saw, at its decision rate."""
    learner, run = load_policy(run_dir / "checkpoint.pt")
    return evaluate(CM1, learner, episodes, seed=1000, adapters=run["adapters"], task_overrides=run["task_overrides"])


def test_srl4_trains_on_orbit_correction_through_the_loop_and_resumes(tmp_path):
    run = train(CM1, "srl", run_cfg(tmp_path, 100), learner_overrides={**SMALL, "learning_starts": 60})
    state = load_checkpoint(run)
    assert state["run"]["adapters"]["rate"]["steps"] == 4 and state["run"]["adapters"]["rate"]["action_sequence"]
    assert state["run"]["task_overrides"]["obs_mode"] == "trend"
    run = train(CM1, "srl", resume=run, total_steps=200)
    state = load_checkpoint(run)
    assert state["global_step"] == 200
    counters = state["learner"]["counters"]
    # 50-step episodes are 13 decisions of 4: the last 2 primitive slots of each come after the
    # truncation and are not stored. 200 steps end 3 episodes (random actions never succeed).
    assert counters["num_transitions"] == 200 - 3 * 2, "every valid primitive step inside the decisions is stored"
    assert counters["num_gradient_steps"] > 100, "SRL-4 takes one gradient step per primitive transition"
    learner, _ = load_policy(run / "checkpoint.pt")
    assert isinstance(learner, SRL) and learner.obs_dim == 30 and learner.act_dim == 10  # 5 BPMs x 3 x 2, 10 correctors
    summary = held_out(run, episodes=2)
    assert summary["length_mean"] <= 50 and torch.isfinite(torch.tensor(summary["returns"])).all()


@pytest.mark.slow
def test_srl4_improves_over_its_initial_policy_on_held_out_orbits(tmp_path):
    # Seen (seed 1, 3,000 primitive steps, ~30-45 s alone on 2 cores): initial -181, trained -107 .. -129;
    # seed 2: -216 -> -122 .. -124. The initial policy is the same run before any gradient step.
    overrides = {**SMALL, "learning_starts": 500}
    run = train(CM1, "srl", run_cfg(tmp_path, 100), learner_overrides=overrides)
    initial = held_out(run)["return_mean"]
    run = train(CM1, "srl", resume=run, total_steps=3000)
    trained = held_out(run)["return_mean"]
    assert trained > initial + 30.0, (initial, trained)
