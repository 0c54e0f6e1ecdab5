"""Observation noise: white Gaussian noise, a per-episode bias, and dropped readings.

For each perturbed element ``x`` of an observation::

    y = x + std * N(0, 1) + bias        bias ~ bias_std * N(0, 1), drawn per env at each reset
    y = fill  with probability dropout  fill: the previous reading of that element ("hold"),
                                        or 0 ("zero")

``"hold"`` (the default) models a sensor driver that repeats its last value when a reading is
missed, the common failure on real buses; ``"zero"`` models one that zero-fills. In ``"hold"``
mode the first observation of an episode is never dropped (there is nothing to hold yet).

Tensor observations are perturbed whole. For dict observations ``keys`` names the entries to
perturb; by default every floating-point entry (integer or boolean entries such as images in
uint8 or contact flags are left alone).

``info["final_obs"]`` is perturbed consistently: for envs that did not finish it is the same
tensor values as ``obs``; for envs that did, it carries the bias of the episode that ended,
while ``obs`` (the next episode's first observation) carries a freshly drawn bias.

Noise comes from the wrapper's own ``torch.Generator``, so wrapping never changes the task's
own random stream; it is reseeded from ``reset(seed=...)`` (and at construction from the
env's seed), so noisy rollouts are reproducible.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium
import numpy as np
import torch

from embodied.sim.env import BatchedEnv, BatchedWrapper, Obs
from embodied.sim2real._common import derived_seed, env_ids_tensor

_TENSOR = ""  # the key under which a tensor observation is handled internally


@dataclass
class NoiseCfg:
    std: float = 0.0
    """Standard deviation of white Gaussian noise added at every step."""
    bias_std: float = 0.0
    """Standard deviation of a constant per-episode offset, drawn per env and element at each reset."""
    dropout: float = 0.0
    """Probability that an element's reading is lost at a step (then it reads ``dropout_fill``)."""
    dropout_fill: Literal["hold", "zero"] = "hold"
    """What a lost reading shows: the previous (noisy) reading, or 0."""
    keys: tuple[str, ...] | None = None
    """Dict observations: the entries to perturb (default: every float entry). Must be None for tensor observations."""


def _float_box(space: gymnasium.Space) -> bool:
    return isinstance(space, gymnasium.spaces.Box) and np.issubdtype(space.dtype, np.floating)


