"""A stranger's library trains on suite tasks through Gymnasium alone (Stable-Baselines3)."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

sb3 = pytest.importorskip("stable_baselines3", reason="Stable-Baselines3 is in the dev extra")


def test_sb3_env_checker_accepts_the_single_env():
    from stable_baselines3.common.env_checker import check_env

    check_env(gymnasium.make("embodied:Control/Pendulum-v0").unwrapped, warn=False)


def test_sb3_sac_trains_through_gymnasium_make():
    env = gymnasium.make("embodied:Control/Pendulum-v0")
    model = sb3.SAC("MlpPolicy", env, learning_starts=100, batch_size=32, policy_kwargs={"net_arch": [32, 32]},
                    seed=0, device="cpu")
    model.learn(total_timesteps=400)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action.astype(np.float32))
    # A full episode through SB3's own evaluation helper: truncation arrives from the TimeLimit.
    from stable_baselines3.common.evaluation import evaluate_policy

    mean, _ = evaluate_policy(model, env, n_eval_episodes=1)
    assert np.isfinite(mean)


def test_sb3_ppo_trains_on_a_dummy_vec_env_of_suite_envs():
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("embodied:Control/Pendulum-v0", n_envs=2, seed=0)
    model = sb3.PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
