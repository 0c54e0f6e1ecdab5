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

RFQ controllers (``Beam/RFQTransmission-*``):

- :class:`RFQCoordinateSearch`: centre the beam on the two BPMs with the model's steerer
  response, then a greedy coordinate search on the read transmission.
- :class:`RFQModelFit`: fit the unknown errors of an envelope model on cheetah
  (:class:`EnvelopeTransmission`) to every reading of the episode, move towards the fitted
  model's best transmission, re-fit from each new reading. It shares :func:`lbfgs` and
  :func:`model_errors` with :class:`ModelGradient`.

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
from collections.abc import Callable
from typing import Any

import cheetah
import torch

from embodied.sim.beam import BeamlineModel, MachineErrors, nominal_model
from embodied.sim.beam.rfq import invariant
from embodied.sim2real.safety import ActionLimiter


class CorrectorSafety:
    """Target knob currents -> bounded incremental actions, through the sim2real :class:`ActionLimiter`.

    Orbit tasks give symmetric limits and one step for every corrector; the RFQ task mixes
    steerers (+-limit, 1 A per step) and solenoids (0 to limit, 5 A per step), so ``max_step_A``
    may be one value per knob and ``low_A`` the lower bounds (``-limits_A`` when omitted).
    """

    def __init__(
        self, limits_A: torch.Tensor, max_step_A: float | torch.Tensor, low_A: torch.Tensor | None = None
    ) -> None:
        limits = limits_A.float()
        low = -limits if low_A is None else low_A.float().to(limits.device)
        if isinstance(max_step_A, torch.Tensor):
            self.max_step_A: float | torch.Tensor = max_step_A.float().to(limits.device)
            step = self.max_step_A.expand_as(limits).clone()
        else:
            self.max_step_A = float(max_step_A)
            step = torch.full_like(limits, self.max_step_A)
        self.limiter = ActionLimiter(low, limits.clone(), step, "hold")

    def action(self, currents: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The env action (increments / max_step_A) that moves ``currents`` towards ``targets`` safely, and the report."""
        applied, report = self.limiter.limit(targets, currents)
        return ((applied - currents) / self.max_step_A).clamp(-1.0, 1.0), report


def lbfgs(params: list[torch.Tensor], loss_fn: Callable[[], torch.Tensor], iterations: int) -> None:
    """Minimise ``loss_fn`` over the leaf tensors ``params`` (requires_grad) in place, by L-BFGS.

    One optimiser for every model-based controller here: a few strong-Wolfe L-BFGS iterations
    from a warm start are enough, because each step starts from the previous step's answer.
    Gradients are switched on inside, so controllers may be called under ``torch.no_grad``.
    """
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)


def model_errors(
    model: BeamlineModel,
    gain: torch.Tensor,
    offsets_mm: torch.Tensor,
    injection: torch.Tensor,
    field_scale: torch.Tensor | None = None,
) -> MachineErrors:
    """The errors a controller's model fits, as :class:`MachineErrors` of any leading batch shape.

    ``gain`` (n_correctors,): the operators' calibration (polarity x scale); ``offsets_mm``
    (..., n_solenoids, 2); ``injection`` (..., 4) in mm and mrad; ``field_scale`` (...,
    n_solenoids), 1 when omitted. BPM offsets are not fitted (zero).
    """
    batch = offsets_mm.shape[:-2]
    z = {"device": offsets_mm.device, "dtype": torch.float32}
    n_bpms, n_solenoids = model.n_bpms, model.n_solenoids
    return MachineErrors(
        solenoid_offset_m=offsets_mm * 1e-3,
        solenoid_field_scale=field_scale if field_scale is not None else torch.ones(*batch, n_solenoids, **z),
        bpm_offset_m=torch.zeros(*batch, n_bpms, 2, **z),
        corrector_gain=gain.expand(*batch, -1),
        injection=injection * 1e-3,  # mm and mrad
    )


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
        return model_errors(self.model, self.gain, offsets_mm, injection)

    def fit(self, currents: torch.Tensor, readings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets (B, n_sol, 2) mm and injection (B, 4) mm/mrad that reproduce ``readings`` at ``currents``."""
        offsets = self.offsets_mm.clone().requires_grad_(True)
        injection = self.injection.clone().requires_grad_(True)

        def loss() -> torch.Tensor:
            pred = self.model.orbit_mm(currents, self._errors(offsets, injection))
            prior = offsets.square().sum((1, 2)) + injection.square().sum(1)
            return ((pred - readings).square().sum(1) + self.prior_weight * prior / self.prior_mm**2).sum()

        lbfgs([offsets, injection], loss, self.iterations)
        return offsets.detach(), injection.detach()

    def best_currents(self, currents: torch.Tensor, offsets: torch.Tensor, injection: torch.Tensor) -> torch.Tensor:
        """Currents that minimise the fitted model's orbit plus ``step_penalty`` x |change|^2, within the limits."""
        limits = self.env.machine.corrector_limits
        errors = self._errors(offsets, injection)
        x = currents.clone().requires_grad_(True)

        def loss() -> torch.Tensor:
            pred = self.model.orbit_mm(x, errors)
            return (pred.square().sum(1) + self.step_penalty * (x - currents).square().sum(1)).sum()

        lbfgs([x], loss, self.iterations)
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


class EnvelopeTransmission:
    """The RFQ controller's beam model: the task's cheetah lattice tracking a Gaussian beam's centroid and covariance.

    The LEBT is linear (drifts and solenoids; its 40 mm apertures never cut a beam that reaches
    the 5 mm RFQ), so a Gaussian source stays Gaussian: one :class:`cheetah.ParameterBeam` track
    gives the centroid (hence the BPM readings) and the covariance at the RFQ entrance, for a
    whole batch of settings and fitted errors at once, about 100 times cheaper than tracking
    macro-particles. Transmission is then scored on fixed standard-normal samples mapped onto
    that Gaussian, with each acceptance test (aperture, x and y ellipses) softened to a sigmoid
    of its normalised distance to the boundary: smooth in every knob and every fitted error, so
    L-BFGS can both fit the errors to read transmissions and maximise the fitted transmission.
    """

    def __init__(self, model: BeamlineModel, num_samples: int = 1000, seed: int = 0) -> None:
        if model.rfq is None:
            raise ValueError(f"lattice {model.lattice.name!r} has no 'rfq' element to score transmission against")
        self.model = model
        tw = model.lattice.beam.twiss
        cov = torch.zeros(7, 7, dtype=model.dtype)
        for plane, i in (("x", 0), ("y", 2)):
            beta, alpha, eps = tw[f"beta_{plane}_m"], tw[f"alpha_{plane}"], tw[f"emittance_{plane}_m"]
            cov[i : i + 2, i : i + 2] = eps * torch.tensor([[beta, -alpha], [-alpha, (1 + alpha**2) / beta]])
        self.source_cov = cov.to(model.device)
        """The design source's covariance (the lattice file's Twiss), what the operators know."""
        samples = torch.randn(num_samples, 4, generator=torch.Generator().manual_seed(seed), dtype=model.dtype)
        self.samples = (samples - samples.mean(0)).to(model.device)

    def predict(
        self,
        steerers: torch.Tensor,
        solenoids: torch.Tensor,
        errors: MachineErrors,
        emittance_scale: torch.Tensor,
        softness: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(soft transmission (...), BPM readings (..., 2 n_bpms) mm) for settings and errors of batch shape (...)."""
        m = self.model
        m.apply(steerers, solenoids, errors)
        inj = errors.injection
        ones = torch.ones(*inj.shape[:-1], 1, device=m.device, dtype=m.dtype)
        mu = torch.cat([inj, torch.zeros_like(ones), torch.zeros_like(ones), ones], -1)
        cov = self.source_cov * emittance_scale[..., None, None]
        with warnings.catch_warnings():  # cheetah: apertures do not cut a ParameterBeam
            warnings.simplefilter("ignore")
            beam = m.segment.track(cheetah.ParameterBeam(mu=mu, cov=cov, energy=m.energy, species=m.species))
        jitter = 1e-14 * torch.eye(4, device=m.device, dtype=m.dtype)
        chol = torch.linalg.cholesky(beam.cov[..., :4, :4] + jitter)
        particles = beam.mu[..., None, :4] + self.samples @ chol.transpose(-1, -2)
        ratios = acceptance_ratios(particles, m.rfq)
        transmission = torch.sigmoid((1.0 - ratios) / softness).prod(-1).mean(-1)
        return transmission, m.readings_mm()


def acceptance_ratios(particles: torch.Tensor, rfq: dict) -> torch.Tensor:
    """(..., N, 3): each particle's r^2 / aperture^2 and Courant-Snyder invariants / acceptance (x, y); <= 1 inside.

    The normalised form of :func:`~embodied.sim.beam.rfq.rfq_accepted`'s three tests, so that a
    controller can soften them.
    """
    acc = rfq["acceptance"]
    x, px, y, py = particles[..., 0], particles[..., 1], particles[..., 2], particles[..., 3]
    radius = (x.square() + y.square()) / rfq["aperture_radius_m"] ** 2
    inv_x = invariant(x, px, acc["beta_x_m"], acc["alpha_x"]) / acc["emittance_x_m"]
    inv_y = invariant(y, py, acc["beta_y_m"], acc["alpha_y"]) / acc["emittance_y_m"]
    return torch.stack([radius, inv_x, inv_y], -1)


class RFQModelFit:
    """RFQ tuning with a fitted model: fit the unknown errors to every reading so far, go to the model's best.

    At every step: (1) fit the errors the model can express to all readings of this episode
    (BPM positions and read transmissions at the settings applied then), by autograd + L-BFGS
    from the last fit; (2) maximise the fitted model's soft transmission over the six knobs
    (L-BFGS from the present settings); (3) move towards that optimum through the safety layer
    (the task's per-step limits: 1 A steerers, 5 A solenoids; absolute limits). Each reading
    then adds a point to the next fit, so the solenoid moves the model proposes are also what
    teaches it the field errors, the knobs the BPMs cannot see.

    The unknowns, per env, in units of their prior width (the nominal task's error magnitudes,
    the machine's design tolerances): injection x, x', y, y' (1.2 mm, 6 mrad), solenoid offsets
    (1 mm), each solenoid's field error (5 %) and the source emittance scale (log, 15 %).
    Each is bounded (tanh) at about twice its width: without bounds a few draws' fits ran into
    40 % field errors that explained a bad reading, and the knobs followed them away.
    """

    name = "model"

    PRIOR = (1.2, 6.0, 1.2, 6.0, 1.0, 1.0, 1.0, 1.0, 0.05, 0.05, 0.15)
    """Prior width of each unknown: injection (mm, mrad, mm, mrad), offsets (mm), field errors, log emittance."""
    BOUND = (2.5, 12.0, 2.5, 12.0, 2.0, 2.0, 2.0, 2.0, 0.1, 0.1, 0.3)
    """The largest value each unknown may take."""

    def __init__(
        self,
        env: Any,
        calibrate: bool = True,
        bpm_sigma_mm: float = 0.2,
        transmission_sigma: float = 0.02,
        fit_iterations: int = 15,
        optimise_iterations: int = 20,
        fit_softness: float = 0.05,
        optimise_softness: float = 0.1,
        num_samples: int = 1000,
        history: int = 52,
    ) -> None:
        self.env = env.unwrapped
        e = self.env
        self.model = nominal_model(e.cfg.lattice, device=e.device)
        self.beam = EnvelopeTransmission(self.model, num_samples)
        self.nc, self.ns = e.nc, e.ns
        polarity, scale = e.operator_calibration() if calibrate else (torch.ones(self.nc), 1.0)
        self.gain = (polarity * scale).to(e.device)
        self.bpm_sigma_mm, self.transmission_sigma = float(bpm_sigma_mm), float(transmission_sigma)
        """Read-out uncertainties weighting the fit: BPM offsets and noise, current-monitor noise."""
        self.fit_iterations, self.optimise_iterations = int(fit_iterations), int(optimise_iterations)
        self.fit_softness, self.optimise_softness = float(fit_softness), float(optimise_softness)
        """Sigmoid widths (in units of the normalised acceptance): sharp to fit readings, wider to
        aim for the middle of the acceptance, where a model error costs least."""
        m = e.machine
        self.step_A = e.step_size.clone()
        self.low = torch.cat([-m.corrector_limits, torch.zeros_like(m.solenoid_limits)])
        self.high = torch.cat([m.corrector_limits, m.solenoid_limits])
        self.safety = CorrectorSafety(self.high, self.step_A, low_A=self.low)
        dev, n, k = e.device, e.num_envs, self.nc + self.ns
        self.prior = torch.tensor(self.PRIOR, device=dev)
        self.bound = torch.tensor(self.BOUND, device=dev)
        self.history = int(history)
        self.settings = torch.zeros(n, self.history, k, device=dev)
        self.bpm = torch.zeros(n, self.history, e.n_bpm_readings, device=dev)
        self.transmission = torch.zeros(n, self.history, device=dev)
        self.count = torch.zeros(n, dtype=torch.long, device=dev)
        """Readings recorded this episode (the buffer keeps the last ``history``)."""
        self.theta = torch.zeros(n, len(self.PRIOR), device=dev)
        """The fitted unknowns, in prior widths."""

    def episodes_ended(self, done: torch.Tensor) -> None:
        d = done.to(self.count.device)
        self.count[d] = 0
        self.theta[d] = 0.0

    def unknowns(self, theta: torch.Tensor) -> tuple[MachineErrors, torch.Tensor]:
        """The model's errors and emittance scale for fitted unknowns ``theta`` (..., 11)."""
        p = self.bound * torch.tanh(theta * self.prior / self.bound)
        errors = model_errors(
            self.model, self.gain, p[..., 4:8].reshape(*p.shape[:-1], self.ns, 2), p[..., :4], 1.0 + p[..., 8:10]
        )
        return errors, torch.exp(p[..., 10])

    def fit(self) -> None:
        """Refit ``theta`` to every recorded reading (weighted least squares plus the prior)."""
        used = int(self.count.clamp(max=self.history).max())
        valid = torch.arange(used, device=self.count.device)[None, :] < self.count[:, None]
        settings, bpm, read = self.settings[:, :used], self.bpm[:, :used], self.transmission[:, :used]
        theta = self.theta.clone().requires_grad_(True)

        def loss() -> torch.Tensor:
            errors, emittance = self.unknowns(theta[:, None, :])
            steerers, solenoids = settings[..., : self.nc], settings[..., self.nc :]
            t, b = self.beam.predict(steerers, solenoids, errors, emittance, self.fit_softness)
            bpm_misfit = (b - bpm).square().sum(-1) / self.bpm_sigma_mm**2
            misfit = bpm_misfit + (t - read).square() / self.transmission_sigma**2
            return (misfit * valid).sum() + theta.square().sum()

        lbfgs([theta], loss, self.fit_iterations)
        self.theta = theta.detach()

    def best_settings(self, now: torch.Tensor) -> torch.Tensor:
        """The knob settings (B, 6) that maximise the fitted model's soft transmission, from ``now``, within limits.

        Optimised in units of the task's step per knob, so that one unit is one evaluation on every knob.
        """
        errors, emittance = self.unknowns(self.theta)
        x = (now / self.step_A).clone().requires_grad_(True)

        def loss() -> torch.Tensor:
            k = x * self.step_A
            t, _ = self.beam.predict(k[:, : self.nc], k[:, self.nc :], errors, emittance, self.optimise_softness)
            return -t.sum()

        lbfgs([x], loss, self.optimise_iterations)
        return torch.maximum(torch.minimum(x.detach() * self.step_A, self.high), self.low)

    def record(self, obs: torch.Tensor) -> torch.Tensor:
        """Add this reading (BPMs and read transmission at the present settings) to the history; the settings (B, 6)."""
        e = self.env
        obs = obs.to(e.device)
        if obs.shape != (e.num_envs, e.observation_space.shape[-1]):
            raise ValueError(
                f"{self.name}: observation of shape {tuple(obs.shape)}, expected ({e.num_envs}, "
                f"{e.observation_space.shape[-1]}) from {e.task_id}"
            )
        if not torch.isfinite(obs).all():
            env = int((~torch.isfinite(obs)).any(1).nonzero()[0])
            raise ValueError(
                f"{self.name}: the observation of env {env} is not finite ({obs[env].tolist()}); "
                "a controller cannot fit a model to NaN or inf read-outs"
            )
        now = torch.cat([e.steerers, e.solenoids], -1)
        slot = self.count % self.history
        rows = torch.arange(e.num_envs, device=e.device)
        self.settings[rows, slot] = now
        self.transmission[rows, slot] = obs[:, e.n_monitors + 1]
        self.bpm[rows, slot] = obs[:, e.n_monitors + 3 : e.n_monitors + 3 + e.n_bpm_readings]
        self.count += 1
        return now

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        now = self.record(obs)
        self.fit()
        action, _ = self.safety.action(now, self.best_settings(now))
        return action