class ObservationNoise(BatchedWrapper):
    """Perturb observations (and ``info["final_obs"]``) with Gaussian noise, per-episode bias and dropout."""

    def __init__(self, env: BatchedEnv, cfg: NoiseCfg) -> None:
        for name in ("std", "bias_std"):
            value = getattr(cfg, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"noise {name} must be a finite number >= 0, got {value!r}")
        if not 0.0 <= cfg.dropout <= 1.0:
            raise ValueError(f"noise dropout is a probability and must lie in [0, 1], got {cfg.dropout!r}")
        if cfg.dropout_fill not in ("hold", "zero"):
            raise ValueError(f"noise dropout_fill must be 'hold' or 'zero', got {cfg.dropout_fill!r}")
        super().__init__(env)
        self.cfg = cfg
        self.keys = self._resolve_keys(env.single_observation_space, cfg.keys)
        self.generator = torch.Generator(device=env.device)
        self.generator.manual_seed(derived_seed(env.unwrapped.generator.initial_seed(), "noise"))
        self.bias = {k: torch.zeros(env.num_envs, *shape, device=env.device) for k, shape in self.keys.items()}
        self.last: dict[str, torch.Tensor] | None = None
        """The latest noisy reading of each perturbed entry, held by ``"hold"`` dropout."""

    def set_std(self, std: float) -> None:
        """Change the white noise's standard deviation from the next observation on (the viewer's live control)."""
        if not np.isfinite(std) or std < 0:
            raise ValueError(f"noise std must be a finite number >= 0, got {std!r}")
        self.cfg = dataclasses.replace(self.cfg, std=float(std))

    @staticmethod
    def _resolve_keys(space: gymnasium.Space, keys: tuple[str, ...] | None) -> dict[str, tuple[int, ...]]:
        if isinstance(space, gymnasium.spaces.Dict):
            floats = [k for k, s in space.spaces.items() if _float_box(s)]
            if keys is None:
                return {k: tuple(space[k].shape) for k in floats}
            for k in keys:
                if k not in space.spaces:
                    raise ValueError(f"noise key {k!r} is not an observation entry; entries: {list(space.spaces)}")
                if k not in floats:
                    raise ValueError(f"noise key {k!r} is not a float tensor ({space[k]}); float entries: {floats}")
            return {k: tuple(space[k].shape) for k in keys}
        if keys is not None:
            raise ValueError(f"noise keys={keys!r} apply to dict observations; this observation is a tensor, leave keys None")
        if not _float_box(space):
            raise ValueError(f"noise needs float observations, got {space}")
        return {_TENSOR: tuple(space.shape)}

    # ------------------------------------------------------------------ observation plumbing
    def _select(self, obs: Obs) -> dict[str, torch.Tensor]:
        if isinstance(obs, dict):
            return {k: obs[k] for k in self.keys}
        return {_TENSOR: obs}

    def _merge(self, obs: Obs, noisy: dict[str, torch.Tensor]) -> Obs:
        if isinstance(obs, dict):
            return {**obs, **noisy}
        return noisy[_TENSOR]

    @property
    def _identity(self) -> bool:
        c = self.cfg
        return c.std == 0 and c.bias_std == 0 and c.dropout == 0

    def _draw_bias(self, env_ids: torch.Tensor) -> None:
        if self.cfg.bias_std == 0:
            return
        for b in self.bias.values():
            shape = (len(env_ids), *b.shape[1:])
            b[env_ids] = self.cfg.bias_std * torch.randn(shape, generator=self.generator, device=b.device)

    def _perturb(self, clean: dict[str, torch.Tensor], env_ids: torch.Tensor, held: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """Noisy readings of ``clean`` (entries of envs ``env_ids``); ``held`` are their previous readings, if any."""
        c, out = self.cfg, {}
        for k, x in clean.items():
            y = x
            if c.std > 0:
                y = y + c.std * torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
            if c.bias_std > 0:
                y = y + self.bias[k][env_ids].to(x.dtype)
            if c.dropout > 0 and (held is not None or c.dropout_fill == "zero"):
                lost = torch.rand(x.shape, generator=self.generator, device=x.device) < c.dropout
                fill = torch.zeros_like(y) if c.dropout_fill == "zero" else held[k]  # type: ignore[index]
                y = torch.where(lost, fill, y)
            out[k] = y
        return out

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None, env_ids: torch.Tensor | None = None):
        if seed is not None:
            self.generator.manual_seed(derived_seed(seed, "noise"))
        obs, info = self.env.reset(seed=seed, options=options, env_ids=env_ids)
        if self._identity:
            return obs, info
        ids = env_ids_tensor(self, env_ids)
        self._draw_bias(ids)
        fresh = self._perturb({k: v[ids] for k, v in self._select(obs).items()}, ids, None)
        if self.last is None or len(ids) == self.num_envs:
            noisy = fresh
        else:  # envs not reset keep showing their latest reading
            noisy = {k: v.clone() for k, v in self.last.items()}
            for k in noisy:
                noisy[k][ids] = fresh[k]
        self.last = noisy
        return self._merge(obs, noisy), info

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        if self._identity:
            return obs, reward, terminated, truncated, info
        everyone = self.unwrapped.all_env_ids
        final = self._perturb(self._select(info["final_obs"]), everyone, self.last)
        noisy = final
        done = terminated | truncated
        if done.any():
            ids = done.nonzero().squeeze(-1)
            self._draw_bias(ids)
            fresh = self._perturb({k: v[ids] for k, v in self._select(obs).items()}, ids, None)
            noisy = {k: v.clone() for k, v in final.items()}
            for k in noisy:
                noisy[k][ids] = fresh[k]
        self.last = noisy
        info = {**info, "final_obs": self._merge(info["final_obs"], final)}
        return self._merge(obs, noisy), reward, terminated, truncated, info

    def _wrapper_state(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "bias": {k: v.clone() for k, v in self.bias.items()},
            "last": None if self.last is None else {k: v.clone() for k, v in self.last.items()},
        }

    def _load_wrapper_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.bias = {k: v.clone().to(self.device) for k, v in state["bias"].items()}
        self.last = None if state["last"] is None else {k: v.clone().to(self.device) for k, v in state["last"].items()}

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.setdefault("adapter_cfgs", {})["noise"] = dataclasses.asdict(self.cfg)
        return out
