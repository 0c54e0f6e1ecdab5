"""Small helpers the adapters share: action checks, per-env selection of observations, seeds."""

from __future__ import annotations

import numpy as np
import torch

from embodied.sim.env import BatchedEnv, Obs


def as_action(env: BatchedEnv, actions: torch.Tensor | np.ndarray, *shapes: tuple[int, ...]) -> torch.Tensor:
    """``actions`` as a float tensor on ``env.device`` with one of ``shapes``, or a clear ValueError.

    Only the shape is checked: NaN, inf and out-of-range values pass, because the safety layer
    (innermost) is the one place that decides what to do with them.
    """
    action = torch.as_tensor(actions, dtype=torch.float32, device=env.device)
    if tuple(action.shape) not in shapes:
        expected = " or ".join(str(s) for s in shapes)
        raise ValueError(f"{env.unwrapped.task_id}: action has shape {tuple(action.shape)}, expected {expected}")
    return action


def where_obs(mask: torch.Tensor, a: Obs, b: Obs) -> Obs:
    """Per env: ``a`` where ``mask`` (num_envs,) is true, else ``b`` (tensor or dict observations)."""

    def pick(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.reshape(-1, *([1] * (x.dim() - 1))), x, y)

    if isinstance(a, dict):
        assert isinstance(b, dict)
        return {k: pick(a[k], b[k]) for k in a}
    assert isinstance(b, torch.Tensor)
    return pick(a, b)


def env_ids_tensor(env: BatchedEnv, env_ids: torch.Tensor | None) -> torch.Tensor:
    """The ids a ``reset(env_ids=...)`` call touches, as a long tensor on the env's device."""
    if env_ids is None:
        return env.unwrapped.all_env_ids
    return torch.as_tensor(env_ids, device=env.device).long().reshape(-1)


def derived_seed(seed: int, tag: str) -> int:
    """A well-mixed seed for an adapter's own generator, distinct per ``tag`` for the same ``seed``."""
    words = [int(seed) % 2**63, *tag.encode()]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] % 2**63)
