"""Beam/RFQTransmission-LPI-v0: tune a LEBT's solenoids and steerers for RFQ transmission.

Task
    A 35 keV proton beam leaves the source with an injection error (offset and tilt) and
    crosses a LEBT of two solenoids with built-in steerers (offset and field errors) to the
    RFQ. The beam is 1000 macro-particles per env (``num_particles``) tracked by cheetah; the
    transmission is the fraction inside the RFQ's aperture and acceptance ellipses (see
    ``embodied.sim.beam.rfq``). Each step the agent changes every knob by at most its step
    (action in [-1, 1]: steerers ``STH1, STV1, STH2, STV2`` scaled by ``steerer_step_A``, then
    solenoids ``SOL1, SOL2`` by ``solenoid_step_A``), within the lattice's current limits. Reset
    starts from the design settings, reads, applies a probe step of ``probe_step_A`` to every
    steerer and reads again (two machine evaluations), so the first observation has a trend.
Observation (what operators read)
    ``[current monitors (mA), Faraday cup (mA), transmission read = cup / last monitor,
    its change since the last reading, BPM x/y (mm, interleaved), knob settings normalised to
    [-1, 1] (steerers I / I_max, solenoids 2 I / I_max - 1)]``: 14 numbers for the LPI lattice.
Reward (terms in ``info["reward_terms"]``)
    ``transmission``: read transmission - 1; ``improvement``: ``improvement_weight`` x its
    change; ``success``: ``success_bonus + bonus_per_step_left`` x steps left on success.
Randomised
    At every reset: injection offset U(+-1.2 mm) and angle U(+-6 mrad) per plane, solenoid
    offsets U(+-1 mm), field errors U(+-5 %), current-monitor noise 0.5 %; all magnitudes
    are declared parameters the DR adapter may change per env.
Success
    Read transmission >= ``success_transmission`` (0.85): the episode terminates; truncated
    after 50 steps. ``info`` has ``transmission`` (true), ``transmission_reading``,
    ``success`` and ``machine_evaluations``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import torch

from embodied.sim.beam.errors import ErrorsCfg, TwinCfg
from embodied.sim.env import TaskCfg
from embodied.tasks.beam.common import BeamTask, check_errors_cfg, draw_bars


def _lebt_errors() -> ErrorsCfg:
    return ErrorsCfg(
        solenoid_offset_mm=1.0,
        solenoid_field_error=0.05,
        injection_offset_mm=1.2,
        injection_angle_mrad=6.0,
        current_noise_rel=0.005,
    )


@dataclass
class RFQTransmissionCfg(TaskCfg):
    lattice: str = "lpi"
    """Shipped lattice name or path; it needs solenoids, an 'rfq' element and a current monitor."""
    twin: bool = False
    """Be the 'real machine' twin: salted seeds plus ``twin_effects`` (for zero-shot evaluation only)."""
    twin_effects: TwinCfg = field(default_factory=TwinCfg)
    errors: ErrorsCfg = field(default_factory=_lebt_errors)
    num_particles: int = 1000
    """Macro-particles per env (the same source sample for every env and step)."""
    particle_seed: int = 0
    steerer_step_A: float = 1.0
    solenoid_step_A: float = 5.0
    probe_step_A: float = 0.3
    bpm_range_mm: float = 40.0
    success_transmission: float = 0.85
    improvement_weight: float = 2.0
    success_bonus: float = 10.0
    bonus_per_step_left: float = 0.5


class RFQTransmissionEnv(BeamTask):
    default_max_episode_steps = 50

    def __init__(self, cfg: RFQTransmissionCfg, **kwargs: Any) -> None:
        if cfg.num_particles < 1:
            raise ValueError(f"RFQTransmission: num_particles must be >= 1, got {cfg.num_particles}")
        super().__init__(cfg, num_particles=cfg.num_particles, **kwargs)
        check_errors_cfg(cfg.errors, self.task_id)
        m = self.machine
        if m.model.rfq is None or "current_monitor" not in m.model.part_ends:
            raise ValueError(
                f"{self.task_id}: lattice {self.lattice.name!r} needs an 'rfq' element and a current monitor"
            )
        self.nc, self.ns = len(m.corrector_names), len(m.solenoid_names)
        self.n_monitors = m.model.part_ends.count("current_monitor")
        self.n_bpm_readings = 2 * len(self.lattice.bpm_names)
        self.knob_names = m.corrector_names + m.solenoid_names
        i0 = self.lattice.beam.current_A * 1e3
        r = cfg.bpm_range_mm
        low = [0.0] * (self.n_monitors + 1) + [0.0, -1.5] + [-r] * self.n_bpm_readings + [-1.0] * (self.nc + self.ns)
        high = [2 * i0] * (self.n_monitors + 1) + [1.5, 1.5] + [r] * self.n_bpm_readings + [1.0] * (self.nc + self.ns)
        self._set_spaces(
            gymnasium.spaces.Box(np.array(low, np.float32), np.array(high, np.float32), dtype=np.float32),
            gymnasium.spaces.Box(-1.0, 1.0, shape=(self.nc + self.ns,), dtype=np.float32),
        )
        self.step_size = torch.tensor(
            [cfg.steerer_step_A] * self.nc + [cfg.solenoid_step_A] * self.ns, device=self.device
        )
        self.design_solenoid = torch.tensor(m.model.solenoid_design_current_A, device=self.device)
        n = self.num_envs
        self.steerers = torch.zeros(n, self.nc, device=self.device)
        self.solenoids = self.design_solenoid.expand(n, -1).clone()
        self.monitors = torch.zeros(n, self.n_monitors, device=self.device)
        self.cup = torch.zeros(n, device=self.device)
        self.t_read = torch.zeros(n, device=self.device)
        self.t_prev = torch.zeros(n, device=self.device)
        self.t_true = torch.zeros(n, device=self.device)
        self.bpm = torch.zeros(n, self.n_bpm_readings, device=self.device)

    # ------------------------------------------------------------------ machine access
    def _read(self, env_ids: torch.Tensor | None = None) -> None:
        """One machine evaluation of envs ``env_ids`` (all by default); stores the read-outs."""
        ids = self.all_env_ids if env_ids is None else env_ids
        out, result = self.machine.read_transmission(self.steerers[ids], self.solenoids[ids], self.rng, env_ids)
        r = self.cfg.bpm_range_mm
        i0 = self.lattice.beam.current_A * 1e3
        self.monitors[ids] = out["monitors_mA"].clamp(0.0, 2 * i0)
        self.cup[ids] = out["faraday_cup_mA"].clamp(0.0, 2 * i0)
        self.t_prev[ids] = self.t_read[ids]
        self.t_read[ids] = (self.cup[ids] / self.monitors[ids, -1].clamp(min=1e-3 * i0)).clamp(0.0, 1.5)
        self.t_true[ids] = result.transmission
        self.bpm[ids] = out["bpm_mm"].clamp(-r, r)

    def _reset_envs(self, env_ids: torch.Tensor) -> None:
        self.machine.redraw(env_ids, self.rng)
        self.machine.counter.new_episode(env_ids)
        self.steerers[env_ids] = 0.0
        self.solenoids[env_ids] = self.design_solenoid
        self._read(env_ids)
        limits = self.machine.corrector_limits
        self.steerers[env_ids] = torch.clamp(self.steerers[env_ids] + self.cfg.probe_step_A, -limits, limits)
        self._read(env_ids)

    def _apply_action(self, action: torch.Tensor) -> None:
        delta = action * self.step_size
        limits = self.machine.corrector_limits
        self.steerers = torch.clamp(self.steerers + delta[:, : self.nc], -limits, limits)
        self.solenoids = torch.minimum(
            torch.clamp(self.solenoids + delta[:, self.nc :], min=0.0), self.machine.solenoid_limits
        )
        self._read()

    def _observe(self) -> torch.Tensor:
        knobs = torch.cat(
            [self.steerers / self.machine.corrector_limits, 2 * self.solenoids / self.machine.solenoid_limits - 1], -1
        )
        trend = (self.t_read - self.t_prev).clamp(-1.5, 1.5)
        return torch.cat(
            [self.monitors, self.cup[:, None], self.t_read[:, None], trend[:, None], self.bpm, knobs], dim=-1
        )

    def _reward_and_termination(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        c = self.cfg
        success = self.t_read >= c.success_transmission
        steps_left = (self.max_episode_steps - (self.episode_length + 1)).clamp(min=0)
        self._step_info = {
            "machine_evaluations": self.machine.counter.episode.clone(),
            "transmission": self.t_true.clone(),
            "transmission_reading": self.t_read.clone(),
            "success": success,
        }
        terms = {
            "transmission": self.t_read - 1.0,
            "improvement": c.improvement_weight * (self.t_read - self.t_prev),
            "success": ((c.success_bonus + c.bonus_per_step_left * steps_left) * success).float(),
        }
        return terms, success

    # ------------------------------------------------------------------ state, render
    _STATE = ("steerers", "solenoids", "monitors", "cup", "t_read", "t_prev", "t_true", "bpm")

    def _sim_state(self) -> dict[str, Any]:
        return {"machine": self.machine.state_dict(), **{n: getattr(self, n).clone() for n in self._STATE}}

    def _load_sim_state(self, state: dict[str, Any]) -> None:
        self.machine.load_state_dict(state["machine"])
        for name in self._STATE:
            setattr(self, name, state[name].clone().to(self.device))

    def _render_env(self, env_id: int, width: int, height: int) -> np.ndarray:
        """Transmission (read, true) and BPMs in the top half, knob settings in the bottom half."""
        img = np.full((height, width, 3), 255, dtype=np.uint8)
        half = height // 2
        top = np.concatenate(
            [
                [float(self.t_read[env_id]), float(self.t_true[env_id])],
                self.bpm[env_id].cpu().numpy() / self.cfg.bpm_range_mm,
            ]
        )
        draw_bars(img, top, 0, half, ((60, 160, 60), (40, 110, 40), (204, 60, 60), (60, 60, 204)))
        draw_bars(img, self._observe()[env_id, -(self.nc + self.ns) :].cpu().numpy(), half, height, ((160, 120, 60),))
        return img
