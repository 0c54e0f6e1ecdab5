"""Scale-out without a cluster: serial rollout workers, bad input, and a gloo DDP run.

The tests on a real Ray cluster (actors on two nodes, killed workers and sweep drivers,
RLlib) are in test_scaleout_cluster.py.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from embodied.cli import main
from embodied.policies import LEARNERS
from embodied.policies.checkpoint import first_difference, load_checkpoint
from embodied.policies.ppo import PPO
from embodied.policies.scaleout.workers import (
    RolloutWorker,
    WireArray,
    WorkerRollout,
    drop_repeated_final_obs,
    from_wire,
    restore_final_obs,
    to_wire,
    worker_seed,
)
from embodied.policies.train import RunSpec, Step, TrainCfg, build_env, build_learner, train

SMALL_PPO = {"num_steps": 32, "num_minibatches": 4, "update_epochs": 2, "hidden_sizes": [32, 32]}
SMALL_SAC = {"hidden_sizes": [32, 32], "batch_size": 32, "learning_starts": 200}


def worker_cfg(run_dir: Path, total: int = 1024, **changes) -> TrainCfg:
    settings = {"total_steps": total, "num_envs": 4, "seed": 5, "run_dir": str(run_dir), "checkpoint_every": 0,
                "eval_episodes": 0, "progress": False, "tensorboard": False, "workers": 2, "worker_mode": "serial"}
    return TrainCfg(**{**settings, **changes})


def assert_same_tree(a, b) -> None:
    assert first_difference(a, b) is None, f"{first_difference(a, b)} differs"


def test_serial_workers_hand_the_learner_each_workers_envs_side_by_side(tmp_path):
    run_dir = train("Control/Pendulum-v0", "ppo", worker_cfg(tmp_path / "run", total=256), learner_overrides=SMALL_PPO)
    run = RunSpec(**load_checkpoint(run_dir)["run"])
    source = WorkerRollout(run, worker_cfg(tmp_path, round_steps=8))
    learner = build_learner("ppo", source, "cpu", run.learner_cfg)
    steps = [source.next_step(learner) for _ in range(8)]
    # Worker i plays envs [2i, 2i + 2): the same as a lone worker with its seed and the same policy.
    sent = RolloutWorker(run, 2, worker_seed(5, 1)).run_round(learner.rollout_state(), 8)
    lone = restore_final_obs(sent["steps"], sent["state"]["obs"])
    for t, step in enumerate(steps):
        assert step.obs.shape == (4, 3) and step.reward.shape == (4,)
        assert torch.equal(step.obs[2:], lone.obs[t]) and torch.equal(step.action[2:], lone.action[t])
        assert torch.equal(step.info["final_obs"][2:], lone.info["final_obs"][t])
    source.close()


def test_a_round_sends_final_obs_only_where_episodes_ended():
    """final_obs repeats the next observation except at episode ends: a worker sends those rows
    only and the driver rebuilds the rest, bit for bit (nested observations too)."""
    env = build_env("Control/Hopper-v0", 4, "cpu", 3)  # a random Hopper falls within tens of steps
    obs, _ = env.reset(seed=3)
    torch.manual_seed(3)
    steps = []
    for _ in range(60):
        action = torch.rand(4, 3) * 2 - 1
        next_obs, reward, terminated, truncated, info = env.step(action)
        nest = lambda o: {"joints": o, "scaled": {"twice": 2 * o}}  # noqa: E731  (a dict observation space)
        steps.append(Step(nest(obs), action, reward, terminated, truncated, {**info, "final_obs": nest(info["final_obs"])}))
        obs = next_obs
    stacked = Step(*(_stack_tree(list(field)) for field in zip(*steps, strict=True)))
    end_obs = {"joints": obs, "scaled": {"twice": 2 * obs}}
    done = stacked.terminated | stacked.truncated
    assert 0 < int(done.sum()) < done.numel()

    sent = drop_repeated_final_obs(stacked, end_obs)
    assert "final_obs" not in sent.info
    assert sent.info["final_obs_at_done"]["joints"].shape == (int(done.sum()), 11)
    assert_same_tree(stacked._asdict(), restore_final_obs(sent, end_obs)._asdict())

    # A final_obs that is not the next observation where no episode ended is sent whole.
    odd = stacked._replace(info={**stacked.info, "final_obs": {"joints": stacked.info["final_obs"]["joints"] + 1,
                                                                "scaled": stacked.info["final_obs"]["scaled"]}})
    assert drop_repeated_final_obs(odd, end_obs) is odd
    env.close()


def test_tensors_cross_ray_as_numpy_arrays_and_come_back_the_same():
    """What a round and a policy carry: nested dicts, an nn.Module state dict (its version
    metadata kept), a Step, lists; a bfloat16 tensor (NumPy has no such dtype) stays a tensor."""
    module_state = torch.nn.Linear(3, 2).state_dict()
    tree = {"policy": module_state, "step": Step(torch.ones(2, 3), torch.zeros(2), torch.ones(2), torch.zeros(2, dtype=torch.bool),
                                                 torch.ones(2, dtype=torch.bool), {"terms": [torch.arange(4), 7]}),
            "half": torch.ones(2, dtype=torch.bfloat16), "count": 3}
    wire = pickle.loads(pickle.dumps(to_wire(tree)))
    assert isinstance(wire["policy"]["weight"], WireArray) and isinstance(wire["half"], torch.Tensor)
    back = from_wire(wire)
    assert_same_tree(tree, back)
    assert isinstance(back["step"], Step) and back["policy"]._metadata == module_state._metadata
    # Ray hands large arrays out read-only (its shared memory): the learner gets a writable copy.
    frozen = np.zeros(3, np.float32)
    frozen.flags.writeable = False
    tensor = from_wire(WireArray(frozen))
    tensor += 1
    assert frozen.sum() == 0


def _stack_tree(trees):
    if isinstance(trees[0], dict):
        return {k: _stack_tree([t[k] for t in trees]) for k in trees[0]}
    return torch.stack(trees)


def test_srl_acts_in_workers_and_resumes_mid_round_bit_identically(tmp_path):
    """SRL-4 through two workers: each decision plays 4 primitive steps; the workers' copies act with
    the learned GRU once learning has started (the rollout state carries the step count) and keep
    each env's previous action; a run stopped mid-round resumes bit-identically."""
    overrides = {**SMALL_SAC, "J": 4, "gru_size": 16, "model_hidden_sizes": [32], "learning_starts": 256}
    # 4 envs x 4 primitive steps = 16 per batched step; 24-step rounds are 384 primitive steps.
    reference = load_checkpoint(train("Control/Pendulum-v0", "srl", worker_cfg(tmp_path / "a", total=1536, round_steps=24),
                                      learner_overrides=overrides))
    assert reference["learner"]["primitive_steps"] == 1536 and reference["learner"]["counters"]["num_updates"] > 0
    train("Control/Pendulum-v0", "srl", worker_cfg(tmp_path / "b", total=16 * 53, round_steps=24),
          learner_overrides=overrides)
    assert load_checkpoint(tmp_path / "b")["workers"]["next_index"] == 5
    resumed = load_checkpoint(train("Control/Pendulum-v0", "srl", resume=tmp_path / "b", total_steps=1536))
    assert_same_tree(reference["learner"], resumed["learner"])
    assert_same_tree(reference["workers"], resumed["workers"])
    assert reference["workers"]["round"]["action"].shape[-2:] == (4, 1)  # (steps, envs, J, action)
    # A round's workers know learning has started, so they act with the GRU, not uniformly.
    run = RunSpec(**load_checkpoint(tmp_path / "a")["run"])
    source = WorkerRollout(run, worker_cfg(tmp_path / "c", round_steps=24))
    learner = build_learner("srl", source, "cpu", run.learner_cfg)
    learner.load_state_dict(reference["learner"])
    source.next_step(learner)
    assert all(w.learner.primitive_steps == 1536 and w.learner.ready_to_update() for w in source.pool.workers)
    source.close()


