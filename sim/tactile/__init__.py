"""Tactile sensor simulation (TacSL-style): force fields and visuotactile images in Warp.

- :mod:`.shapes`: contact geometry (primitives, SDF grids) and its Warp packing, ``shape_sdf``.
- :mod:`.config`: :class:`TactileSensorCfg` (units, force model, image fields), taxel layout.
- :mod:`.force_field`: the batched force-field kernel (one launch for envs x sensors x taxels).
- :mod:`.sensor`: :class:`TactileSensor`, the user-facing API.
- :mod:`.reference`: plain NumPy versions of the SDFs and the force field, used by the tests.

Importing this package imports Warp (CPU kernels compile once, then load from Warp's cache).
"""

from embodied.sim.tactile.config import PROFILES, TactileSensorCfg, taxel_layout
from embodied.sim.tactile.sensor import TactileSensor
from embodied.sim.tactile.shapes import Box, Capsule, Cylinder, Plane, SdfGrid, Sphere, pack_shapes

__all__ = [
    "PROFILES",
    "Box",
    "Capsule",
    "Cylinder",
    "Plane",
    "SdfGrid",
    "Sphere",
    "TactileSensor",
    "TactileSensorCfg",
    "pack_shapes",
    "taxel_layout",
]
