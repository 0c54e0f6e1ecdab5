"""Beam/OrbitCorrection-CM{1,2,3}-v0: steer the beam onto the axis of a CAFe II-style cryomodule.

Task
    A 40Ar12+ beam crosses a cryomodule of superconducting solenoids whose transverse offsets
    kick it off axis. Each step the agent changes every corrector current by at most
    ``max_step_A`` (action in [-1, 1] per corrector, H then V per solenoid, scaled by
    ``max_step_A``; absolute currents are clipped to the lattice's ``max_current_A``) and reads
    the BPMs. This follows TBSAC (arXiv 2305.13869): reset reads the BPMs with all correctors
    at 0 A, then applies a probe step of ``probe_step_A`` on every corrector and reads again,
    so the first observation already holds a trend (two machine evaluations).
Observation (``obs_mode="trend"``, TBSAC's)
    ``[dS(t-1), dS(t), S(t)]``, each of length ``2 n_bpms`` (x/y interleaved:
    ``x1, y1, x2, y2, ...``), concatenated in that order: ``6 n_bpms`` numbers, mm. ``S`` are
    the BPM readings as read (noise and BPM offsets included), clipped to +-``bpm_range_mm``;
    ``dS(t) = S(t) - S(t-1)``. The layout works for any number of BPMs (reshape to
    ``(3, 2 n_bpms)``). ``obs_mode="readings"`` gives ``[S(t), I(t) / I_max]`` instead.
Reward (terms in ``info["reward_terms"]``)
    ``rms``: -RMS(S) in mm; ``trend``: ``trend_weight`` x (+1/n for each reading whose
    magnitude shrank, -4/n for each that grew, n = 2 n_bpms); ``success``: ``50 + 3 x steps
    left`` when RMS(S) < ``success_rms_mm``.
Randomised
    At every reset, per solenoid: transverse offset U(+-3 mm) and field error U(+-5 %); the
    magnitudes of every error family (offsets, field, BPM noise and offsets, corrector scale
    and polarity, injection) are declared parameters the DR adapter may change per env.
Success
    RMS of the BPM readings below ``success_rms_mm`` (0.5 mm): the episode terminates. It is
    truncated after 50 steps. ``info`` also has ``orbit_rms_mm`` (RMS as read),
    ``true_orbit_rms_mm`` (beam positions without BPM noise and offsets), ``success`` and
    ``machine_evaluations``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium
import numpy as np
import torch

from embodied.sim.beam.errors import ErrorsCfg, TwinCfg
from embodied.sim.env import TaskCfg
from embodied.tasks.beam.common import BeamTask, check_errors_cfg, draw_bars


@dataclass
class OrbitCorrectionCfg(TaskCfg):
    lattice: str = "cm1"
    """Shipped lattice name (assets/beam/<name>.json) or a path to a lattice file."""
    twin: bool = False
    """Be the 'real machine' twin: salted seeds plus ``twin_effects`` (for zero-shot evaluation only)."""
    twin_effects: TwinCfg = field(default_factory=TwinCfg)
    errors: ErrorsCfg = field(default_factory=ErrorsCfg)
    """Error magnitudes drawn at every reset (TBSAC's training set-up by default)."""
    obs_mode: Literal["trend", "readings"] = "trend"
    max_step_A: float = 1.0
    """Largest corrector change per step (A); the action's [-1, 1] is scaled by it."""
    probe_step_A: float = 0.3
    """Change applied to every corrector at reset so that the first observation has a trend."""
    bpm_range_mm: float = 20.0
    """BPM read-outs saturate here (the beam pipe radius)."""
    success_rms_mm: float = 0.5
    trend_weight: float = 0.4
    shrink_reward: float = 1.0
    grow_penalty: float = 4.0
    success_bonus: float = 50.0
    bonus_per_step_left: float = 3.0


class OrbitCorrectionEnv(BeamTask):
    default_max_episode_steps = 50

    def __init__(self, cfg: OrbitCorrectionCfg, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        check_errors_cfg(cfg.errors, self.task_id)
        if cfg.max_step_A <= 0 or cfg.bpm_range_mm <= 0 or cfg.success_rms_mm <= 0:
            raise ValueError(f"{self.task_id}: max_step_A, bpm_range_mm and success_rms_mm must be > 0")
        m = self.machine
        self.n_correctors = len(m.corrector_names)
        self.n_readings = 2 * len(self.lattice.bpm_names)
        if self.n_readings == 0 or self.n_correctors == 0:
            raise ValueError(
                f"{self.task_id}: lattice {self.lattice.name!r} needs BPMs and correctors for orbit correction"
            )
        r, n = cfg.bpm_range_mm, self.n_readings
        if cfg.obs_mode == "trend":
            high = np.concatenate([np.full(2 * n, 2 * r), np.full(n, r)]).astype(np.float32)
        else:
            high = np.concatenate([np.full(n, r), np.ones(self.n_correctors)]).astype(np.float32)
        self._set_spaces(
            gymnasium.spaces.Box(-high, high, dtype=np.float32),
            gymnasium.spaces.Box(-1.0, 1.0, shape=(self.n_correctors,), dtype=np.float32),
        )
        z = torch.zeros(self.num_envs, n, device=self.device)
        self.currents = torch.zeros(self.num_envs, self.n_correctors, device=self.device)
        self.readings, self.prev_readings = z.clone(), z.clone()
        self.delta, self.prev_delta = z.clone(), z.clone()
        self.true_readings = z.clone()

    # ------------------------------------------------------------------ machine access
    def _read(self, env_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One machine evaluation of envs ``env_ids`` (all by default) at their current settings."""
        m = self.machine
        ids = self.all_env_ids if env_ids is None else env_ids
        if env_ids is None:
            read, true = m.read_orbit(self.currents, self.rng)
        else:
            read, true = m.read_orbit(self.currents[ids], self.rng, env_ids=ids)
        r = self.cfg.bpm_range_mm
        return read.clamp(-r, r), true

    def _reset_envs(self, env_ids: torch.Tensor) -> None:
        self.machine.redraw(env_ids, self.rng)
        self.machine.counter.new_episode(env_ids)
        self.currents[env_ids] = 0.0
        first, _ = self._read(env_ids)
        limits = self.machine.corrector_limits
        self.currents[env_ids] = torch.clamp(self.cfg.probe_step_A + self.currents[env_ids], -limits, limits)
        second, true = self._read(env_ids)
        self.prev_readings[env_ids] = first
        self.readings[env_ids] = second
        self.true_readings[env_ids] = true
        self.prev_delta[env_ids] = 0.0
        self.delta[env_ids] = second - first

    def _apply_action(self, action: torch.Tensor) -> None:
        limits = self.machine.corrector_limits
        self.currents = torch.clamp(self.currents + action * self.cfg.max_step_A, -limits, limits)
        read, true = self._read()
        self.prev_readings, self.prev_delta = self.readings, self.delta
        self.readings, self.true_readings = read, true
        self.delta = read - self.prev_readings

    def _observe(self) -> torch.Tensor:
        if self.cfg.obs_mode == "trend":
            return torch.cat([self.prev_delta, self.delta, self.readings], dim=-1)
        return torch.cat([self.readings, self.currents / self.machine.corrector_limits], dim=-1)

    def _reward_and_termination(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        c = self.cfg
        rms = self.readings.square().mean(-1).sqrt()
        change = self.readings.abs() - self.prev_readings.abs()
        n = self.n_readings
        trend = (c.shrink_reward * (change < 0).sum(-1) - c.grow_penalty * (change > 0).sum(-1)) / n
        success = rms < c.success_rms_mm
        steps_left = (self.max_episode_steps - (self.episode_length + 1)).clamp(min=0)
        bonus = (c.success_bonus + c.bonus_per_step_left * steps_left) * success
        self._step_info = {
            "machine_evaluations": self.machine.counter.episode.clone(),
            "orbit_rms_mm": rms,
            "true_orbit_rms_mm": self.true_readings.square().mean(-1).sqrt(),
            "success": success,
        }
        terms = {"rms": -rms, "trend": c.trend_weight * trend.float(), "success": bonus.float()}
        return terms, success

    # ------------------------------------------------------------------ state, render
    def _sim_state(self) -> dict[str, Any]:
        names = ("currents", "readings", "prev_readings", "delta", "prev_delta", "true_readings")
        return {"machine": self.machine.state_dict(), **{n: getattr(self, n).clone() for n in names}}

    def _load_sim_state(self, state: dict[str, Any]) -> None:
        self.machine.load_state_dict(state["machine"])
        for name, value in state.items():
            if name != "machine":
                setattr(self, name, value.clone().to(self.device))

    def _render_env(self, env_id: int, width: int, height: int) -> np.ndarray:
        """BPM readings (x red, y blue) in the top half, corrector currents in the bottom half."""
        img = np.full((height, width, 3), 255, dtype=np.uint8)
        half = height // 2
        draw_bars(
            img, self.readings[env_id].cpu().numpy() / self.cfg.bpm_range_mm, 0, half, ((204, 60, 60), (60, 60, 204))
        )
        lim = self.machine.corrector_limits.cpu().numpy()
        draw_bars(img, self.currents[env_id].cpu().numpy() / lim, half, height, ((90, 160, 90), (160, 120, 60)))
        return img