@pytest.mark.parametrize("algo,overrides", [("ppo", SMALL_PPO), ("sac", SMALL_SAC)])
def test_worker_run_stopped_mid_round_resumes_bit_identically(tmp_path, algo, overrides):
    reference = load_checkpoint(train("Control/Pendulum-v0", algo, worker_cfg(tmp_path / "a", round_steps=24),
                                      learner_overrides=overrides))
    # 400 steps = 100 batched steps: the run stops 4 steps into its fifth 24-step round.
    train("Control/Pendulum-v0", algo, worker_cfg(tmp_path / "b", total=400, round_steps=24), learner_overrides=overrides)
    assert load_checkpoint(tmp_path / "b")["workers"]["next_index"] == 4
    resumed = load_checkpoint(train("Control/Pendulum-v0", algo, resume=tmp_path / "b", total_steps=1024))
    assert resumed["global_step"] == reference["global_step"] == 1024
    assert_same_tree(reference["learner"], resumed["learner"])
    assert_same_tree(reference["workers"], resumed["workers"])


def test_sac_workers_explore_uniformly_until_learning_starts(tmp_path):
    run_dir = train("Control/Pendulum-v0", "sac", worker_cfg(tmp_path / "run", total=400, round_steps=50),
                    learner_overrides={**SMALL_SAC, "learning_starts": 10_000})
    actions = load_checkpoint(run_dir)["workers"]["round"]["action"]
    # The untrained actor's actions cluster near 0; uniform ones fill [-2, 2] (Pendulum's max torque).
    assert actions.min() < -1.8 and actions.max() > 1.8 and actions.abs().mean() > 0.8


