"""Simulated machines for the tasks: a model plus per-env errors, noisy read-outs and an evaluation count.

:class:`BeamMachine` is what a task (or a controller testing itself) talks to as if it were
the accelerator: it validates settings (non-finite or out-of-range currents raise a
``ValueError`` naming the knob and the env), applies them with the machine's hidden errors,
tracks once for the whole batch and returns what the instruments read. Every such call is a
**machine evaluation** ("a setting applied and the read-outs read") and is counted per env in
:class:`EvaluationCounter`.
"""

from __future__ import annotations

from typing import Any

import torch

from embodied.sim.beam.errors import ErrorsCfg, TwinCfg, draw_errors, magnitudes_from_cfg
from embodied.sim.beam.lattice import Lattice
from embodied.sim.beam.model import BeamlineModel, MachineErrors
from embodied.sim.beam.rfq import TransmissionResult, source_particles, track_transmission


class EvaluationCounter:
    """Machine evaluations per env in the current episode, and in total over the counter's life."""

    def __init__(self, num_envs: int, device: torch.device) -> None:
        self.episode = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.total = torch.zeros(num_envs, dtype=torch.long, device=device)

    def add(self, env_ids: torch.Tensor | None = None) -> None:
        if env_ids is None:
            self.episode += 1
            self.total += 1
        else:
            self.episode[env_ids] += 1
            self.total[env_ids] += 1

    def new_episode(self, env_ids: torch.Tensor) -> None:
        self.episode[env_ids] = 0

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"episode": self.episode.clone(), "total": self.total.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.episode.copy_(state["episode"])
        self.total.copy_(state["total"])


def check_currents(currents: torch.Tensor, limits: torch.Tensor, names: list[str], where: str) -> None:
    """Raise ValueError unless ``currents`` (B, n) are finite and within ``[-limits, limits]``."""
    if currents.shape[-1] != len(names):
        raise ValueError(f"{where}: got {currents.shape[-1]} currents, expected {len(names)} ({names})")
    bad = ~torch.isfinite(currents)
    if bad.any():
        env, knob = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{where}: {names[knob]} current is {float(currents[env, knob])} in env {env}; currents must be finite"
        )
    over = currents.abs() > limits + 1e-6
    if over.any():
        env, knob = (int(i) for i in over.nonzero()[0])
        raise ValueError(
            f"{where}: {names[knob]} set to {float(currents[env, knob]):.4g} A in env {env}, beyond its limit "
            f"+-{float(limits[knob]):.4g} A (lattice max_current_A)"
        )


