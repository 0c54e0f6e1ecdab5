"""LEBT to RFQ transmission: macro-particles tracked by cheetah, scored against the RFQ acceptance.

The source beam is a fixed set of Gaussian macro-particles (drawn once from a seed, so
transmission is a smooth, repeatable function of the settings: what changes from step to step
is the machine, not sampling noise). Each env shifts them by its own injection error and
tracks them, all envs in one cheetah ``ParticleBeam`` of shape ``(B, N, 7)``, through the
lattice's parts (split at current monitors and the RFQ). Apertures mark particles lost.

Transmission is the fraction of source particles that survive the LEBT and lie inside the
RFQ's acceptance: inside its aperture radius, and with Courant-Snyder invariant
``gamma u^2 + 2 alpha u u' + beta u'^2`` at most the acceptance emittance in both planes. A
mis-steered beam (centroid off axis or tilted) or a mismatched one (wrong solenoid focusing)
loses particles outside the ellipse; a small, centred, matched beam is fully transmitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import cheetah
import torch

from embodied.sim.beam.model import BeamlineModel, MachineErrors


def source_particles(
    model: BeamlineModel, num_particles: int, seed: int = 0, emittance_scale: float = 1.0
) -> torch.Tensor:
    """(num_particles, 7) Gaussian macro-particles with the lattice's source Twiss (cheetah's layout)."""
    tw = model.lattice.beam.twiss
    gen = torch.Generator().manual_seed(int(seed))
    u = torch.randn(num_particles, 4, generator=gen, dtype=torch.float64)
    parts = torch.zeros(num_particles, 7, dtype=torch.float64)
    for plane, col in (("x", 0), ("y", 2)):
        beta, alpha = tw[f"beta_{plane}_m"], tw[f"alpha_{plane}"]
        eps = tw[f"emittance_{plane}_m"] * emittance_scale
        # Normalised coordinates (u1, u2) -> phase space with the given Twiss.
        parts[:, col] = (eps * beta) ** 0.5 * u[:, col]
        parts[:, col + 1] = (eps / beta) ** 0.5 * (-alpha * u[:, col] + u[:, col + 1])
    parts[:, :4] -= parts[:, :4].mean(0)  # centre the sample: an ideal machine reads zero at its BPMs
    parts[:, 6] = 1.0
    return parts.to(model.device, model.dtype)


def invariant(u: torch.Tensor, up: torch.Tensor, beta: float, alpha: float) -> torch.Tensor:
    """Courant-Snyder invariant of (u, u') for an ellipse with these Twiss parameters."""
    gamma = (1.0 + alpha**2) / beta
    return gamma * u.square() + 2.0 * alpha * u * up + beta * up.square()


def rfq_accepted(particles: torch.Tensor, rfq: dict) -> torch.Tensor:
    """(..., N) bool: particles (..., N, 7) at the RFQ entrance inside its aperture and acceptance."""
    acc = rfq["acceptance"]
    x, px, y, py = particles[..., 0], particles[..., 1], particles[..., 2], particles[..., 3]
    inside = x.square() + y.square() <= rfq["aperture_radius_m"] ** 2
    inside &= invariant(x, px, acc["beta_x_m"], acc["alpha_x"]) <= acc["emittance_x_m"]
    inside &= invariant(y, py, acc["beta_y_m"], acc["alpha_y"]) <= acc["emittance_y_m"]
    return inside


@dataclass
class TransmissionResult:
    """What one LEBT+RFQ track gives, per env (fractions of the source current)."""

    monitor_fractions: torch.Tensor
    """(B, n_current_monitors) surviving fraction at each current monitor."""
    transmission: torch.Tensor
    """(B,) fraction inside the RFQ acceptance (what a Faraday cup after the RFQ reads / I0)."""
    bpm_positions_m: torch.Tensor
    """(B, n_bpms, 2) centroid minus BPM offset (survivors only)."""


def track_transmission(
    model: BeamlineModel,
    particles: torch.Tensor,
    corrector_currents: torch.Tensor,
    solenoid_currents: torch.Tensor,
    errors: MachineErrors,
) -> TransmissionResult:
    """Track ``particles`` (N, 7) through the lattice for a batch of settings, in one pass.

    corrector_currents (B, n_correctors), solenoid_currents (B, n_solenoids), errors of batch B.
    """
    if model.rfq is None:
        raise ValueError(f"lattice {model.lattice.name!r} has no 'rfq' element to score transmission against")
    model.apply(corrector_currents, solenoid_currents, errors)
    batch = corrector_currents.shape[0]
    shift = torch.zeros(batch, 1, 7, device=model.device, dtype=model.dtype)
    shift[:, 0, :4] = errors.injection
    beam: cheetah.Beam = cheetah.ParticleBeam(
        particles=particles.unsqueeze(0) + shift,
        energy=model.energy,
        species=model.species,
        device=model.device,
        dtype=model.dtype,
    )
    monitors, transmission = [], None
    for part, end in zip(model.parts, model.part_ends, strict=True):
        beam = part.track(beam)
        survival = beam.survival_probabilities.expand(batch, -1)
        if end == "current_monitor":
            monitors.append(survival.mean(-1))
        elif end == "rfq":
            accepted = rfq_accepted(beam.particles.expand(batch, -1, -1), model.rfq)
            transmission = (survival * accepted).mean(-1)
    positions = model.bpm_positions() if model.bpms else torch.zeros(batch, 0, 2, device=model.device)
    return TransmissionResult(
        monitor_fractions=torch.stack(monitors, -1) if monitors else torch.zeros(batch, 0, device=model.device),
        transmission=transmission,
        bpm_positions_m=positions.expand(batch, -1, -1),
    )
