"""All sim-to-real adapters in one config, applied in one fixed order.

``AdaptersCfg`` groups the optional config of each adapter (None = off), so the training loop
and the CLI switch them on by override (``adapters.noise.std=0.01``,
``adapters.latency.steps=2``); :func:`wrap` applies those that are on.

Order, innermost (next to the physics) to outermost (next to the policy)::

    task -> randomize -> safety -> latency -> rate -> noise -> image_augment -> policy

- **randomize** only installs a reset hook; it touches neither actions nor observations, so it
  sits innermost, with the physics it changes.
- **safety** is directly on the physics: the action it lets through is the action applied,
  nothing after it can change one, and ``max_delta`` is a limit per primitive step, as in a
  motor driver. (Limiting before or after a pure delay gives the same applied actions.)
- **latency** is inside rate, so the delay is counted in primitive steps: it is a property of
  the actuator and the link, and stays the same physical delay whatever the decision rate.
- **rate** groups primitive steps into one decision, over the delayed and limited actuation.
- **noise** is outermost: it perturbs exactly what the policy sees, once per decision, and
  the ``info["final_obs"]`` a learner stores; inside rate it would draw (and "hold"
  dropout would hold) readings of primitive steps nobody observes.
- **image_augment** (colour swap and jitter, crop, calibration shift of image entries) also
  changes only what the policy sees; it sits with noise, outermost.
"""

from __future__ import annotations

from dataclasses import dataclass

from embodied.sim.env import BatchedEnv
from embodied.sim2real.image_augment import ImageAugmentation, ImageAugmentCfg
from embodied.sim2real.latency import ActionLatency, LatencyCfg
from embodied.sim2real.noise import NoiseCfg, ObservationNoise
from embodied.sim2real.randomize import DomainRandomization, RandomizeCfg
from embodied.sim2real.rate import DecisionRate, RateCfg
from embodied.sim2real.safety import ActionSafety, SafetyCfg


@dataclass
class AdaptersCfg:
    randomize: RandomizeCfg | None = None
    """Domain randomisation per reset over the task's declared parameters."""
    safety: SafetyCfg | None = None
    """Actuator bounds, rate limits and NaN/inf replacement, directly on the env."""
    latency: LatencyCfg | None = None
    """Action delay in primitive steps."""
    rate: RateCfg | None = None
    """Primitive steps per policy decision."""
    noise: NoiseCfg | None = None
    """Observation noise, bias and dropout."""
    image_augment: ImageAugmentCfg | None = None
    """Augmentation of image observation entries (tasks with dict observations)."""


def wrap(env: BatchedEnv, cfg: AdaptersCfg) -> BatchedEnv:
    """``env`` wrapped in the adapters ``cfg`` switches on, innermost first (see module doc)."""
    if cfg.randomize is not None:
        env = DomainRandomization(env, cfg.randomize)
    if cfg.safety is not None:
        env = ActionSafety(env, cfg.safety)
    if cfg.latency is not None:
        env = ActionLatency(env, cfg.latency)
    if cfg.rate is not None:
        env = DecisionRate(env, cfg.rate)
    if cfg.noise is not None:
        env = ObservationNoise(env, cfg.noise)
    if cfg.image_augment is not None:
        env = ImageAugmentation(env, cfg.image_augment)
    return env
