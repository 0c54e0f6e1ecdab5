"""SAC and PPO: they learn, resume bit-identically, bootstrap through truncation, refuse bad spaces.

The learning tests run the real training loop (``embodied.policies.train.train``) with a
fixed seed and check the final deterministic evaluation. The unit tests drive learners with
the loop body documented in ``embodied.policies.base`` (:func:`run_steps`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

import embodied
from embodied.policies.base import Learner
from embodied.policies.buffers import ReplayBuffer, RolloutBuffer, gae
from embodied.policies.checkpoint import first_difference
from embodied.policies.ppo import PPO, PPOCfg
from embodied.policies.sac import SAC, SACCfg
from embodied.policies.train import TrainCfg, train
from embodied.sim.env import BatchedEnv

PENDULUM = "Control/Pendulum-v0"


def run_steps(learner: Learner, env: BatchedEnv, obs: torch.Tensor, steps: int) -> torch.Tensor:
    """The loop body of ``embodied.policies.base``, ``steps`` times; returns the latest observation."""
    for _ in range(steps):
        with torch.no_grad():
            action = learner.act(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        learner.observe(obs, action, reward, info["final_obs"], terminated, truncated)
        obs = next_obs
        if learner.ready_to_update():
            learner.update()
    return obs


def train_and_evaluate(tmp_path: Path, task_id: str, algo: str, steps: int, overrides: dict[str, Any], **cfg: Any) -> float:
    run_cfg = TrainCfg(total_steps=steps, seed=1, run_dir=str(tmp_path / algo), checkpoint_every=0, eval_episodes=10,
                       progress=False, tensorboard=False, **cfg)
    run_dir = train(task_id, algo, run_cfg, learner_overrides=overrides)
    return json.loads((run_dir / "eval.json").read_text())["return_mean"]


def make_learner(algo: str, env: BatchedEnv, device: str = "cpu", **overrides: Any) -> Learner:
    if algo == "sac":
        return SAC(SACCfg(**overrides), env.single_observation_space, env.single_action_space, env.num_envs, device)
    return PPO(PPOCfg(**overrides), env.single_observation_space, env.single_action_space, env.num_envs, device)


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    """Through bytes, as a checkpoint goes: ``torch.save`` then ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ---------------------------------------------------------------------------- learning


def test_sac_learns_pendulum(tmp_path):
    """SAC (default 256x256 networks, batch 256) on Pendulum: 5,000 env steps with learning from
    step 1,000 reach a mean deterministic return above -400 over 10 episodes (random: about
    -1,200; seeds 0-3 all reach about -160 by 5,000 steps, about -200 by 4,000). ~45 s on 2 cores."""
    assert train_and_evaluate(tmp_path, PENDULUM, "sac", 5000, {"learning_starts": 1000}) > -400


def test_ppo_learns_inverted_pendulum(tmp_path):
    """PPO (CleanRL defaults, 16 envs, 2,048-transition rollouts) on the MuJoCo InvertedPendulum:
    49,152 env steps reach a mean deterministic return above 500 over 10 episodes (the maximum
    is 1,000; random actions last about 5-10 steps; seeds 0-2 all reach 1,000). ~20 s on 2 cores.
    On Pendulum the same defaults reach about -170 after 200,000 steps (~50 s)."""
    if "Control/InvertedPendulum-v0" not in embodied.list_tasks():
        pytest.skip("Control/InvertedPendulum-v0 is not registered")
    assert train_and_evaluate(tmp_path, "Control/InvertedPendulum-v0", "ppo", 49_152, {}, num_envs=16) > 500


# ---------------------------------------------------------------------------- exact resume


