"""Machine errors as data: what is drawn at every reset, from which distribution, and the twin's.

:class:`ErrorsCfg` holds the magnitudes (uniform half-widths, or values) of every error
family; each becomes a per-env domain-randomisation parameter (:data:`ERROR_PARAM_RANGES`
gives the widest supported range), so the DR adapter can widen or narrow any of them per env.
At every reset :func:`draw_errors` turns the per-env magnitudes into per-element errors:

=============================== ======================================================
solenoid_offset_mm               each solenoid's x and y offset ~ U(-m, m) mm
solenoid_field_error             each solenoid's field scale ~ 1 + U(-m, m)
bpm_offset_mm                    each BPM's x and y electrical offset ~ U(-m, m) mm
bpm_noise_mm                     Gaussian reading noise, std m mm (fresh at every reading)
corrector_scale                  every corrector's kick per ampere times m (calibration)
corrector_polarity_flip_prob     each corrector's polarity is swapped with probability m
injection_offset_mm              incoming beam x and y ~ U(-m, m) mm
injection_angle_mrad             incoming beam x' and y' ~ U(-m, m) mrad
current_noise_rel                current monitors' relative Gaussian noise, std m
=============================== ======================================================

The **twin** (:class:`TwinCfg`) stands for the real machine a policy is deployed on: it is
never trained on. It draws from a different seed stream and different distributions
(Gaussian offsets of the same rms instead of uniform ones, a common field error on top of the
individual ones) and adds effects the training model leaves out: a corrector calibration
mismatch around 1/1.85 (TBSAC's deployment needed a sim-to-real current scale of 1.85), a
fixed table of correctors wired with swapped polarity, BPM noise and offsets, and an
injection error. :meth:`TwinCfg.operator_calibration` is what the operators of that machine
know (the polarity table and the nominal scale), as the TBSAC authors did on deployment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from embodied.sim.beam.lattice import Lattice
from embodied.sim.beam.model import MachineErrors


@dataclass
class ErrorsCfg:
    """Error magnitudes drawn at every reset (see the module table); defaults are TBSAC's training set-up."""

    solenoid_offset_mm: float = 3.0
    solenoid_field_error: float = 0.05
    bpm_offset_mm: float = 0.0
    bpm_noise_mm: float = 0.0
    corrector_scale: float = 1.0
    corrector_polarity_flip_prob: float = 0.0
    injection_offset_mm: float = 0.0
    injection_angle_mrad: float = 0.0
    current_noise_rel: float = 0.0


ERROR_PARAM_RANGES: dict[str, tuple[float, float]] = {
    "solenoid_offset_mm": (0.0, 8.0),
    "solenoid_field_error": (0.0, 0.2),
    "bpm_offset_mm": (0.0, 2.0),
    "bpm_noise_mm": (0.0, 0.5),
    "corrector_scale": (0.3, 2.5),
    "corrector_polarity_flip_prob": (0.0, 0.5),
    "injection_offset_mm": (0.0, 3.0),
    "injection_angle_mrad": (0.0, 15.0),
    "current_noise_rel": (0.0, 0.05),
}
"""The widest range each error magnitude supports (declared to domain randomisation)."""


@dataclass
class TwinCfg:
    """The 'real machine' twin's unmodelled effects and its own seed stream (see module doc)."""

    seed_salt: int = 0x5EED7
    """XOR-ed into every seed, so the twin's draws never coincide with a training draw."""
    corrector_scale: float = 0.54
    """Actual / modelled kick per ampere (about 1 / 1.85)."""
    corrector_scale_spread: float = 0.05
    """Each corrector's scale varies by U(-s, s) relative around ``corrector_scale``."""
    polarity_swaps: tuple[int, ...] = (1, 6)
    """Indices (in corrector order) of correctors wired with swapped polarity; out-of-range ones are ignored."""
    field_error_systematic: float = 0.03
    """A field error common to all solenoids of one draw, U(-s, s), on top of the individual ones."""
    bpm_noise_mm: float = 0.05
    bpm_offset_mm: float = 0.2
    injection_offset_mm: float = 0.3
    injection_angle_mrad: float = 0.3
    current_noise_rel: float = 0.01
    emittance_scale: float = 1.15
    """Source emittance relative to the lattice file (particle-beam tasks)."""

    def operator_calibration(self, n_correctors: int) -> tuple[torch.Tensor, float]:
        """(polarity table (n_correctors,) of +-1, nominal current scale) as the operators know them."""
        polarity = torch.ones(n_correctors)
        for i in self.polarity_swaps:
            if 0 <= i < n_correctors:
                polarity[i] = -1.0
        return polarity, self.corrector_scale


