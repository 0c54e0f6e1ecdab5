"""Control/Pendulum-v0 against Gymnasium's Pendulum-v1 and against its own physics."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import torch

import embodied


def test_matches_gymnasium_pendulum_step_for_step():
    ref = gymnasium.make("Pendulum-v1").unwrapped
    ref.reset(seed=0)
    env = embodied.make("Control/Pendulum-v0", num_envs=1, seed=0)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        # One-step parity from the reference state: float32 vs float64 would drift over 200 steps.
        env.theta[0], env.theta_dot[0] = float(ref.state[0]), float(ref.state[1])
        action = rng.uniform(-2.5, 2.5, size=(1,)).astype(np.float32)  # also outside the bounds: both clip
        ref_obs, ref_reward, *_ = ref.step(action)
        _, reward, _, _, info = env.step(torch.as_tensor(action).reshape(1, 1))
        obs = info["final_obs"]  # the 200th step truncates and autoresets
        np.testing.assert_allclose(obs[0].numpy(), ref_obs, atol=2e-5)
        np.testing.assert_allclose(float(reward[0]), ref_reward, rtol=1e-5, atol=1e-5)


def test_energy_is_conserved_without_torque_for_small_steps():
    # With no torque and a small dt the semi-implicit Euler step nearly conserves energy.
    env = embodied.make("Control/Pendulum-v0", num_envs=4, seed=0, dt=0.001, max_speed=100.0)
    env.max_episode_steps = 10**6  # no truncation (and autoreset) inside the test
    env.reset(seed=0)
    g, length, mass = env.cfg.gravity, env.cfg.length, env.cfg.mass

    def energy() -> torch.Tensor:
        inertia = mass * length**2 / 3
        return 0.5 * inertia * env.theta_dot**2 + mass * g * (length / 2) * torch.cos(env.theta)

    e0 = energy()
    for _ in range(2000):
        env.step(torch.zeros(4, 1))
    assert torch.allclose(energy(), e0, rtol=0.02, atol=0.02)


def test_upright_is_an_equilibrium_with_zero_reward():
    env = embodied.make("Control/Pendulum-v0", num_envs=2, seed=0)
    env.reset(seed=0)
    env.theta[:], env.theta_dot[:] = 0.0, 0.0
    _, reward, *_ = env.step(torch.zeros(2, 1))
    assert torch.equal(reward, torch.zeros(2))
    assert torch.allclose(env.theta, torch.zeros(2)) and math.isclose(float(env._observe()[0, 0]), 1.0)


def test_randomised_mass_changes_dynamics_per_env():
    env = embodied.make("Control/Pendulum-v0", num_envs=2, seed=0)
    env.reset(seed=0)
    env.theta[:], env.theta_dot[:] = 1.0, 0.0
    env.set_params(torch.tensor([1]), {"mass": torch.tensor([4.0])})
    env.step(torch.ones(2, 1))
    assert env.theta_dot[0] > env.theta_dot[1], "a heavier pendulum accelerates less under the same torque"
