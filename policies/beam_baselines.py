"""What a beam physicist would do instead of RL: model- and measurement-based beam controllers.

Every controller here acts like a policy (``act(obs)`` -> env actions, ``episodes_ended(done)``)
on a *batched* beam task, so the same evaluation drives it and a learner, and every machine
evaluation it spends is an env step, counted by the task (``info["machine_evaluations"]``).
A controller is built on the task's env and reads only what operators know: the observation,
the settings it has applied (``env.currents``), the task's step size and limits, the error-free
lattice model (:func:`~embodied.sim.beam.nominal_model`) and the twin's
:meth:`operator_calibration` (corrector polarity table and current scale). It never reads the
machine's hidden errors.

Orbit controllers (``Beam/OrbitCorrection-*``):

- :class:`ResponseMatrixSVD`: measure the response matrix on the machine by probing one
  corrector per evaluation (each probe is undone in the same step that sets the next, so
  ``n_correctors`` evaluations, the reset's reading as reference), then iterate Tikhonov-
  regularised SVD corrections ``dI = -V diag(s / (s^2 + lambda^2)) U^T S``.
- :class:`ModelGradient`: fit the unknown solenoid offsets and injection error of cheetah's
  differentiable nominal model to the latest reading (autograd + L-BFGS, a weak prior picks the
  smallest fit), minimise the fitted model's predicted orbit over the corrector currents
  (L-BFGS, a penalty on the change), apply, read, repeat.
- :class:`CalibratedPolicy`: a trained policy deployed through the operators' calibration.

RFQ controller (``Beam/RFQTransmission-*``): :class:`RFQCoordinateSearch`, centre the beam on
the two BPMs with the model's steerer response, then a greedy coordinate search on the read
transmission.

Safety: every controller's proposal is a set of target settings that goes through the
sim-to-real safety layer (:class:`~embodied.sim2real.safety.ActionLimiter`: at most the task's
``max_step_A`` change per step, absolute currents within the lattice's ``max_current_A``, a
non-finite proposal holds the present settings) before it becomes an action.

Calibration: on a twin, a corrector's real kick is ``polarity x scale`` times the modelled one.
Model-based controllers put the operators' (polarity, scale) into the model's corrector gains;
a learned policy's increments are divided by it (:class:`CalibratedPolicy`). The response-matrix
measurement needs no calibration (it measures the machine) and gets none.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from embodied.sim.beam import MachineErrors, nominal_model
from embodied.sim2real.safety import ActionLimiter


class CorrectorSafety:
    """Target corrector currents -> bounded incremental actions, through the sim2real :class:`ActionLimiter`."""

    def __init__(self, limits_A: torch.Tensor, max_step_A: float) -> None:
        limits = limits_A.float()
        self.max_step_A = float(max_step_A)
        self.limiter = ActionLimiter(-limits, limits.clone(), torch.full_like(limits, self.max_step_A), "hold")

    def action(self, currents: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The env action (increments / max_step_A) that moves ``currents`` towards ``targets`` safely, and the report."""
        applied, report = self.limiter.limit(targets, currents)
        return ((applied - currents) / self.max_step_A).clamp(-1.0, 1.0), report


class OrbitController:
    """Shared plumbing of the orbit controllers: the env, its model, calibration and safety."""

    name = "orbit-controller"

    def __init__(self, env: Any, calibrate: bool = True) -> None:
        self.env = env.unwrapped
        cfg = self.env.cfg
        self.n_readings = self.env.n_readings
        self.n_correctors = self.env.n_correctors
        self.model = nominal_model(cfg.lattice, device=self.env.device)
        polarity, scale = self.env.operator_calibration() if calibrate else (torch.ones(self.n_correctors), 1.0)
        self.gain = (polarity * scale).to(self.env.device)
        """Modelled kick -> real kick per corrector, as the operators know it."""
        self.safety = CorrectorSafety(self.env.machine.corrector_limits, cfg.max_step_A)

    def readings(self, obs: torch.Tensor) -> torch.Tensor:
        """S(t), the last row of the trend observation (the tasks' default ``obs_mode``)."""
        if obs.shape[-1] != 3 * self.n_readings:
            raise ValueError(f"{self.name} needs the trend observation (3 x {self.n_readings}), got {obs.shape[-1]}")
        return obs[:, 2 * self.n_readings :]

    def episodes_ended(self, done: torch.Tensor) -> None:
        return None