def magnitudes_from_cfg(cfg: ErrorsCfg, num_envs: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Per-env magnitudes, every env at the config's value; DR may overwrite them per env."""
    return {f.name: torch.full((num_envs,), float(getattr(cfg, f.name)), device=device) for f in fields(cfg)}


def _u(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """U(-1, 1)."""
    return 2.0 * torch.rand(shape, generator=gen, device=device) - 1.0


def draw_errors(
    lattice: Lattice,
    magnitudes: dict[str, torch.Tensor],
    gen: torch.Generator,
    twin: TwinCfg | None = None,
) -> tuple[MachineErrors, torch.Tensor, torch.Tensor]:
    """Draw per-element errors for ``k`` envs from their magnitudes (each (k,)).

    Returns (errors of batch k, BPM noise std (k,) in m, current-monitor relative noise (k,)).
    The order of draws is fixed, so a seeded generator gives the same machines.
    """
    m = magnitudes
    k = m["solenoid_offset_mm"].shape[0]
    device = m["solenoid_offset_mm"].device
    ns = len(lattice.of_type("solenoid"))
    nb, nc = len(lattice.bpm_names), len(lattice.corrector_names)
    col = {name: v[:, None] for name, v in m.items()}

    if twin is None:
        sol_offset = _u((k, ns, 2), gen, device) * col["solenoid_offset_mm"][..., None] * 1e-3
        field = 1.0 + _u((k, ns), gen, device) * col["solenoid_field_error"]
    else:
        # Same rms as U(-m, m) (m / sqrt 3), Gaussian tails clipped at 1.5 m: a shape training never saw.
        sigma = col["solenoid_offset_mm"][..., None] / math.sqrt(3.0)
        sol_offset = (torch.randn((k, ns, 2), generator=gen, device=device) * sigma).clamp(
            -1.5 * col["solenoid_offset_mm"][..., None], 1.5 * col["solenoid_offset_mm"][..., None]
        ) * 1e-3
        common = _u((k, 1), gen, device) * twin.field_error_systematic
        field = 1.0 + common + _u((k, ns), gen, device) * col["solenoid_field_error"]
    bpm_offset = _u((k, nb, 2), gen, device) * col["bpm_offset_mm"][..., None] * 1e-3
    flips = torch.rand((k, nc), generator=gen, device=device) < col["corrector_polarity_flip_prob"]
    gain = col["corrector_scale"] * torch.where(flips, -1.0, 1.0)
    inj = _u((k, 4), gen, device)
    inj_scale = torch.stack(
        [m["injection_offset_mm"] * 1e-3, m["injection_angle_mrad"] * 1e-3] * 2, dim=-1
    )  # x, x', y, y'
    injection = inj * inj_scale
    bpm_noise = m["bpm_noise_mm"] * 1e-3
    current_noise = m["current_noise_rel"].clone()

    if twin is not None:
        polarity, _ = twin.operator_calibration(nc)
        spread = 1.0 + _u((k, nc), gen, device) * twin.corrector_scale_spread
        gain = gain * twin.corrector_scale * spread * polarity.to(device)
        bpm_offset = bpm_offset + _u((k, nb, 2), gen, device) * twin.bpm_offset_mm * 1e-3
        scale = torch.tensor([twin.injection_offset_mm, twin.injection_angle_mrad] * 2, device=device) * 1e-3
        injection = injection + _u((k, 4), gen, device) * scale
        bpm_noise = torch.sqrt(bpm_noise.square() + (twin.bpm_noise_mm * 1e-3) ** 2)
        current_noise = torch.sqrt(current_noise.square() + twin.current_noise_rel**2)

    errors = MachineErrors(
        solenoid_offset_m=sol_offset,
        solenoid_field_scale=field,
        bpm_offset_m=bpm_offset,
        corrector_gain=gain,
        injection=injection,
    )
    return errors, bpm_noise, current_noise