@pytest.mark.parametrize(
    "algo,num_envs,steps,overrides",
    [
        ("sac", 2, 160, {"hidden_sizes": (32, 32), "batch_size": 32, "learning_starts": 100, "updates_per_step": 2}),
        ("sac", 1, 120, {"hidden_sizes": (32, 32), "batch_size": 32, "learning_starts": 50, "fused_optimizer": False,
                         "policy_frequency": 2, "target_network_frequency": 2}),
        # 3 rollouts of 64 steps; the split at step 96 lands in the middle of the second one.
        ("ppo", 4, 192, {"num_steps": 64, "num_minibatches": 4, "update_epochs": 2}),
    ],
)
def test_state_dict_resumes_bit_identically(algo, num_envs, steps, overrides):
    """N steps in one go == N/2 steps, save (learner, env, obs, torch RNG), a fresh learner and env load, N/2 more."""
    torch.manual_seed(0)
    env = embodied.make(PENDULUM, num_envs=num_envs, seed=0)
    learner = make_learner(algo, env, **overrides)
    obs, _ = env.reset(seed=0)
    torch.manual_seed(1)
    run_steps(learner, env, obs, steps)
    reference = learner.state_dict()

    torch.manual_seed(0)
    env = embodied.make(PENDULUM, num_envs=num_envs, seed=0)
    learner = make_learner(algo, env, **overrides)
    obs, _ = env.reset(seed=0)
    torch.manual_seed(1)
    obs = run_steps(learner, env, obs, steps // 2)
    saved = roundtrip({"learner": learner.state_dict(), "env": env.state_dict(), "obs": obs, "rng": torch.get_rng_state()})

    torch.manual_seed(1234)  # a fresh process: other weights and RNG until the checkpoint is loaded
    env = embodied.make(PENDULUM, num_envs=num_envs, seed=5)
    learner = make_learner(algo, env, **overrides)
    learner.load_state_dict(saved["learner"])
    env.load_state_dict(saved["env"])
    torch.set_rng_state(saved["rng"])
    run_steps(learner, env, saved["obs"], steps - steps // 2)
    assert_same(reference, learner.state_dict())
    assert learner.num_updates > 0


def assert_same(a: Any, b: Any) -> None:
    assert first_difference(a, b) is None, f"{first_difference(a, b)} differs"


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_policy_state_dict_acts_like_the_full_learner(algo):
    env = embodied.make(PENDULUM, num_envs=3, seed=0)
    learner = make_learner(algo, env, **({"learning_starts": 50} if algo == "sac" else {"num_steps": 40, "num_minibatches": 4}))
    obs = run_steps(learner, env, env.reset(seed=0)[0], 60)
    policy = roundtrip(learner.policy_state_dict())
    assert "buffer" not in policy and "optimizer" not in policy
    fresh = make_learner(algo, env)
    fresh.load_policy_state_dict(policy)
    with torch.no_grad():
        assert torch.equal(learner.act(obs, deterministic=True), fresh.act(obs, deterministic=True))


# ---------------------------------------------------------------------------- truncation and GAE


def test_replay_buffer_stores_final_obs_and_never_marks_truncation_terminal():
    env = embodied.make(PENDULUM, num_envs=2, seed=0)
    learner = SAC(SACCfg(learning_starts=10**6), env.single_observation_space, env.single_action_space, 2)
    obs = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]])
    final_obs = torch.tensor([[0.9, 0.1, 0.4], [0.1, 0.9, -0.4]])
    action = torch.tensor([[2.0], [-1.0]])  # env units: the bounds are [-2, 2]
    learner.observe(obs, action, torch.tensor([-1.0, -2.0]), final_obs, torch.tensor([False, True]), torch.tensor([True, False]))
    batch = learner.buffer.sample(64)
    by_reward = {float(r): i for i, r in enumerate(batch.reward)}
    truncated, terminated = by_reward[-1.0], by_reward[-2.0]
    assert torch.equal(batch.next_obs[truncated], final_obs[0]) and batch.terminated[truncated] == 0.0
    assert torch.equal(batch.next_obs[terminated], final_obs[1]) and batch.terminated[terminated] == 1.0
    assert torch.equal(batch.action[truncated], torch.tensor([1.0]))  # stored normalised to [-1, 1]
    assert torch.equal(batch.action[terminated], torch.tensor([-0.5]))


def test_replay_buffer_ring_wraps_and_round_trips():
    buf = ReplayBuffer(5, obs_dim=1, act_dim=1)
    for start in (0, 3):  # 3 rows, then 3 more: the last one wraps to row 0
        rows = torch.arange(start, start + 3, dtype=torch.float32).unsqueeze(-1)
        buf.add(rows, rows, rows.squeeze(-1), rows, torch.zeros(3, dtype=torch.bool))
    assert len(buf) == 5 and buf.pos == 1
    assert buf.data[:, 0].tolist() == [5.0, 1.0, 2.0, 3.0, 4.0]
    copy = ReplayBuffer(5, obs_dim=1, act_dim=1)
    copy.load_state_dict(roundtrip(buf.state_dict()))
    assert torch.equal(copy.data, buf.data) and (copy.pos, copy.size) == (1, 5)


