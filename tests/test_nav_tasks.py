"""Nav/ObjectNav-v0 and Nav/ExtObjNav-v0: success, measures, trials, splits and clear errors.

The batched contract, Gymnasium's checker and determinism run in tests/test_all_tasks.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import embodied
from embodied.config import ConfigError
from embodied.sim.nav.geodesic import OccupancyGrid
from embodied.sim.nav.house import GOAL_CATEGORIES, house_seeds
from embodied.tasks.nav.extobjnav import TrialMetrics

OBJECTNAV, EXTOBJNAV = "Nav/ObjectNav-v0", "Nav/ExtObjNav-v0"
STOP, FORWARD = torch.eye(4)[0], torch.eye(4)[1]


def put_agent_next_to_goal(env, env_id: int = 0) -> None:
    """Move the agent of ``env_id`` onto the free cell nearest its goal (inside the 1 m success region)."""
    house = env.scene.houses[env_id]
    grid = OccupancyGrid.of(house)
    field = grid.distance_field(house, int(env.goal[env_id]))
    r, c = np.unravel_index(np.argmin(field), field.shape)
    env.pose[env_id, :2] = torch.tensor([(c + 0.5) * grid.resolution, (r + 0.5) * grid.resolution])


def test_stop_next_to_the_goal_succeeds_with_reward_and_spl():
    env = embodied.make(OBJECTNAV, num_envs=2, seed=0, obs_terms=("depth", "objectgoal"))
    env.reset(seed=0)
    put_agent_next_to_goal(env, 0)
    env.prev_distance[0] = env.distance_to_goal()[0]
    _, reward, terminated, truncated, info = env.step(torch.stack([STOP, FORWARD]))
    assert bool(info["success"][0]) and bool(terminated[0]) and not bool(terminated[1])
    assert info["distance_to_goal"][0].item() == 0.0
    assert info["reward_terms"]["success"][0].item() == 2.0
    assert reward[0].item() == pytest.approx(2.0 - 0.001)
    assert 0.0 <= info["spl"][0].item() <= 1.0 and info["soft_spl"][0].item() >= info["spl"][0].item()
    assert bool(info["nav_episode_done"][0]) and not bool(info["nav_episode_done"][1])


def test_stop_far_from_the_goal_fails_and_the_distance_reward_tracks_progress():
    env = embodied.make(OBJECTNAV, num_envs=1, seed=1, obs_terms=("gps",))
    env.reset(seed=1)
    start = env.distance_to_goal().clone()
    assert start.item() >= 1.0  # episodes start at least 1 m from the goal region
    total = 0.0
    for _ in range(5):
        _, _, _, _, info = env.step(FORWARD[None])
        total += info["reward_terms"]["distance"].item()
    assert total == pytest.approx((start - env.distance_to_goal()).item(), abs=1e-5)
    _, _, terminated, _, info = env.step(STOP[None])
    assert bool(terminated[0]) and not bool(info["success"][0]) and info["spl"][0].item() == 0.0


def test_extobjnav_keeps_the_house_and_counts_episodes_within_the_trial():
    env = embodied.make(EXTOBJNAV, num_envs=2, seed=0, obs_terms=("objectgoal",))
    env.reset(seed=0)
    houses = env.house_seed.clone()
    metrics = TrialMetrics()
    for episode in range(3):
        put_agent_next_to_goal(env, 0)
        env.prev_distance[0] = env.distance_to_goal()[0]
        _, _, terminated, truncated, info = env.step(torch.stack([STOP, FORWARD]))
        metrics.add(info)
        assert bool(info["nav_episode_done"][0]) and int(info["episode_index"][0]) == episode
        assert bool(info["success"][0]) and not terminated.any() and not truncated.any()
    assert torch.equal(env.house_seed, houses) and int(env.episode_index[0]) == 3
    summary = metrics.summary()
    assert summary["success"] == {0: 1.0, 1: 1.0, 2: 1.0} and summary["count"] == {0: 1.0, 1: 1.0, 2: 1.0}


def test_extobjnav_episodes_end_after_episode_steps_and_the_trial_is_truncated():
    env = embodied.make(EXTOBJNAV, num_envs=1, seed=0, obs_terms=("gps",), episode_steps=4)
    env.max_episode_steps = 10
    env.reset(seed=0)
    done_at, truncated_at = [], None
    for t in range(10):
        _, _, _, truncated, info = env.step(env.random_action())
        if info["nav_episode_done"][0]:
            done_at.append(t)
        if truncated[0]:
            truncated_at = t
    assert done_at[:2] == [3, 7] and truncated_at == 9


def test_held_out_split_uses_held_out_houses():
    env = embodied.make(OBJECTNAV, num_envs=4, seed=0, split="val", obs_terms=("gps",))
    env.reset(seed=0)
    assert set(env.house_seed.tolist()) <= set(house_seeds("val"))
    train = embodied.make(OBJECTNAV, num_envs=4, seed=0, obs_terms=("gps",))
    train.reset(seed=0)
    assert set(train.house_seed.tolist()) <= set(house_seeds("train"))


def test_goal_categories_restrict_the_goals():
    env = embodied.make(OBJECTNAV, num_envs=8, seed=0, goal_categories=("bed",), obs_terms=("objectgoal",))
    obs, _ = env.reset(seed=0)
    assert (obs["objectgoal"] == GOAL_CATEGORIES.index("bed")).all()


def test_semantic_and_depth_observations():
    env = embodied.make(
        OBJECTNAV, num_envs=2, seed=0, obs_terms=("depth", "semantic"), camera={"normalize_depth": True}
    )
    obs, _ = env.reset(seed=0)
    assert obs["depth"].shape == (2, 128, 128, 1) and 0.0 <= obs["depth"].min() and obs["depth"].max() <= 1.0
    assert obs["semantic"].dtype == torch.int32 and len(obs["semantic"].unique()) >= 2


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="unknown goal categories \\['fridge'\\]"):
        embodied.make(OBJECTNAV, goal_categories=("chair", "fridge"))
    with pytest.raises(ValueError, match="obs_terms"):
        embodied.make(OBJECTNAV, obs_terms=("lidar",))
    with pytest.raises(ConfigError, match="did you mean 'success_distance'"):
        embodied.make(OBJECTNAV, sucess_distance=0.5)
    with pytest.raises(ConfigError, match="split"):
        embodied.make(OBJECTNAV, split="test")
    with pytest.raises(ConfigError, match="camera.hfov"):
        embodied.make(OBJECTNAV, camera={"hfov": "wide"})
    env = embodied.make(OBJECTNAV, num_envs=2, obs_terms=("gps",))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=OBJECTNAV):
        env.step(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        env.step(torch.full((2, 4), float("nan")))


def test_habitat_backend_names_what_to_install():
    with pytest.raises((ModuleNotFoundError, NotImplementedError), match="habitat"):
        embodied.make(OBJECTNAV, backend="habitat")