class BeamMachine:
    """``num_envs`` simulated machines of one lattice with hidden errors (see module doc)."""

    def __init__(
        self,
        lattice: Lattice | str,
        num_envs: int,
        errors_cfg: ErrorsCfg,
        device: torch.device | str = "cpu",
        twin: TwinCfg | None = None,
        num_particles: int = 0,
        particle_seed: int = 0,
    ) -> None:
        self.model = BeamlineModel(lattice, device=device)
        self.lattice = self.model.lattice
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.twin = twin
        self.magnitudes = magnitudes_from_cfg(errors_cfg, num_envs, self.device)
        """Per-env error magnitudes (name -> (num_envs,)); domain randomisation sets these."""
        self.errors = MachineErrors.ideal(self.lattice, num_envs, self.device)
        self.bpm_noise_m = torch.zeros(num_envs, device=self.device)
        self.current_noise_rel = torch.zeros(num_envs, device=self.device)
        self.counter = EvaluationCounter(num_envs, self.device)
        m = self.model
        self.corrector_limits = torch.tensor(m.corrector_max_current_A, device=self.device)
        self.solenoid_limits = torch.tensor(m.solenoid_max_current_A, device=self.device)
        self.corrector_names = self.lattice.corrector_names
        self.solenoid_names = [e.name for e in self.lattice.of_type("solenoid")]
        self.particles = None
        if num_particles > 0:
            scale = twin.emittance_scale if twin is not None else 1.0
            seed = particle_seed ^ twin.seed_salt if twin is not None else particle_seed
            self.particles = source_particles(m, num_particles, seed, scale)

    # ------------------------------------------------------------------ errors
    def redraw(self, env_ids: torch.Tensor, gen: torch.Generator) -> None:
        """Draw new errors for envs ``env_ids`` from their magnitudes."""
        mags = {k: v[env_ids] for k, v in self.magnitudes.items()}
        errors, bpm_noise, current_noise = draw_errors(self.lattice, mags, gen, self.twin)
        self.errors.index_put(env_ids, errors)
        self.bpm_noise_m[env_ids] = bpm_noise
        self.current_noise_rel[env_ids] = current_noise

    # ------------------------------------------------------------------ evaluations
    def _subset(self, env_ids: torch.Tensor | None) -> tuple[MachineErrors, torch.Tensor, torch.Tensor]:
        if env_ids is None:
            return self.errors, self.bpm_noise_m, self.current_noise_rel
        return self.errors.select(env_ids), self.bpm_noise_m[env_ids], self.current_noise_rel[env_ids]

    def read_orbit(
        self, corrector_currents: torch.Tensor, gen: torch.Generator, env_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply corrector currents (k, n_correctors) to envs ``env_ids`` (all: k = num_envs), read the BPMs.

        One evaluation per env, counted. Returns (readings as read: noise and BPM offsets
        included; true beam positions at the BPMs), both (k, 2 n_bpms) in mm, x/y interleaved.
        """
        check_currents(corrector_currents, self.corrector_limits, self.corrector_names, self.lattice.name)
        errors, bpm_noise, _ = self._subset(env_ids)
        with torch.no_grad():
            readings = self.model.orbit_mm(corrector_currents, errors)
        true = readings + errors.bpm_offset_m.reshape(readings.shape) * 1e3
        noise = torch.randn(readings.shape, generator=gen, device=self.device) * (bpm_noise[:, None] * 1e3)
        self.counter.add(env_ids)
        return readings + noise, true

    def read_transmission(
        self,
        corrector_currents: torch.Tensor,
        solenoid_currents: torch.Tensor,
        gen: torch.Generator,
        env_ids: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], TransmissionResult]:
        """Apply steerer and solenoid currents to envs ``env_ids`` (all by default) and read the instruments.

        One evaluation per env, counted. Returns (read-outs: ``monitors_mA`` (k, n_monitors),
        ``faraday_cup_mA`` (k,), ``bpm_mm`` (k, 2 n_bpms); the noiseless :class:`TransmissionResult`).
        """
        if self.particles is None:
            raise ValueError(f"{self.lattice.name}: this machine was built without macro-particles (num_particles=0)")
        check_currents(corrector_currents, self.corrector_limits, self.corrector_names, self.lattice.name)
        check_currents(solenoid_currents, self.solenoid_limits, self.solenoid_names, self.lattice.name)
        if (solenoid_currents < 0).any():
            env, knob = (int(i) for i in (solenoid_currents < 0).nonzero()[0])
            raise ValueError(f"{self.lattice.name}: {self.solenoid_names[knob]} current is negative in env {env}")
        errors, bpm_noise, rel = self._subset(env_ids)
        k = corrector_currents.shape[0]
        with torch.no_grad():
            result = track_transmission(self.model, self.particles, corrector_currents, solenoid_currents, errors)
        i0_mA = self.lattice.beam.current_A * 1e3
        n_mon = result.monitor_fractions.shape[1]
        noise = torch.randn((k, n_mon + 1), generator=gen, device=self.device) * rel[:, None]
        monitors = result.monitor_fractions * i0_mA * (1.0 + noise[:, :n_mon])
        cup = result.transmission * i0_mA * (1.0 + noise[:, n_mon])
        positions = torch.nan_to_num(result.bpm_positions_m, nan=0.0)  # a BPM reads 0 when no beam reaches it
        bpm = positions.reshape(k, -1) * 1e3
        bpm = bpm + torch.randn(bpm.shape, generator=gen, device=self.device) * (bpm_noise[:, None] * 1e3)
        self.counter.add(env_ids)
        return {"monitors_mA": monitors, "faraday_cup_mA": cup, "bpm_mm": bpm}, result

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "errors": self.errors.to_dict(),
            "magnitudes": {k: v.clone() for k, v in self.magnitudes.items()},
            "bpm_noise_m": self.bpm_noise_m.clone(),
            "current_noise_rel": self.current_noise_rel.clone(),
            "counter": self.counter.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.errors = MachineErrors.from_dict(state["errors"], self.device)
        self.magnitudes = {k: v.clone().to(self.device) for k, v in state["magnitudes"].items()}
        self.bpm_noise_m = state["bpm_noise_m"].clone().to(self.device)
        self.current_noise_rel = state["current_noise_rel"].clone().to(self.device)
        self.counter.load_state_dict(state["counter"])
