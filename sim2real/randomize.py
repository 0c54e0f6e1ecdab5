"""Domain randomisation at every reset, over the parameters a task declares.

A task lists what may be randomised in ``env.unwrapped.randomizable_params()`` (name ->
:class:`~embodied.sim.env.RandomizedParam` with the widest supported range). The config asks
for a sub-range per name; each time envs are reset (``reset``, partial resets and autoresets
alike) every named parameter is drawn uniformly from its range, per env, and set with
``env.unwrapped.set_params``. So no task hard-codes a range, and no adapter an index.

The draw is a hook in ``env.unwrapped.reset_hooks``, which the base env calls with the env ids
before the task's own reset, and it uses the env's ``generator``: ``reset(seed=...)`` makes
the drawn parameters, like the initial states, reproducible. Parameters are drawn in sorted
name order, so the stream does not depend on the order of the config's dict.

The wrapper neither changes actions nor observations, so its place in the stack does not
matter; :func:`~embodied.sim2real.adapters.wrap` puts it innermost. Parameters set before
the first reset are the nominal ones: reset after wrapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from embodied.sim.env import BatchedEnv, BatchedWrapper, RandomizedParam


@dataclass
class RandomizeCfg:
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Parameter name -> (low, high) drawn uniformly at each reset; low == high pins a value."""


def check_ranges(ranges: dict[str, tuple[float, float]], declared: dict[str, RandomizedParam], task_id: str) -> None:
    """Raise ValueError unless every range names a declared parameter and lies inside its supported range."""
    unknown = sorted(set(ranges) - set(declared))
    if unknown:
        listing = ", ".join(f"{n} [{p.low}, {p.high}]" for n, p in sorted(declared.items())) or "none"
        raise ValueError(f"{task_id} has no randomisable parameter {unknown}; it declares: {listing}")
    for name, bounds in ranges.items():
        if len(bounds) != 2:
            raise ValueError(f"randomize range for {name!r} must be (low, high), got {bounds!r}")
        lo, hi = float(bounds[0]), float(bounds[1])
        p = declared[name]
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError(f"randomize range for {name!r} must be finite with low <= high, got ({lo}, {hi})")
        if lo < p.low or hi > p.high:
            raise ValueError(
                f"randomize range for {name!r} ({lo}, {hi}) leaves the range {task_id} supports, [{p.low}, {p.high}]"
            )


class DomainRandomization(BatchedWrapper):
    """Draw the configured parameters per env at every reset; ``values`` holds the current ones."""

    def __init__(self, env: BatchedEnv, cfg: RandomizeCfg) -> None:
        base = env.unwrapped
        declared = base.randomizable_params()
        check_ranges(cfg.ranges, declared, base.task_id)
        super().__init__(env)
        self.cfg = cfg
        self.names = sorted(cfg.ranges)
        lows = [float(cfg.ranges[n][0]) for n in self.names]
        highs = [float(cfg.ranges[n][1]) for n in self.names]
        self._low = torch.tensor(lows, device=env.device)
        self._high = torch.tensor(highs, device=env.device)
        self.values = {n: torch.full((env.num_envs,), declared[n].nominal, device=env.device) for n in self.names}
        """The value of each randomised parameter per env (nominal until the first reset)."""
        base.reset_hooks.append(self._on_reset)

    def _on_reset(self, env_ids: torch.Tensor) -> None:
        if not self.names:
            return
        base = self.unwrapped
        u = torch.rand((len(self.names), len(env_ids)), generator=base.generator, device=base.device)
        drawn = (self._low[:, None] + u * (self._high - self._low)[:, None]).clamp(self._low[:, None], self._high[:, None])
        new = dict(zip(self.names, drawn, strict=True))
        base.set_params(env_ids, new)
        for name, value in new.items():
            self.values[name][env_ids] = value

    def close(self, **kwargs: Any) -> None:
        hooks = self.unwrapped.reset_hooks
        if self._on_reset in hooks:
            hooks.remove(self._on_reset)
        super().close(**kwargs)

    def _wrapper_state(self) -> dict[str, Any]:
        return {"values": {k: v.clone() for k, v in self.values.items()}}

    def _load_wrapper_state(self, state: dict[str, Any]) -> None:
        self.values = {k: v.clone().to(self.device) for k, v in state["values"].items()}
        if self.values:  # tasks that keep parameters out of their sim state get them back here
            self.unwrapped.set_params(self.unwrapped.all_env_ids, self.values)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        ranges = {k: list(v) for k, v in self.cfg.ranges.items()}
        out.setdefault("adapter_cfgs", {})["randomize"] = {"ranges": ranges}
        return out