def test_rollout_buffer_bootstraps_truncation_and_matches_hand_computed_gae():
    """Two envs, three steps, gamma 0.9, lambda 0.8.

    env 0: rewards 1, 2, 3; values .5, .6, .7; terminated after step 1; V(obs after step 2) = .8
        A2 = 3 + .9*.8 - .7 = 3.02;  A1 = 2 - .6 = 1.4 (terminal);  A0 = (1 + .9*.6 - .5) + .72*1.4 = 2.048
    env 1: rewards 1, 1, 1; values 1, 1, 1; truncated after step 0 with V(final_obs) = 2;
        V(obs after step 2) = .5. The truncated step's reward becomes 1 + .9*2 = 2.8.
        A2 = 1 + .9*.5 - 1 = .45;  A1 = (1 + .9 - 1) + .72*.45 = 1.224;  A0 = 2.8 - 1 = 1.8 (episode end)
    """
    buf = RolloutBuffer(num_steps=3, num_envs=2, obs_dim=1, act_dim=1, gamma=0.9)
    rewards = [[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]]
    values = [[0.5, 1.0], [0.6, 1.0], [0.7, 1.0]]
    terminated = [[False, False], [True, False], [False, False]]
    truncated = [[False, True], [False, False], [False, False]]
    next_values = [[0.6, 2.0], [123.0, 1.0], [0.8, 0.5]]  # 123: V of a terminal state is never used
    for t in range(3):
        buf.add(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2), torch.tensor(values[t]), torch.tensor(rewards[t]),
                torch.tensor(terminated[t]), torch.tensor(truncated[t]), torch.tensor(next_values[t]))
    assert buf.full
    assert torch.allclose(buf.rewards[0], torch.tensor([1.0, 2.8]))
    advantages, returns = buf.advantages_and_returns(lam=0.8)
    expected = torch.tensor([[2.048, 1.8], [1.4, 1.224], [3.02, 0.45]])
    assert torch.allclose(advantages, expected, atol=1e-6)
    assert torch.allclose(returns, expected + torch.tensor(values), atol=1e-6)
    with pytest.raises(RuntimeError, match="full"):
        buf.add(*[torch.zeros(2, 1)] * 2, *[torch.zeros(2)] * 3, *[torch.zeros(2, dtype=torch.bool)] * 2, torch.zeros(2))


def test_gae_with_lambda_one_and_no_dones_is_the_discounted_return_minus_value():
    rewards = torch.tensor([[1.0], [2.0], [4.0]])
    values = torch.tensor([[0.5], [0.25], [1.0]])
    advantages, returns = gae(rewards, values, torch.zeros(3, 1), torch.tensor([8.0]), gamma=0.5, lam=1.0)
    assert torch.allclose(returns.squeeze(-1), torch.tensor([1 + 0.5 * 2 + 0.25 * 4 + 0.125 * 8, 2 + 0.5 * 4 + 0.25 * 8, 4 + 0.5 * 8]))
    assert torch.allclose(advantages, returns - values)


def test_ppo_adds_discounted_value_of_final_obs_at_truncation():
    env = embodied.make(PENDULUM, num_envs=2, seed=0)
    learner = PPO(PPOCfg(num_steps=4, num_minibatches=2, norm_obs=False, norm_reward=False),
                  env.single_observation_space, env.single_action_space, 2)
    obs, _ = env.reset(seed=0)
    action = learner.act(obs)
    final_obs = torch.randn(2, 3)
    learner.observe(obs, action, torch.tensor([-1.0, -1.0]), final_obs, torch.tensor([False, False]), torch.tensor([True, False]))
    with torch.no_grad():
        v_final = learner.critic(final_obs)
    assert torch.allclose(learner.buffer.rewards[0], torch.tensor([-1.0 + 0.99 * v_final[0].item(), -1.0]))
    assert learner.buffer.dones[0].tolist() == [1.0, 0.0]
    assert torch.allclose(learner.buffer.last_value, v_final)


def test_ppo_stores_the_unclipped_sample_and_sends_clipped_actions():
    env = embodied.make(PENDULUM, num_envs=64, seed=0)
    learner = PPO(PPOCfg(init_log_std=1.0), env.single_observation_space, env.single_action_space, 64)
    obs, _ = env.reset(seed=0)
    action = learner.act(obs)
    assert (action.abs() <= 2.0).all()  # Pendulum's torque bounds
    _, reward, terminated, truncated, info = env.step(action)
    learner.observe(obs, action, reward, info["final_obs"], terminated, truncated)
    stored = learner.buffer.actions[0]
    assert (stored.abs() > 1.0).any(), "with std e^1 some samples fall outside [-1, 1] and must be kept as sampled"
    assert torch.allclose(stored.clamp(-1, 1) * 2.0, action)


