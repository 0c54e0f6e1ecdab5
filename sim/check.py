"""A spec checker for batched torch envs (Gymnasium's ``check_env`` is NumPy-only).

``check_batched_env(env)`` raises AssertionError with a message naming the task and the
broken rule. It checks shapes, dtypes and devices, reward terms, action validation,
same-step autoreset, partial resets and (where supported) state save/restore.
"""

from __future__ import annotations

import numpy as np
import torch

from embodied.sim.env import BatchedEnv, map_obs


def _obs_items(obs) -> list[tuple[str, torch.Tensor]]:
    return list(obs.items()) if isinstance(obs, dict) else [("obs", obs)]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for (_, x), (_, y) in zip(_obs_items(a), _obs_items(b), strict=True))


def check_batched_env(env: BatchedEnv, steps: int = 8) -> None:
    """Check ``env`` against the batched contract (see ``embodied.sim.env``)."""
    tid, n, dev = env.task_id, env.num_envs, env.device
    assert n >= 2, f"{tid}: check with num_envs >= 2 to exercise partial resets"
    assert env.metadata.get("autoreset_mode") is not None, f"{tid}: metadata must state autoreset_mode"
    assert env.action_space.shape == (n, *env.single_action_space.shape), f"{tid}: batched action space shape"

    obs, info = env.reset(seed=0)
    assert isinstance(info, dict), f"{tid}: reset must return (obs, info)"
    for key, value in _obs_items(obs):
        space = env.single_observation_space[key] if isinstance(obs, dict) else env.single_observation_space
        assert isinstance(value, torch.Tensor), f"{tid}: observation {key} must be a torch tensor"
        assert value.device.type == dev.type, f"{tid}: observation {key} on {value.device}, env on {dev}"
        assert tuple(value.shape) == (n, *space.shape), f"{tid}: observation {key} shape {tuple(value.shape)} != {(n, *space.shape)}"
        assert space.contains(value[0].cpu().numpy().astype(space.dtype)), f"{tid}: observation {key} outside its space"

    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.random_action())
        assert reward.shape == (n,) and reward.dtype == torch.float32, f"{tid}: reward must be float32 (num_envs,)"
        assert reward.device.type == dev.type, f"{tid}: reward on the wrong device"
        assert torch.isfinite(reward).all(), f"{tid}: non-finite reward"
        for name, flag in (("terminated", terminated), ("truncated", truncated)):
            assert flag.shape == (n,) and flag.dtype == torch.bool, f"{tid}: {name} must be bool (num_envs,)"
        assert not (terminated & truncated).any(), f"{tid}: an env is both terminated and truncated"
        for key in ("final_obs", "episode_return", "episode_length", "reward_terms"):
            assert key in info, f"{tid}: info lacks {key!r}"
        terms = info["reward_terms"]
        if terms:
            total = torch.stack(list(terms.values())).sum(0)
            assert torch.allclose(total, reward, atol=1e-5), f"{tid}: reward terms do not sum to the reward"

    # Action validation: wrong shape, NaN and inf are refused with the task's name.
    good = env.random_action()
    for bad, what in ((good[:1], "shape"), (good.clone().fill_(float("nan")), "NaN"), (good.clone().fill_(float("inf")), "inf")):
        try:
            env.step(bad)
        except ValueError as err:
            assert tid in str(err), f"{tid}: the {what} error should name the task: {err}"
        else:
            raise AssertionError(f"{tid}: a {what} action was accepted")

    # Same-step autoreset: on the truncating step, obs is the next episode's first observation.
    saved_limit = env.max_episode_steps
    env.max_episode_steps = 3
    env.reset(seed=1)
    for _ in range(3):
        obs, _, terminated, truncated, info = env.step(env.random_action())
    done = terminated | truncated
    assert done.all(), f"{tid}: all envs should be done after max_episode_steps"
    assert (info["episode_length"][truncated] == 3).all(), f"{tid}: episode_length at truncation"
    assert (env.unwrapped.episode_length == 0).all(), f"{tid}: finished envs must be reset in the same step"
    assert not _same(obs, info["final_obs"]), f"{tid}: obs after autoreset equals the final observation"
    env.max_episode_steps = saved_limit

    # A partial reset leaves the other envs untouched.
    obs, _ = env.reset(seed=2)
    obs, *_ = env.step(env.random_action())
    before = map_obs(obs, lambda x: x[1:].clone())
    after, _ = env.reset(env_ids=torch.tensor([0], device=dev))
    assert _same(before, map_obs(after, lambda x: x[1:])), f"{tid}: reset(env_ids=[0]) changed other envs"

    # Saved state continues identically, where the task supports it.
    try:
        state = env.state_dict()
    except NotImplementedError:
        return
    action = env.random_action()
    first = env.step(action)
    env.load_state_dict(state)
    second = env.step(action)
    assert _same(first[0], second[0]) and torch.equal(first[1], second[1]), f"{tid}: state_dict round trip diverged"


def check_render(env: BatchedEnv) -> np.ndarray:
    frame = env.render(0, width=64, height=48)
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8, f"{env.task_id}: render must give uint8"
    assert frame.shape == (48, 64, 3), f"{env.task_id}: render shape {frame.shape} != (48, 64, 3)"
    assert frame.std() > 0, f"{env.task_id}: rendered frame is constant"
    return frame
