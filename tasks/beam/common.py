"""What the beam tasks share: the simulated machine, declared error parameters, the twin, step info.

A beam task owns a :class:`~embodied.sim.beam.machine.BeamMachine`. Its error magnitudes are
the task's randomisable parameters (names and widest ranges in
:data:`~embodied.sim.beam.errors.ERROR_PARAM_RANGES`), so the domain-randomisation adapter
can change them per env; the task itself redraws the per-element errors from them at every
reset. With ``twin=True`` the task is the 'real machine' twin: its seeds are salted and its
draws include the unmodelled effects of :class:`~embodied.sim.beam.errors.TwinCfg`.

Besides the contract's keys, ``info`` carries per step (values as of the end of the step,
before any autoreset): ``machine_evaluations`` (num_envs,) long, the evaluations of the
current episode including the reset's, ``success`` (num_envs,) bool, and the task's own
diagnostics (orbit RMS, transmission).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from embodied.sim.beam.errors import ERROR_PARAM_RANGES, ErrorsCfg, TwinCfg
from embodied.sim.beam.machine import BeamMachine
from embodied.sim.env import BatchedEnv, RandomizedParam


class BeamTask(BatchedEnv):
    """Base of the beam tasks: machine, error parameters, twin seeding and per-step info."""

    def __init__(self, cfg: Any, num_particles: int = 0, **kwargs: Any) -> None:
        self.twin_cfg: TwinCfg | None = cfg.twin_effects if cfg.twin else None
        if self.twin_cfg is not None and kwargs.get("seed") is not None:
            kwargs["seed"] = int(kwargs["seed"]) ^ self.twin_cfg.seed_salt
        super().__init__(cfg, **kwargs)
        # The machine's own randomness (error draws, read-out noise) comes from ``self.rng``, not
        # ``self.generator``: drawing a random action must not change what the machine does next,
        # so a saved state continues identically under a given action.
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(
            machine_seed(int(torch.randint(2**62, (1,), generator=self.generator, device=self.device)))
        )
        self.machine = BeamMachine(
            cfg.lattice,
            self.num_envs,
            cfg.errors,
            device=self.device,
            twin=self.twin_cfg,
            num_particles=num_particles,
            particle_seed=getattr(cfg, "particle_seed", 0),
        )
        self.lattice = self.machine.lattice
        self._step_info: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ seeding, info
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None, env_ids: torch.Tensor | None = None
    ):
        if seed is not None:
            if self.twin_cfg is not None:
                seed = int(seed) ^ self.twin_cfg.seed_salt
            self.rng.manual_seed(machine_seed(seed))
        return super().reset(seed=seed, options=options, env_ids=env_ids)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rng.set_state(state["rng"])

    def step(self, actions: torch.Tensor | np.ndarray):
        obs, reward, terminated, truncated, info = super().step(actions)
        info.update(self._step_info)  # captured before the autoreset, so it describes the finished step
        return obs, reward, terminated, truncated, info

    @property
    def machine_evaluations(self) -> torch.Tensor:
        """(num_envs,) machine evaluations in each env's current episode (reset probes included)."""
        return self.machine.counter.episode

    @property
    def machine_evaluations_total(self) -> int:
        """Machine evaluations summed over all envs since the env was built."""
        return int(self.machine.counter.total.sum())

    def operator_calibration(self) -> tuple[torch.Tensor, float]:
        """The corrector polarity table and current scale the twin's operators know (identity off-twin)."""
        if self.twin_cfg is None:
            return torch.ones(len(self.machine.corrector_names)), 1.0
        return self.twin_cfg.operator_calibration(len(self.machine.corrector_names))

    # ------------------------------------------------------------------ domain randomisation
    def randomizable_params(self) -> dict[str, RandomizedParam]:
        errors: ErrorsCfg = self.cfg.errors
        return {
            name: RandomizedParam(name, float(getattr(errors, name)), low, high)
            for name, (low, high) in ERROR_PARAM_RANGES.items()
        }

    def set_params(self, env_ids: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            if name not in self.machine.magnitudes:
                raise KeyError(
                    f"{self.task_id}: no randomisable parameter {name!r}; declared: {sorted(ERROR_PARAM_RANGES)}"
                )
            self.machine.magnitudes[name][env_ids] = value.to(self.device, torch.float32)


def machine_seed(seed: int) -> int:
    """The seed of the machine's generator derived from the env seed (a different stream)."""
    return (int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**63


def check_errors_cfg(errors: ErrorsCfg, task_id: str) -> None:
    """Raise ValueError naming the field if an error magnitude leaves its supported range."""
    for name, (low, high) in ERROR_PARAM_RANGES.items():
        value = float(getattr(errors, name))
        if not low <= value <= high:
            raise ValueError(f"{task_id}: errors.{name} = {value} is outside the supported range [{low}, {high}]")


def draw_bars(img: np.ndarray, values: np.ndarray, top: int, bottom: int, colours: tuple) -> None:
    """Signed bars of ``values`` in [-1, 1] between rows ``top`` and ``bottom``, alternating colours."""
    width = img.shape[1]
    mid = (top + bottom) // 2
    cv2.line(img, (0, mid), (width - 1, mid), (0, 0, 0), 1)
    n = max(len(values), 1)
    slot = width / n
    for i, v in enumerate(np.clip(values, -1, 1)):
        x0, x1 = int(i * slot + slot * 0.15), max(int((i + 1) * slot - slot * 0.15), int(i * slot + slot * 0.15) + 1)
        y = int(mid - v * (bottom - top) / 2 * 0.9)
        cv2.rectangle(img, (x0, min(mid, y)), (x1, max(mid, y)), colours[i % len(colours)], -1)