# ---------------------------------------------------------------------------- spaces, devices, batching


@pytest.mark.parametrize("algo", ["sac", "ppo"])
@pytest.mark.parametrize(
    "space",
    [
        gymnasium.spaces.Dict({"state": gymnasium.spaces.Box(-1, 1, (3,)), "image": gymnasium.spaces.Box(0, 255, (8, 8, 3))}),
        gymnasium.spaces.Box(0, 255, (8, 8, 3), dtype=np.uint8),
        gymnasium.spaces.Discrete(4),
    ],
    ids=["dict", "image", "discrete"],
)
def test_non_flat_box_observations_are_a_clear_error(algo, space):
    cls, cfg = (SAC, SACCfg()) if algo == "sac" else (PPO, PPOCfg())
    with pytest.raises(TypeError, match="flat Box observation space"):
        cls(cfg, space, gymnasium.spaces.Box(-1, 1, (2,)), 1)


def test_sac_rejects_unbounded_actions():
    with pytest.raises(ValueError, match="finite"):
        SAC(SACCfg(), gymnasium.spaces.Box(-1, 1, (3,)), gymnasium.spaces.Box(-np.inf, np.inf, (2,)), 1)


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_learners_run_batched_on_the_device(algo, device):
    """Several envs, several gradient steps per env step (SAC), everything on ``device``; metrics are floats."""
    env = embodied.make(PENDULUM, num_envs=3, seed=0, device=device)
    overrides = (
        {"hidden_sizes": (16, 16), "batch_size": 8, "learning_starts": 30, "updates_per_step": 3, "metrics_interval": 1}
        if algo == "sac"
        else {"hidden_sizes": (16, 16), "num_steps": 10, "num_minibatches": 3, "update_epochs": 2}
    )
    learner = make_learner(algo, env, device, **overrides)
    obs, _ = env.reset(seed=0)
    metrics: dict[str, float] = {}
    for _ in range(20):
        with torch.no_grad():
            action = learner.act(obs)
        assert action.device == env.device and action.shape == (3, 1)
        assert (action.abs() <= 2.0).all()
        next_obs, reward, terminated, truncated, info = env.step(action)
        learner.observe(obs, action, reward, info["final_obs"], terminated, truncated)
        obs = next_obs
        if learner.ready_to_update():
            metrics = learner.update() or metrics
    assert metrics and all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())
    expected = {"losses/qf_loss", "losses/actor_loss", "losses/alpha"} if algo == "sac" else {
        "losses/value_loss", "losses/policy_loss", "losses/approx_kl", "losses/clipfrac", "losses/explained_variance"}
    assert expected <= metrics.keys()
    assert learner.num_updates > 0


def test_learning_rate_schedules() -> None:
    """Warm-up from 0.1 %, then a linear (CleanRL) or cosine (ReLIC) anneal to lr_min; constant without either."""
    import math

    from embodied.policies.ppo import PPOCfg, scheduled_lr

    assert scheduled_lr(PPOCfg(learning_rate=1e-3), 10**6) == 1e-3
    linear = PPOCfg(learning_rate=1e-3, lr_anneal_steps=1000)
    assert [scheduled_lr(linear, s) for s in (0, 500, 1000, 5000)] == pytest.approx([1e-3, 5e-4, 0.0, 0.0])
    cosine = PPOCfg(learning_rate=2e-4, lr_warmup_steps=100, lr_anneal_steps=1000, lr_schedule="cosine", lr_min=1e-5)
    assert scheduled_lr(cosine, 0) == pytest.approx(2e-7)
    assert scheduled_lr(cosine, 50) == pytest.approx(2e-4 * (1e-3 + 0.999 * 0.5))
    assert scheduled_lr(cosine, 100) == pytest.approx(2e-4)
    assert scheduled_lr(cosine, 600) == pytest.approx(1e-5 + (2e-4 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert scheduled_lr(cosine, 1100) == pytest.approx(1e-5) and scheduled_lr(cosine, 10**6) == pytest.approx(1e-5)
