"""Actuator bounds and rate limits: a safety layer a policy cannot bypass.

:class:`ActionLimiter` is a pure function object (it keeps no state): given the requested
action and the previously applied one it returns the action that may be applied and a report
of what it changed. The same limiter serves the env wrapper :class:`ActionSafety` and
:class:`~embodied.sim2real.hardware.Hardware`, so a policy meets identical limits in sim and
on the device.

Rules, per env row of the action:

1. A row containing NaN or inf is replaced as a whole by the *safe action* (``"hold"``: the
   previously applied action; ``"zero"``: zero clipped into the bounds) and reported in
   ``nonfinite``; a non-finite value is never passed on.
2. Each element is clipped into ``[low, high]`` (``bound_clipped``).
3. Each element is moved at most ``max_delta`` from the previous applied action
   (``rate_limited``). The previous action is first clipped into the bounds, so both limits
   can always hold together; the bounds win if they ever disagree. The limit holds exactly
   in float32 arithmetic, not just up to rounding.

Where it goes: directly on the env, innermost of the adapters (see
:func:`embodied.sim2real.adapters.wrap`). The action it returns is the action the physics
applies, so no adapter after it (latency, decision rate) can change or repeat an action it has
not seen, and ``max_delta`` is a limit per primitive step, as a motor driver enforces it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium
import numpy as np
import torch

from embodied.sim.env import BatchedEnv, BatchedWrapper
from embodied.sim2real._common import as_action, env_ids_tensor

Bound = float | tuple[float, ...] | None


@dataclass
class SafetyCfg:
    low: Bound = None
    """Lowest allowed value of each action element (one for all, or one per element); None: the action space's."""
    high: Bound = None
    """Highest allowed value of each action element; None: the action space's."""
    max_delta: Bound = None
    """Largest change of each element from one applied action to the next (per primitive step); None: no rate limit."""
    safe_action: Literal["hold", "zero"] = "hold"
    """What replaces an action row containing NaN/inf: the previous applied action, or zero (clipped to the limits)."""
    rate_limit_first: bool = True
    """Rate-limit an episode's first action from zero (an actuator at rest). False lets it jump, e.g. for
    position control, where the reset pose rather than zero is the previous command."""


