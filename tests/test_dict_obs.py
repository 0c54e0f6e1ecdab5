"""Dict observations (state + image + privileged state) through the contract, Gymnasium and adapters."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import embodied
from embodied.sim.check import check_batched_env
from embodied.sim2real import AdaptersCfg, wrap
from embodied.sim2real.noise import NoiseCfg
from embodied.tasks import registry
from embodied.tasks.control.pendulum import PendulumEnv

TASK = "Test/PendulumDict-v0"


class PendulumDictEnv(PendulumEnv):
    """Pendulum observed as a dict: the usual state, an 8x8 uint8 image, and privileged angle."""

    def __init__(self, cfg, **kwargs) -> None:
        super().__init__(cfg, **kwargs)
        state_space = self.single_observation_space
        self._set_spaces(
            gymnasium.spaces.Dict({
                "state": state_space,
                "image": gymnasium.spaces.Box(0, 255, (8, 8, 1), np.uint8),
                "privileged": gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32),
            }),
            self.single_action_space,
        )

    def _observe(self):
        state = super()._observe()
        # A tiny "camera": brightness follows the pole's height.
        level = ((torch.cos(self.theta) + 1) * 127).to(torch.uint8)
        image = level.view(-1, 1, 1, 1).expand(-1, 8, 8, 1).clone()
        return {"state": state, "image": image, "privileged": self.theta.unsqueeze(-1).clone()}


@pytest.fixture(scope="module", autouse=True)
def dict_task():
    registry.register(TASK, vector_entry_point=f"{__name__}:PendulumDictEnv",
                      cfg_entry_point="embodied.tasks.control.pendulum:PendulumCfg", max_episode_steps=50,
                      backends=("torch",), obs_kinds=("state", "image", "privileged"))
    yield
    registry.unregister(TASK)


def test_dict_observations_meet_the_contract():
    env = embodied.make(TASK, num_envs=3, seed=0)
    check_batched_env(env)
    obs, _ = env.reset(seed=0)
    assert obs["image"].dtype == torch.uint8 and obs["image"].shape == (3, 8, 8, 1)


def test_single_env_gives_numpy_dicts_and_passes_gymnasium_checker():
    env = gymnasium.make(TASK)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"state", "image", "privileged"} and obs["image"].dtype == np.uint8


def test_noise_touches_only_the_chosen_keys():
    env = wrap(embodied.make(TASK, num_envs=2, seed=0), AdaptersCfg(noise=NoiseCfg(std=0.1, keys=("state",))))
    clean = embodied.make(TASK, num_envs=2, seed=0)
    noisy_obs, _ = env.reset(seed=0)
    clean_obs, _ = clean.reset(seed=0)
    assert not torch.equal(noisy_obs["state"], clean_obs["state"])
    assert torch.equal(noisy_obs["image"], clean_obs["image"])
    assert torch.equal(noisy_obs["privileged"], clean_obs["privileged"])
