"""Nav/Darkroom-v0 dynamics: walls clamp, the goal pays, a trial keeps its goal, a new trial draws one."""

from __future__ import annotations

import torch

import embodied
from embodied.tasks.nav.darkroom import ACTION_NAMES, goal_cells


def one_hot(env, names: list[str]) -> torch.Tensor:
    idx = torch.tensor([ACTION_NAMES.index(n) for n in names])
    return torch.nn.functional.one_hot(idx, len(ACTION_NAMES)).float() * 2 - 1


def test_walls_clamp_and_moves():
    env = embodied.make("Nav/Darkroom-v0", num_envs=2, seed=0, random_start=False)
    env.reset(seed=0)
    assert env.pos.tolist() == [[0, 0], [0, 0]]
    env.step(one_hot(env, ["left", "down"]))  # into the walls: stay
    assert env.pos.tolist() == [[0, 0], [0, 0]]
    env.step(one_hot(env, ["right", "up"]))
    assert env.pos.tolist() == [[1, 0], [0, 1]]
    for _ in range(20):
        env.step(one_hot(env, ["right", "up"]))
    assert env.pos.tolist() == [[9, 0], [0, 9]]


def test_goal_reward_and_success():
    env = embodied.make("Nav/Darkroom-v0", num_envs=1, seed=0, random_start=False)
    env.reset(seed=0)
    env.goal[:] = torch.tensor([[1, 0]])
    _, r, *_ = env.step(one_hot(env, ["stay"]))
    assert r.item() == 0.0
    _, r, *_ = env.step(one_hot(env, ["right"]))
    assert r.item() == 1.0
    _, r, *_ = env.step(one_hot(env, ["stay"]))  # staying on the goal keeps paying
    assert r.item() == 1.0
    for _ in range(97):
        _, r, term, trunc, info = env.step(one_hot(env, ["stay"]))
    assert trunc.item() and not term.item()
    assert info["episode_return"].item() == 99.0 and info["success"].item()
    assert info["episode_in_trial"].item() == 0


def test_trial_keeps_goal_across_episodes_and_new_trial_draws_new_goal():
    trial = 3
    env = embodied.make("Nav/Darkroom-v0", num_envs=64, seed=1, trial_episodes=trial)
    obs, _ = env.reset(seed=1)
    assert (obs[:, -1] == 1).all()  # first step of a trial is flagged
    goals, flags = [env.goal.clone()], []
    for episode in range(2 * trial):
        for t in range(100):
            obs, _, _, trunc, info = env.step(env.random_action())
            if t < 99:
                assert not trunc.any() and (obs[:, -1] == 0).all()
        assert trunc.all()
        assert (info["episode_in_trial"] == episode % trial).all()
        assert bool(info["trial_done"].all()) == (episode % trial == trial - 1)
        flags.append(obs[:, -1].clone())
        goals.append(env.goal.clone())
    for episode in range(2 * trial):
        same = torch.equal(goals[episode + 1], goals[episode])
        new_trial = episode % trial == trial - 1
        assert (flags[episode] == float(new_trial)).all()
        if not new_trial:
            assert same
    assert not torch.equal(goals[trial], goals[0])  # 64 envs: some goal changed


def test_goal_sets_are_disjoint_and_used():
    train, heldout = set(goal_cells(10, "train", 5).tolist()), set(goal_cells(10, "heldout", 5).tolist())
    assert not train & heldout and len(train | heldout) == 100 and len(heldout) == 20
    for split, cells in (("train", train), ("heldout", heldout)):
        env = embodied.make("Nav/Darkroom-v0", num_envs=256, seed=0, goals=split)
        env.reset(seed=0)
        drawn = set((env.goal[:, 1] * 10 + env.goal[:, 0]).tolist())
        assert drawn <= cells and len(drawn) > len(cells) // 2


def test_state_dict_continues_identically():
    env = embodied.make("Nav/Darkroom-v0", num_envs=4, seed=2, trial_episodes=2)
    env.reset(seed=2)
    for _ in range(150):
        env.step(env.random_action())
    state = env.state_dict()
    a = [env.step(env.random_action())[0] for _ in range(120)]
    env.load_state_dict(state)
    b = [env.step(env.random_action())[0] for _ in range(120)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_observation_is_the_cell_then_reward_then_trial_flag():
    """Default: DPT's (x, y) state scaled to [-1, 1]; "onehot": the cell's index. No goal in either."""
    for mode, width in (("xy", 4), ("onehot", 102)):
        env = embodied.make("Nav/Darkroom-v0", num_envs=2, seed=0, random_start=False, obs_mode=mode)
        obs, _ = env.reset(seed=0)
        env.goal[:] = torch.tensor([[9, 9], [1, 0]])
        obs, *_ = env.step(one_hot(env, ["right", "right"]))
        assert obs.shape == (2, width)
        if mode == "xy":
            assert torch.allclose(obs[:, :2], torch.tensor([[-1 + 2 / 9, -1.0], [-1 + 2 / 9, -1.0]]))
        else:
            assert obs[:, :100].argmax(dim=1).tolist() == [1, 1] and (obs[:, :100].sum(dim=1) == 1).all()
        assert obs[:, -2].tolist() == [0.0, 1.0] and obs[:, -1].tolist() == [0.0, 0.0]  # env 1 stands on its goal


def test_episodes_start_at_the_corner_unless_random_start():
    """DPT's and ReLIC's Darkroom starts every episode at (0, 0); ``random_start`` draws the cell."""
    for random_start in (False, True):
        env = embodied.make("Nav/Darkroom-v0", num_envs=64, seed=0, random_start=random_start)
        starts = set()
        obs, _ = env.reset(seed=0)
        for _ in range(3 * env.max_episode_steps):  # three episodes each
            starts |= {tuple(xy) for xy in obs[env.episode_length == 0, :2].tolist()}
            obs, *_ = env.step(env.random_action())
        assert (starts == {(-1.0, -1.0)}) != random_start
        assert random_start is False or len(starts) > 50