class RecurrentPPO(PPO):
    """A learner with memory across steps and none of the hooks that carry it into workers."""

    def episodes_ended(self, done: torch.Tensor) -> None:
        pass


def test_workers_refuse_learners_with_memory_and_uneven_splits(tmp_path, monkeypatch):
    monkeypatch.setitem(LEARNERS, "recurrent_ppo", (f"{__name__}:RecurrentPPO", "embodied.policies.ppo:PPOCfg"))
    with pytest.raises(ValueError, match="keeps memory across steps"):
        train("Control/Pendulum-v0", "recurrent_ppo", worker_cfg(tmp_path / "a"))
    with pytest.raises(ValueError, match="num_envs=3 cannot be split evenly over workers=2"):
        train("Control/Pendulum-v0", "ppo", worker_cfg(tmp_path / "b", num_envs=3))


def test_unreachable_ray_address_fails_fast_with_the_fix(tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is in the ray extra (and the dev extra)")
    start = time.perf_counter()
    code = main(["train", "Control/Pendulum-v0", "--algo", "ppo", "--workers", "2", "--num-envs", "4",
                 "--ray-address", "127.0.0.1:9", "--run-dir", str(tmp_path / "run"), "--no-progress"])
    assert code == 2 and time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert "cannot reach a Ray cluster at 127.0.0.1:9" in err and "ray start --head" in err


def test_sweep_with_an_unknown_task_fails_before_anything_starts(tmp_path, capsys):
    code = main(["sweep", "--name", "bad", "--tasks", "Control/Pendulum-v0,Control/Pendulm-v0", "--algos", "sac",
                 "--storage", str(tmp_path)])
    assert code == 2
    assert "Control/Pendulm-v0" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def _can_unshare() -> str | None:
    """Why a private network and PID namespace cannot be made here, or None if it can."""
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux)"
    probe = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c", "ip link set lo up"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot create a network namespace ({probe.stderr.strip()}); run as root"


def test_gloo_ddp_replicas_stay_identical(tmp_path):
    if (reason := _can_unshare()) is not None:
        pytest.skip(reason)
    torchrun = Path(sys.executable).parent / "torchrun"
    command = (f"ip link set lo up && {torchrun} --nproc_per_node=2 --rdzv-backend=c10d --rdzv-endpoint=127.0.0.1:29400 "
               f"-m embodied.cli train Control/Pendulum-v0 --algo sac --distributed --total-steps 400 --num-envs 2 "
               f"--run-dir {tmp_path / 'run'} --no-progress algo.learning_starts=100 algo.hidden_sizes=[32,32] "
               "algo.batch_size=32 eval_episodes=0 tensorboard=false")
    # torchrun's store listens on every interface: keep it in a private network namespace.
    result = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c", command],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (load_checkpoint(tmp_path / "run" / sub)["learner"] for sub in ("", "rank1"))
    for key in ("actor", "qf", "qf_target", "log_alpha", "actor_opt", "q_opt"):
        assert_same_tree(rank0[key], rank1[key])
    # Each rank learned from its own envs (seed + rank), so the replicas did average different gradients.
    assert first_difference(rank0["buffer"], rank1["buffer"]) is not None
    assert rank0["counters"]["num_gradient_steps"] > 50
