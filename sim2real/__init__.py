"""Sim-to-real adapters: composable wrappers over any batched task, and the hardware protocol.

Each adapter is one file: a config dataclass and a :class:`~embodied.sim.env.BatchedWrapper`.
:func:`wrap` applies an :class:`AdaptersCfg` in the documented order (see ``adapters.py``).
"""

from embodied.sim2real.adapters import AdaptersCfg, wrap
from embodied.sim2real.hardware import Hardware, HardwareError, RunStats, SimulatedHardware, run_policy
from embodied.sim2real.latency import ActionLatency, LatencyCfg
from embodied.sim2real.noise import NoiseCfg, ObservationNoise
from embodied.sim2real.randomize import DomainRandomization, RandomizeCfg
from embodied.sim2real.rate import DecisionRate, RateCfg
from embodied.sim2real.safety import ActionLimiter, ActionSafety, SafetyCfg

__all__ = [
    "ActionLatency",
    "ActionLimiter",
    "ActionSafety",
    "AdaptersCfg",
    "DecisionRate",
    "DomainRandomization",
    "Hardware",
    "HardwareError",
    "LatencyCfg",
    "NoiseCfg",
    "ObservationNoise",
    "RandomizeCfg",
    "RateCfg",
    "RunStats",
    "SafetyCfg",
    "SimulatedHardware",
    "run_policy",
    "wrap",
]