def _per_element(value: float | tuple[float, ...], shape: tuple[int, ...], name: str, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    if t.dim() == 0:
        return t.expand(shape).clone()
    if t.numel() != int(np.prod(shape)):
        raise ValueError(f"safety {name} has {t.numel()} values, expected 1 or {int(np.prod(shape))} (action shape {shape})")
    return t.reshape(shape).clone()


class ActionLimiter:
    """Clip actions into ``[low, high]``, limit their change to ``max_delta`` and replace NaN/inf rows."""

    def __init__(
        self,
        low: torch.Tensor,
        high: torch.Tensor,
        max_delta: torch.Tensor | None = None,
        safe_action: Literal["hold", "zero"] = "hold",
    ) -> None:
        if low.shape != high.shape or (max_delta is not None and max_delta.shape != low.shape):
            raise ValueError(f"safety limits have different shapes: low {tuple(low.shape)}, high {tuple(high.shape)}"
                             f", max_delta {None if max_delta is None else tuple(max_delta.shape)}")
        if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise ValueError(f"safety bounds must be finite, got low={low.tolist()} high={high.tolist()}")
        if (low > high).any():
            raise ValueError(f"safety low must not exceed high, got low={low.tolist()} high={high.tolist()}")
        if max_delta is not None and (torch.isnan(max_delta).any() or (max_delta <= 0).any()):
            raise ValueError(f"safety max_delta must be positive, got {max_delta.tolist()}")
        if safe_action not in ("hold", "zero"):
            raise ValueError(f"safety safe_action must be 'hold' or 'zero', got {safe_action!r}")
        self.low, self.high, self.max_delta, self.safe_action = low, high, max_delta, safe_action
        self.shape = tuple(low.shape)
        self.zero = torch.zeros_like(low).clamp(low, high)
        """The at-rest action: zero, clipped into the bounds."""

    @classmethod
    def from_cfg(cls, cfg: SafetyCfg, action_space: gymnasium.spaces.Box, device: str | torch.device = "cpu") -> ActionLimiter:
        """Resolve ``cfg`` against an action space; bounds must lie inside it (the env would clip otherwise)."""
        shape = tuple(action_space.shape)
        space_low = torch.as_tensor(action_space.low, dtype=torch.float32, device=device)
        space_high = torch.as_tensor(action_space.high, dtype=torch.float32, device=device)
        low = space_low if cfg.low is None else _per_element(cfg.low, shape, "low", space_low.device)
        high = space_high if cfg.high is None else _per_element(cfg.high, shape, "high", space_low.device)
        if (low < space_low).any() or (high > space_high).any():
            raise ValueError(
                f"safety bounds [{low.tolist()}, {high.tolist()}] must lie within the action space "
                f"[{space_low.tolist()}, {space_high.tolist()}]; narrow them or leave them None"
            )
        delta = None if cfg.max_delta is None else _per_element(cfg.max_delta, shape, "max_delta", space_low.device)
        return cls(low.clone(), high.clone(), delta, cfg.safe_action)

    def limit(
        self,
        action: torch.Tensor,
        prev: torch.Tensor | None = None,
        has_prev: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The safe version of ``action`` (batch, *shape) and a report of every change.

        ``prev`` (batch, *shape) is the previously applied action; ``has_prev`` (batch,) marks the
        rows where it is meaningful (elsewhere the row is not rate-limited and ``"hold"`` holds
        zero). Report: ``nonfinite`` (batch,) rows replaced, ``bound_clipped`` and
        ``rate_limited`` (batch, *shape) masks, their per-row counts ``num_bound_clipped`` and
        ``num_rate_limited``, and ``applied``, the returned action.
        """
        a = torch.as_tensor(action, dtype=torch.float32, device=self.low.device)
        if tuple(a.shape[1:]) != self.shape or a.dim() != len(self.shape) + 1:
            raise ValueError(f"action has shape {tuple(a.shape)}, expected (batch, {', '.join(map(str, self.shape))})")
        batch = a.shape[0]
        row = (batch, *([1] * len(self.shape)))
        if has_prev is None:
            has_prev = torch.full((batch,), prev is not None, dtype=torch.bool, device=a.device)
        if prev is None:
            prev = self.zero.expand_as(a)
        prev = torch.where(has_prev.reshape(row), prev.clamp(self.low, self.high), self.zero)

        nonfinite = ~torch.isfinite(a).reshape(batch, -1).all(1)
        fallback = prev if self.safe_action == "hold" else self.zero.expand_as(a)
        requested = torch.where(nonfinite.reshape(row), fallback, a)

        bounded = requested.clamp(self.low, self.high)
        out = bounded
        if self.max_delta is not None:
            lo = torch.maximum(self.low, prev - self.max_delta)
            hi = torch.minimum(self.high, prev + self.max_delta)
            limited = torch.minimum(torch.maximum(bounded, lo), hi)
            limited = self._exact_rate_limit(limited, prev)
            # An element already within max_delta is left exactly as it is.
            limited = torch.where((bounded - prev).abs() <= self.max_delta, bounded, limited)
            out = torch.where(has_prev.reshape(row), limited, bounded)
        report = {
            "nonfinite": nonfinite,
            "bound_clipped": bounded != requested,
            "rate_limited": out != bounded,
            "applied": out,
        }
        report["num_bound_clipped"] = report["bound_clipped"].reshape(batch, -1).sum(1)
        report["num_rate_limited"] = report["rate_limited"].reshape(batch, -1).sum(1)
        return out, report

    def _exact_rate_limit(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """Nudge ``x`` towards ``prev`` by single ulps where float32 rounding left ``|x - prev|`` above ``max_delta``."""
        assert self.max_delta is not None
        for _ in range(8):
            over = (x - prev).abs() > self.max_delta
            if not over.any():
                break
            x = torch.where(over, torch.nextafter(x, prev), x)
        return x

    def describe(self) -> dict[str, Any]:
        return {
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "max_delta": None if self.max_delta is None else self.max_delta.tolist(),
            "safe_action": self.safe_action,
        }


class ActionSafety(BatchedWrapper):
    """Apply an :class:`ActionLimiter` to every action before the env sees it; report in ``info["safety"]``.

    Keeps the previously applied action per env; an env that resets (``reset`` or autoreset)
    starts again from zero (or unlimited, with ``rate_limit_first=False``). ``totals()``
    counts every intervention since the wrapper was made.
    """

    def __init__(self, env: BatchedEnv, cfg: SafetyCfg) -> None:
        super().__init__(env)
        self.cfg = cfg
        self.limiter = ActionLimiter.from_cfg(cfg, env.single_action_space, env.device)
        n = env.num_envs
        self.prev = self.limiter.zero.expand(n, *self.limiter.shape).clone()
        self.has_prev = torch.full((n,), cfg.rate_limit_first, dtype=torch.bool, device=env.device)
        self._totals = torch.zeros(3, dtype=torch.long, device=env.device)

    def _restart(self, env_ids: torch.Tensor) -> None:
        self.prev[env_ids] = self.limiter.zero
        self.has_prev[env_ids] = self.cfg.rate_limit_first

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None, env_ids: torch.Tensor | None = None):
        out = self.env.reset(seed=seed, options=options, env_ids=env_ids)
        self._restart(env_ids_tensor(self, env_ids))
        return out

    def step(self, actions):
        action = as_action(self, actions, (self.num_envs, *self.limiter.shape))
        safe, report = self.limiter.limit(action, self.prev, self.has_prev)
        obs, reward, terminated, truncated, info = self.env.step(safe)
        self.prev = safe.clone()
        self.has_prev[:] = True
        done = terminated | truncated
        if done.any():
            self._restart(done.nonzero().squeeze(-1))
        self._totals += torch.stack(
            [report["nonfinite"].sum(), report["num_bound_clipped"].sum(), report["num_rate_limited"].sum()]
        )
        return obs, reward, terminated, truncated, {**info, "safety": report}

    def totals(self) -> dict[str, int]:
        """Interventions since the wrapper was made: rows replaced, elements clipped, elements rate-limited."""
        nonfinite, bound, rate = self._totals.tolist()
        return {"nonfinite": nonfinite, "bound_clipped": bound, "rate_limited": rate}

    def _wrapper_state(self) -> dict[str, Any]:
        return {"prev": self.prev.clone(), "has_prev": self.has_prev.clone(), "totals": self._totals.clone()}

    def _load_wrapper_state(self, state: dict[str, Any]) -> None:
        self.prev = state["prev"].clone().to(self.device)
        self.has_prev = state["has_prev"].clone().to(self.device)
        self._totals = state["totals"].clone().to(self.device)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.setdefault("adapter_cfgs", {})["safety"] = {**dataclasses.asdict(self.cfg), "resolved": self.limiter.describe()}
        return out


def merge_safety_reports(total: dict[str, torch.Tensor] | None, new: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Combine the reports of consecutive primitive steps: masks OR, counts add, ``applied`` is the latest."""
    if total is None:
        return dict(new)
    out: dict[str, torch.Tensor] = {}
    for key, value in new.items():
        if value.dtype == torch.bool:
            out[key] = total[key] | value
        elif key.startswith("num_"):
            out[key] = total[key] + value
        else:
            out[key] = value
    return out