class ResponseMatrixSVD(OrbitController):
    """Probe each corrector (one evaluation each), then iterate Tikhonov-SVD corrections (module doc)."""

    name = "svd"

    def __init__(self, env: Any, probe_A: float = 1.0, tikhonov: float = 0.25, broyden: bool = True) -> None:
        super().__init__(env, calibrate=False)  # it measures the machine's own response
        if not 0 < probe_A <= self.env.cfg.max_step_A:
            raise ValueError(f"svd probe_A must be in (0, max_step_A={self.env.cfg.max_step_A}], got {probe_A}")
        self.probe_A = float(probe_A)
        self.tikhonov = float(tikhonov)
        """lambda relative to the largest singular value of the measured matrix."""
        self.broyden = broyden
        """Refine the measured matrix with every correction step's (change of settings, change of
        readings) by Broyden's rank-one update: BPM noise makes a 1 A probe's column uncertain."""
        n, dev = self.env.num_envs, self.env.device
        self.phase = torch.zeros(n, dtype=torch.long, device=dev)
        self.reference = torch.zeros(n, self.n_readings, device=dev)
        self.response = torch.zeros(n, self.n_readings, self.n_correctors, device=dev)
        self.inverse = torch.zeros(n, self.n_correctors, self.n_readings, device=dev)
        self.last_currents = torch.zeros(n, self.n_correctors, device=dev)
        self.last_readings = torch.zeros(n, self.n_readings, device=dev)

    def episodes_ended(self, done: torch.Tensor) -> None:
        self.phase[done.to(self.phase.device)] = 0

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        s = self.readings(obs).to(self.env.device)
        nc, p = self.n_correctors, self.phase
        eye = torch.eye(nc, device=s.device)
        first = p == 0
        self.reference[first] = s[first]
        measured = (p >= 1) & (p <= nc)  # this reading answers the probe of corrector p - 1
        if measured.any():
            ids = measured.nonzero().squeeze(-1)
            self.response[ids, :, p[ids] - 1] = (s[ids] - self.reference[ids]) / self.probe_A
        finite = torch.isfinite(s).all(1) & torch.isfinite(self.last_readings).all(1)  # a bad reading teaches nothing
        refine = (p > nc) & self.broyden & finite
        if refine.any():
            ids = refine.nonzero().squeeze(-1)
            di = self.env.currents[ids] - self.last_currents[ids]
            ds = s[ids] - self.last_readings[ids]
            norm = di.square().sum(1, keepdim=True)
            ok = (norm > 1e-6).squeeze(1)
            miss = ds - torch.einsum("brc,bc->br", self.response[ids], di)
            update = miss[:, :, None] * di[:, None, :] / norm.clamp(min=1e-6)[:, :, None]
            self.response[ids] += torch.where(ok[:, None, None], update, 0.0)
            self.inverse[ids] = tikhonov_inverse(self.response[ids], self.tikhonov)
        done_measuring = p == nc
        if done_measuring.any():
            self.inverse[done_measuring] = tikhonov_inverse(self.response[done_measuring], self.tikhonov)
        # Probing: undo the last probe and set the next one in the same step.
        probe = torch.zeros_like(self.env.currents)
        probing = p < nc
        if probing.any():
            ids = probing.nonzero().squeeze(-1)
            probe[ids] += eye[p[ids]] * self.probe_A
            back = ids[p[ids] >= 1]
            probe[back] -= eye[p[back] - 1] * self.probe_A
        currents = self.env.currents
        # Correcting: from the settings without the last probe, with the reference reading the first time.
        base = currents - torch.where(done_measuring[:, None], eye[(p - 1).clamp(0, nc - 1)] * self.probe_A, 0.0)
        orbit = torch.where(done_measuring[:, None], self.reference, s)
        correction = base - torch.einsum("bcr,br->bc", self.inverse, orbit)
        targets = torch.where(probing[:, None], currents + probe, correction)
        action, _ = self.safety.action(currents, targets)
        self.last_currents = currents.clone()
        self.last_readings = s.clone()
        self.phase += 1
        return action


