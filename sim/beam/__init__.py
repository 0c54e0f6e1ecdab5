"""Accelerator beam simulation on cheetah: lattice files, batched differentiable models, machine errors.

Layers, bottom up:

- :mod:`.lattice`: the lattice file format (``assets/beam/*.json``; the format is documented
  in that module), a strict loader (:func:`load_lattice`, raising :class:`LatticeError` that
  names file, element and field) and design-energy / rigidity bookkeeping along the line.
- :mod:`.model`: :class:`BeamlineModel`, one cheetah ``Segment`` for a batch of machines with
  knobs in amperes, and :class:`MachineErrors` (solenoid offsets and field scales, BPM
  offsets, corrector gains, injection error).
- :mod:`.rfq`: macro-particle tracking through a LEBT and the RFQ acceptance test.
- :mod:`.errors`: error magnitudes (:class:`ErrorsCfg`), the per-reset draw
  (:func:`draw_errors`) and the 'real machine' twin (:class:`TwinCfg`).
- :mod:`.machine`: :class:`BeamMachine`, what the tasks talk to as the accelerator: settings
  validated, hidden errors applied, noisy read-outs, and every machine evaluation counted.

API for controllers (response-matrix measurement, gradient-based correction)::

    from embodied.sim.beam import BeamlineModel, MachineErrors, nominal_model

    model = nominal_model("cm1")                        # error-free model
    currents = torch.zeros(1, model.n_correctors, requires_grad=True)
    readings = model.orbit_mm(currents)                 # (1, 2 n_bpms) mm, x/y interleaved
    readings.square().mean().backward()                 # gradients reach the corrector currents
    R = model.response_matrix()                         # (1, 2 n_bpms, n_correctors) mm/A

    # The model of given machines: pass their errors (batch B), e.g. an env's current draw.
    errors = env.unwrapped.machine.errors.select(torch.tensor([0]))
    readings = model.orbit_mm(currents, errors)

``orbit_mm`` and ``response_matrix`` are pure model calls and count nothing. The machine
evaluations a controller spends on an env are ``env.unwrapped.machine_evaluations``
((num_envs,) this episode, reset probes included), ``env.unwrapped.machine_evaluations_total``
and ``info["machine_evaluations"]`` each step; :class:`EvaluationCounter` is the counter.
Corrector order is ``model.lattice.corrector_names`` (H then V per solenoid, beam order),
the action order of the orbit tasks. On a twin, ``env.unwrapped.operator_calibration()``
returns the polarity table and current scale its operators know.
"""

from embodied.sim.beam.errors import ERROR_PARAM_RANGES, ErrorsCfg, TwinCfg, draw_errors
from embodied.sim.beam.lattice import Lattice, LatticeError, list_lattices, load_lattice, parse_lattice
from embodied.sim.beam.machine import BeamMachine, EvaluationCounter, check_currents
from embodied.sim.beam.model import BeamlineModel, MachineErrors, nominal_model
from embodied.sim.beam.rfq import rfq_accepted, source_particles, track_transmission

__all__ = [
    "ERROR_PARAM_RANGES",
    "BeamMachine",
    "BeamlineModel",
    "ErrorsCfg",
    "EvaluationCounter",
    "Lattice",
    "LatticeError",
    "MachineErrors",
    "TwinCfg",
    "check_currents",
    "draw_errors",
    "list_lattices",
    "load_lattice",
    "nominal_model",
    "parse_lattice",
    "rfq_accepted",
    "source_particles",
    "track_transmission",
]
