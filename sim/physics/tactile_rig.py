"""Choosing a tactile physics backend by name, and :class:`TactileRig`: backend + tactile sensor.

    rig = TactileRig("pinch_sphere", backend="mujoco", num_envs=4)
    forces = rig.step(targets)            # (4, 2, rows, cols, 3) force fields of both pads
    images = rig.images("policy")         # (4, 2, H, W, 3) uint8
    rig.reset(env_ids)                    # physics and the sensor's shear memory

Backends (:data:`BACKENDS`): ``"mujoco"`` (default, CPU), ``"mujoco_warp"`` (optional extra
``gpu``), ``"pybullet"``, ``"isaacgym"`` (when Isaac Gym is installed). All share one interface
(:class:`~embodied.sim.physics.tactile_backend.TactileBackend`) and one scene file.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch

from embodied.config import ConfigError
from embodied.sim.physics.tactile_backend import NUM_PADS, TactileBackend
from embodied.sim.physics.tactile_scene import TactileScene, load_scene

BACKENDS: dict[str, tuple[str, str, str]] = {
    "mujoco": ("embodied.sim.physics.tactile_mujoco:MujocoTactileBackend", "mujoco", "pip install mujoco"),
    "mujoco_warp": (
        "embodied.sim.physics.tactile_mjwarp:MjwarpTactileBackend",
        "mujoco_warp",
        "pip install 'embodied-suite[gpu]' (mujoco-warp)",
    ),
    "pybullet": ("embodied.sim.physics.tactile_pybullet:PybulletTactileBackend", "pybullet", "pip install pybullet"),
    "isaacgym": (
        "embodied.sim.physics.tactile_isaacgym:IsaacGymTactileBackend",
        "isaacgym",
        "install NVIDIA Isaac Gym Preview 4 (not on PyPI) and `import isaacgym` before torch",
    ),
}
"""name -> (class entry point, module that must import, how to install it)."""

BackendName = Literal["mujoco", "mujoco_warp", "pybullet", "isaacgym"]


def available_backends() -> list[str]:
    """Backend names whose engine can be imported here."""
    return [name for name, (_, module, _) in BACKENDS.items() if importlib.util.find_spec(module) is not None]


def make_tactile_backend(
    name: str,
    scene: TactileScene | str | Path = "pinch_sphere",
    num_envs: int = 1,
    device: str | torch.device = "cpu",
    **kwargs: Any,
) -> TactileBackend:
    """The scene in backend ``name`` (see :data:`BACKENDS`); ``kwargs`` go to the backend class."""
    if name not in BACKENDS:
        close = difflib.get_close_matches(str(name), list(BACKENDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown tactile backend {name!r}{hint}; options: {', '.join(BACKENDS)}")
    entry, module, install = BACKENDS[name]
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(
            f"tactile backend {name!r} needs {module!r}, which is not installed ({install}); "
            f"available here: {', '.join(available_backends())}"
        )
    mod, cls = entry.split(":")
    return getattr(importlib.import_module(mod), cls)(scene, num_envs, device, **kwargs)


class TactileRig:
    """A tactile gripper scene in one physics backend, with a :class:`TactileSensor` on both pads.

    The sensor's pad size comes from the scene (a given ``sensor_cfg`` must match it); its
    objects are the scene's sensed geoms. Every :meth:`step` advances the physics one control
    period and returns the force fields of that state (the sensor's ``dt`` is the period).
    """

    def __init__(
        self,
        scene: TactileScene | str | Path = "pinch_sphere",
        backend: str = "mujoco",
        num_envs: int = 1,
        sensor_cfg: Any = None,
        device: str | torch.device = "cpu",
        **backend_kwargs: Any,
    ) -> None:
        from embodied.sim.tactile.config import TactileSensorCfg
        from embodied.sim.tactile.sensor import TactileSensor

        scene = load_scene(scene)
        pad = scene.gripper.pad
        if not scene.sensed:
            raise ConfigError(f"tactile scene {scene.name!r} has no sensed geoms: the pads would see nothing")
        if sensor_cfg is None:
            depth = min(0.002, pad.thickness)
            sensor_cfg = TactileSensorCfg(
                pad_size=(pad.width, pad.length), gel_thickness=pad.thickness, max_depth=depth
            )
        elif tuple(sensor_cfg.pad_size) != (pad.width, pad.length):
            raise ConfigError(
                f"TactileSensorCfg.pad_size {tuple(sensor_cfg.pad_size)} does not match scene {scene.name!r}'s pad "
                f"({pad.width}, {pad.length}); use replace(cfg, pad_size={(pad.width, pad.length)})"
            )
        self.backend = make_tactile_backend(backend, scene, num_envs, device, **backend_kwargs)
        self.sensor = TactileSensor(
            sensor_cfg, num_envs, NUM_PADS, self.backend.tactile_shapes, device=self.backend.device
        )
        self.cfg = sensor_cfg
        self.num_envs = num_envs
        self.forces: torch.Tensor | None = None
        """The last force fields (N, 2, rows, cols, 3), or None before the first :meth:`read`."""

    @property
    def device(self) -> torch.device:
        return self.backend.device

    def read(self, dt: float | None = None) -> torch.Tensor:
        """Force fields (N, 2, rows, cols, 3) of the current state (``dt``: seconds since the last read)."""
        b = self.backend
        self.forces = self.sensor.force_field(b.pad_pose(), b.pad_vel(), b.obj_pose(), b.obj_vel(), dt=dt or b.dt)
        return self.forces

    def step(self, targets: torch.Tensor) -> torch.Tensor:
        """Advance the physics one control period towards ``targets`` (N, 7) and read the force fields."""
        self.backend.step(targets)
        return self.read(self.backend.dt)

    def images(self, resolution: Literal["sensor", "policy"] = "policy") -> torch.Tensor:
        """Visuotactile images (N, 2, H, W, 3) uint8 of the current state."""
        return self.sensor.image(self.backend.pad_pose(), self.backend.obj_pose(), resolution=resolution)

    def reset(
        self,
        env_ids: torch.Tensor | None = None,
        hand: torch.Tensor | None = None,
        object_pose: torch.Tensor | None = None,
    ) -> None:
        """Reset the physics of ``env_ids`` (see ``TactileBackend.reset``) and their shear memory."""
        self.backend.reset(env_ids, hand, object_pose)
        self.sensor.reset(env_ids)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> TactileRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sensor_cfg_for(scene: TactileScene | str | Path, **fields: Any) -> Any:
    """A ``TactileSensorCfg`` sized to the scene's pad, with ``fields`` changed."""
    from embodied.sim.tactile.config import TactileSensorCfg

    pad = load_scene(scene).gripper.pad
    base = TactileSensorCfg(
        pad_size=(pad.width, pad.length), gel_thickness=pad.thickness, max_depth=min(0.002, pad.thickness)
    )
    return replace(base, **fields)