def tikhonov_inverse(response: torch.Tensor, relative_lambda: float) -> torch.Tensor:
    """``V diag(s / (s^2 + lambda^2)) U^T`` of (B, m, n) matrices, lambda = ``relative_lambda`` x largest s."""
    u, s, vh = torch.linalg.svd(response, full_matrices=False)
    lam = relative_lambda * s[:, :1]
    return vh.transpose(1, 2) @ torch.diag_embed(s / (s.square() + lam.square())) @ u.transpose(1, 2)


class ModelGradient(OrbitController):
    """Fit the model's unknown offsets to each reading and minimise its predicted orbit (module doc)."""

    name = "gradient"

    def __init__(
        self,
        env: Any,
        calibrate: bool = True,
        prior_mm: float = 3.0,
        prior_weight: float = 1e-3,
        step_penalty: float = 1e-3,
        iterations: int = 10,
    ) -> None:
        super().__init__(env, calibrate)
        self.prior_mm, self.prior_weight = float(prior_mm), float(prior_weight)
        self.step_penalty, self.iterations = float(step_penalty), int(iterations)
        n, dev = self.env.num_envs, self.env.device
        self.n_solenoids = self.model.n_solenoids
        self.offsets_mm = torch.zeros(n, self.n_solenoids, 2, device=dev)
        self.injection = torch.zeros(n, 4, device=dev)

    def episodes_ended(self, done: torch.Tensor) -> None:
        self.offsets_mm[done] = 0.0
        self.injection[done] = 0.0

    def _errors(self, offsets_mm: torch.Tensor, injection: torch.Tensor) -> MachineErrors:
        b = offsets_mm.shape[0]
        ideal = MachineErrors.ideal(self.model.lattice, b, self.env.device)
        ideal.corrector_gain = self.gain.expand(b, -1)
        ideal.solenoid_offset_m = offsets_mm * 1e-3
        ideal.injection = injection * 1e-3  # mm and mrad
        return ideal

    def _lbfgs(self, params: list[torch.Tensor], loss_fn: Any) -> None:
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=self.iterations, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        opt.step(closure)

    def fit(self, currents: torch.Tensor, readings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets (B, n_sol, 2) mm and injection (B, 4) mm/mrad that reproduce ``readings`` at ``currents``."""
        offsets = self.offsets_mm.clone().requires_grad_(True)
        injection = self.injection.clone().requires_grad_(True)

        def loss() -> torch.Tensor:
            pred = self.model.orbit_mm(currents, self._errors(offsets, injection))
            prior = offsets.square().sum((1, 2)) + injection.square().sum(1)
            return ((pred - readings).square().sum(1) + self.prior_weight * prior / self.prior_mm**2).sum()

        with torch.enable_grad():
            self._lbfgs([offsets, injection], loss)
        return offsets.detach(), injection.detach()

    def best_currents(self, currents: torch.Tensor, offsets: torch.Tensor, injection: torch.Tensor) -> torch.Tensor:
        """Currents that minimise the fitted model's orbit plus ``step_penalty`` x |change|^2, within the limits."""
        limits = self.env.machine.corrector_limits
        errors = self._errors(offsets, injection)
        x = currents.clone().requires_grad_(True)

        def loss() -> torch.Tensor:
            pred = self.model.orbit_mm(x, errors)
            return (pred.square().sum(1) + self.step_penalty * (x - currents).square().sum(1)).sum()

        with torch.enable_grad():
            self._lbfgs([x], loss)
        return torch.maximum(torch.minimum(x.detach(), limits), -limits)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        s = self.readings(obs).to(self.env.device)
        currents = self.env.currents.clone()
        good = torch.isfinite(s).all(1)  # a row with a bad reading keeps its fit and holds its settings
        offsets, injection = self.fit(currents, torch.nan_to_num(s))
        self.offsets_mm = torch.where(good[:, None, None], offsets, self.offsets_mm)
        self.injection = torch.where(good[:, None], injection, self.injection)
        targets = self.best_currents(currents, self.offsets_mm, self.injection)
        targets = torch.where(good[:, None], targets, currents)
        action, _ = self.safety.action(currents, targets)
        return action


class CalibratedPolicy:
    """A trained policy on a (twin) machine through the operators' calibration and the safety layer.

    The policy's corrector increments are in modelled amperes; the machine needs ``polarity /
    scale`` times them. The result goes through :class:`CorrectorSafety` (per-step and absolute
    limits) on orbit tasks; on the RFQ task the steerer part is calibrated and every knob's step
    stays within the action bound (the task keeps its own absolute limits).
    """

    def __init__(self, policy: Any, env: Any, calibrate: bool = True) -> None:
        self.policy = policy
        self.env = env.unwrapped
        self.name = getattr(policy, "name", "policy")
        n_corr = len(self.env.machine.corrector_names)
        polarity, scale = self.env.operator_calibration() if calibrate else (torch.ones(n_corr), 1.0)
        self.n_corr = n_corr
        self.inverse_gain = (polarity / scale).to(self.env.device)
        self.orbit = hasattr(self.env, "currents")
        self.safety = (
            CorrectorSafety(self.env.machine.corrector_limits, self.env.cfg.max_step_A) if self.orbit else None
        )

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        a = self.policy.act(obs, deterministic=deterministic).to(self.env.device).clone()
        a[:, : self.n_corr] = a[:, : self.n_corr] * self.inverse_gain
        if self.safety is None:
            return torch.nan_to_num(a, nan=0.0).clamp(-1.0, 1.0)
        currents = self.env.currents
        action, _ = self.safety.action(currents, currents + a * self.safety.max_step_A)
        return action

    def episodes_ended(self, done: torch.Tensor) -> None:
        hook = getattr(self.policy, "episodes_ended", None)
        if hook is not None:
            hook(done)


class RFQCoordinateSearch:
    """RFQ tuning as operators do it: centre the beam on the BPMs, then a greedy search on the read transmission.

    Phase 1 (until the BPMs read within ``centred_mm`` rms, at most ``centring_steps`` evaluations):
    steer the BPM readings to zero with the calibrated model's steerer response (Tikhonov inverse).
    Phase 2, a pattern search on the read transmission: on each knob in turn try ``+step``; while
    the transmission rises by more than ``min_gain`` keep going that way; if the first try fails,
    try ``-step`` instead; at the first failure go back to the best point and move to the next
    knob. After a full sweep without a gain the steps halve. Each try is one evaluation.
    """

    name = "coordinate"

    def __init__(
        self,
        env: Any,
        calibrate: bool = True,
        centring_steps: int = 2,
        centred_mm: float = 0.3,
        steerer_step_A: float = 0.5,
        solenoid_step_A: float = 2.5,
        tikhonov: float = 0.1,
        min_gain: float = 0.005,
        solenoids_first: bool = False,
    ) -> None:
        self.env = env.unwrapped
        self.min_gain = float(min_gain)
        cfg = self.env.cfg
        if not (0 < steerer_step_A <= cfg.steerer_step_A / 2 and 0 < solenoid_step_A <= cfg.solenoid_step_A / 2):
            raise ValueError(
                "RFQCoordinateSearch steps must be positive and at most half the task's steps (a reversal moves twice"
                f" the step): steerer <= {cfg.steerer_step_A / 2}, solenoid <= {cfg.solenoid_step_A / 2}"
            )
        self.nc, self.ns = self.env.nc, self.env.ns
        self.n_knobs = self.nc + self.ns
        knobs = list(range(self.nc, self.n_knobs)) + list(range(self.nc)) if solenoids_first else range(self.n_knobs)
        self.order = torch.tensor(list(knobs), device=self.env.device)
        """The search visits the knobs in this order (solenoids first: matching matters most)."""
        self.centring_steps = int(centring_steps)
        self.centred_mm = float(centred_mm)
        self.centring_now = torch.ones(self.env.num_envs, dtype=torch.bool, device=self.env.device)
        dev, n = self.env.device, self.env.num_envs
        model = nominal_model(cfg.lattice, device=dev)
        polarity, scale = self.env.operator_calibration() if calibrate else (torch.ones(self.nc), 1.0)
        with warnings.catch_warnings():  # cheetah: apertures do not cut a centroid (ParameterBeam) track
            warnings.simplefilter("ignore")
            response = model.response_matrix()[0] * (polarity * scale).to(dev)  # (2 n_bpms, nc) mm/A
        self.centring = tikhonov_inverse(response[None], tikhonov)[0]
        self.env_step = self.env.step_size.clone()
        self.base_step = torch.tensor([steerer_step_A] * self.nc + [solenoid_step_A] * self.ns, device=dev)
        self.step = self.base_step.expand(n, -1).clone()
        self.phase = torch.zeros(n, dtype=torch.long, device=dev)
        self.knob = torch.zeros(n, dtype=torch.long, device=dev)
        self.state = torch.zeros(n, dtype=torch.long, device=dev)
        """0: searching has not started; 1: a try on ``knob`` awaits its reading."""
        self.direction = torch.ones(n, device=dev)
        self.reversed = torch.zeros(n, dtype=torch.bool, device=dev)
        self.gained_here = torch.zeros(n, dtype=torch.bool, device=dev)
        self.best = torch.zeros(n, device=dev)
        self.improved = torch.zeros(n, dtype=torch.bool, device=dev)
        self.limits = torch.cat([self.env.machine.corrector_limits, self.env.machine.solenoid_limits])

    def episodes_ended(self, done: torch.Tensor) -> None:
        d = done.to(self.phase.device)
        self.phase[d] = 0
        self.centring_now[d] = True
        self.knob[d] = 0
        self.state[d] = 0
        self.direction[d] = 1.0
        self.reversed[d] = False
        self.gained_here[d] = False
        self.improved[d] = False
        self.step[d] = self.base_step

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        e = self.env
        obs = obs.to(e.device)
        t = obs[:, e.n_monitors + 1]  # the read transmission
        bpm = obs[:, e.n_monitors + 3 : e.n_monitors + 3 + e.n_bpm_readings]
        n = obs.shape[0]
        rows = torch.arange(n, device=e.device)
        delta = torch.zeros(n, self.n_knobs, device=e.device)
        # Centre until the BPMs read within centred_mm (rms) or the centring budget is spent.
        centred = bpm.square().mean(1).sqrt() < self.centred_mm
        start = self.centring_now & (centred | (self.phase >= self.centring_steps))
        self.centring_now &= ~start
        centring = self.centring_now
        delta[:, : self.nc] = torch.where(centring[:, None], -(bpm @ self.centring.T), 0.0)
        search = ~centring
        self.best = torch.where(start, t, self.best)

        def along(knob: torch.Tensor) -> torch.Tensor:  # (n, n_knobs): each env's step on its knob
            unit = torch.zeros(n, self.n_knobs, device=e.device)
            unit[rows, self.order[knob]] = 1.0
            return self.step * unit

        step = along(self.knob)
        d = self.direction[:, None]
        gained = t > self.best + self.min_gain
        tried = search & (self.state == 1)
        keep = tried & gained  # better: keep it and go on along the same line
        reverse = tried & ~gained & ~self.gained_here & ~self.reversed  # the first try failed: the other way
        give_up = tried & ~gained & ~reverse  # back to the best point, next knob
        self.best = torch.where(keep, t, self.best)
        self.improved |= keep
        self.gained_here |= keep
        move = torch.where(keep[:, None], d * step, 0.0)
        move = move + torch.where(reverse[:, None], -2.0 * d * step, 0.0)
        move = move + torch.where(give_up[:, None], -d * step, 0.0)
        self.direction = torch.where(reverse, -self.direction, self.direction)
        self.reversed |= reverse
        next_knob = torch.where(give_up, (self.knob + 1) % self.n_knobs, self.knob)
        wrapped = give_up & (next_knob == 0)
        self.step = torch.where((wrapped & ~self.improved)[:, None], self.step * 0.5, self.step)
        self.improved &= ~wrapped
        fresh = give_up | (search & (self.state == 0))  # a new knob: try +step on it
        self.knob = next_knob
        self.direction = torch.where(fresh, 1.0, self.direction)
        self.reversed &= ~fresh
        self.gained_here &= ~fresh
        move = move + torch.where(fresh[:, None], along(self.knob), 0.0)
        self.state = torch.where(search, 1, 0)
        delta = torch.where(search[:, None], move, delta)
        self.phase += 1
        action = torch.nan_to_num(delta / self.env_step, nan=0.0)
        return action.clamp(-1.0, 1.0)
