"""The tactile sensor's config (:class:`TactileSensorCfg`) and the taxel layout it implies.

Units (SI) and the force model, all calibratable per sensor:

- ``kn`` is the normal stiffness **per taxel** in N/m: a taxel pressed ``d`` metres into an
  object reads ``kn * d`` newtons, so a flat indenter at depth ``d`` covering the whole pad gives
  a total of ``kn * d * rows * cols``. The default 20 N/m per taxel puts a 20x25 pad at
  1e4 N/m overall (10 N for a 1 mm press), the order of a GelSight-style elastomer pad.
  Changing ``rows``/``cols`` changes the per-taxel share: scale ``kn`` by the taxel count to
  keep the pad's total stiffness.
- ``kd`` adds Hunt-Crossley damping ``kd * d_dot * d`` (N s/m^2 per taxel; 0 = off, TacSL's
  released default); the normal force never goes below zero.
- Shear: ``shear_model="velocity"`` (TacSL's memoryless model) gives
  ``ft = -min(kt * |vt|, mu * fn) * vt / |vt|`` with ``kt`` in N s/m per taxel and ``vt`` the
  taxel's tangential velocity relative to the object. ``"stick_slip"`` keeps a per-taxel
  anchored tangential displacement ``u`` (m) that accumulates relative tangential motion while
  in contact: ``ft = -kt_spring * u`` (``kt_spring`` N/m per taxel), rescaled to the Coulomb cap
  ``mu * fn`` when it would exceed it (slip), and cleared when the taxel leaves contact.

The image fields (profile, resolutions, blur, markers, gel thickness) are read by
``embodied.sim.tactile.image``; the profile table gives each sensor's native resolution and
pixel size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from embodied.config import ConfigError

ProfileName = Literal["gelsight_r15", "gelsight_mini", "digit"]


@dataclass(frozen=True)
class SensorProfile:
    """A camera-based tactile sensor's native image: (H, W) pixels and pixel size (m)."""

    resolution: tuple[int, int]
    pixel_size: float


PROFILES: dict[str, SensorProfile] = {
    # TacSL's GelSight R1.5 depth camera: 320x240 at 0.0877 mm per pixel (about 28 x 21 mm)
    "gelsight_r15": SensorProfile(resolution=(240, 320), pixel_size=0.0877e-3),
    # GelSight Mini: 320x240 at 0.065 mm per pixel (about 21 x 16 mm)
    "gelsight_mini": SensorProfile(resolution=(240, 320), pixel_size=0.065e-3),
    # DIGIT: portrait 240 wide x 320 high, sensing area about 16 x 19 mm
    "digit": SensorProfile(resolution=(320, 240), pixel_size=0.06e-3),
}


@dataclass
class TactileSensorCfg:
    """One kind of gel pad; every sensor of a :class:`TactileSensor` shares it."""

    rows: int = 20
    """Taxel rows, laid along the pad's length (+y)."""
    cols: int = 25
    """Taxel columns, laid along the pad's width (+x)."""
    pad_size: tuple[float, float] = (0.025, 0.02)
    """Gel pad (width along x, length along y) in m; with 20x25 taxels this gives a near-square pitch."""
    margin: float = 0.003
    """Border (m) between the pad's edge and the outermost taxels."""
    dome_radius: float | None = None
    """Radius (m) of a spherical dome on the gel (centre of the pad highest); None = flat."""
    kn: float = 20.0
    """Normal stiffness per taxel (N/m): force = kn * penetration depth."""
    kd: float = 0.0
    """Hunt-Crossley damping per taxel (N s/m^2): adds kd * d_dot * depth; 0 = off."""
    kt: float = 10.0
    """Viscous shear coefficient per taxel (N s/m) of the "velocity" shear model."""
    kt_spring: float = 10.0
    """Tangential spring stiffness per taxel (N/m) of the "stick_slip" shear model."""
    mu: float = 1.0
    """Coulomb friction coefficient: |shear| <= mu * normal at every taxel."""
    shear_model: Literal["velocity", "stick_slip"] = "velocity"
    """"velocity": memoryless viscous shear (TacSL); "stick_slip": shear with displacement memory."""
    profile: ProfileName = "gelsight_r15"
    """Camera-based sensor whose image calibration, resolution and pixel size are used."""
    sensor_resolution: tuple[int, int] | None = None
    """Native image (H, W) in pixels; None = the profile's (see :attr:`image_resolution`)."""
    policy_resolution: tuple[int, int] = (60, 80)
    """Image (H, W) handed to policies, covering the same field of view as the native image.
    The default is landscape; DIGIT's gel is portrait, so use (80, 60) with it for square pixels."""
    pixel_size: float | None = None
    """Size of one native pixel on the gel (m); None = the profile's."""
    blur_kernel: int = 5
    """Odd width (pixels) of the blur applied to the gel's height map; 1 = none."""
    markers: bool = False
    """Draw marker dots on the gel, displaced by the shear field."""
    marker_grid: tuple[int, int] = (7, 9)
    """Marker dots (rows, cols) when ``markers`` is on."""
    gel_thickness: float = 0.004
    """Elastomer thickness (m)."""
    max_depth: float = 0.002
    """Deepest indentation (m) the image shows; deeper is clipped. At most ``gel_thickness``."""

    def __post_init__(self) -> None:
        _check_int(self, "rows", 1, 4096)
        _check_int(self, "cols", 1, 4096)
        w, length = _check_pair(self, "pad_size", float)
        _check_float(self, "margin", 0.0, None, unit="m")
        if 2.0 * self.margin >= min(w, length):
            raise ConfigError(
                f"TactileSensorCfg.margin must be < half the pad's shorter side ({min(w, length) / 2} m), "
                f"got {self.margin!r}"
            )
        if self.dome_radius is not None:
            _check_float(self, "dome_radius", 0.0, None, unit="m", open_low=True)
            half_diag = 0.5 * math.hypot(w, length)
            if self.dome_radius <= half_diag:
                raise ConfigError(
                    f"TactileSensorCfg.dome_radius must exceed half the pad diagonal ({half_diag:.4g} m) "
                    f"so the dome covers the pad, got {self.dome_radius!r}; use None for a flat pad"
                )
        _check_float(self, "kn", 0.0, None, unit="N/m per taxel", open_low=True)
        _check_float(self, "kd", 0.0, None, unit="N s/m^2 per taxel")
        _check_float(self, "kt", 0.0, None, unit="N s/m per taxel")
        _check_float(self, "kt_spring", 0.0, None, unit="N/m per taxel")
        _check_float(self, "mu", 0.0, None, unit="")
        _check_choice(self, "shear_model", ("velocity", "stick_slip"))
        _check_choice(self, "profile", tuple(PROFILES))
        if self.sensor_resolution is not None:
            _check_pair(self, "sensor_resolution", int)
        _check_pair(self, "policy_resolution", int)
        if self.pixel_size is not None:
            _check_float(self, "pixel_size", 0.0, None, unit="m", open_low=True)
        _check_int(self, "blur_kernel", 1, 63)
        if self.blur_kernel % 2 == 0:
            raise ConfigError(f"TactileSensorCfg.blur_kernel must be odd (1, 3, 5, ...), got {self.blur_kernel}")
        if not isinstance(self.markers, bool):
            raise ConfigError(f"TactileSensorCfg.markers must be a bool, got {self.markers!r}")
        _check_pair(self, "marker_grid", int)
        _check_float(self, "gel_thickness", 0.0, None, unit="m", open_low=True)
        _check_float(self, "max_depth", 0.0, self.gel_thickness, unit="m", open_low=True)

    @property
    def num_taxels(self) -> int:
        return self.rows * self.cols

    @property
    def image_resolution(self) -> tuple[int, int]:
        """Native image (H, W): ``sensor_resolution`` or the profile's."""
        return self.sensor_resolution or PROFILES[self.profile].resolution

    @property
    def image_field_of_view(self) -> tuple[float, float]:
        """(width, length) in metres of gel the camera sees: the native resolution times
        ``pixel_size`` when that is set, else the profile's native image (so a coarser
        ``sensor_resolution`` samples the same gel more coarsely instead of cropping it)."""
        if self.pixel_size is not None:
            h, w = self.image_resolution
            return w * self.pixel_size, h * self.pixel_size
        native = PROFILES[self.profile]
        h, w = native.resolution
        return w * native.pixel_size, h * native.pixel_size

    @property
    def image_pixel_size(self) -> float:
        """Width (m) of one native pixel on the gel, along x: field of view / columns."""
        return self.image_field_of_view[0] / self.image_resolution[1]

    @property
    def taxel_pitch(self) -> tuple[float, float]:
        """Distance (m) between neighbouring taxels along x (columns) and y (rows); 0 for one taxel."""
        w, length = self.pad_size
        px = (w - 2 * self.margin) / (self.cols - 1) if self.cols > 1 else 0.0
        py = (length - 2 * self.margin) / (self.rows - 1) if self.rows > 1 else 0.0
        return px, py


def pad_surface_z(cfg: TactileSensorCfg, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height (m, pad frame) of the undeformed gel surface at pad coordinates (x, y).

    Flat pads are at z = 0; a dome of radius R is highest (z = 0) at the centre:
    ``z = sqrt(R^2 - x^2 - y^2) - R``.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if cfg.dome_radius is None:
        return np.zeros(np.broadcast(x, y).shape)
    r = cfg.dome_radius
    return np.sqrt(np.maximum(r * r - x * x - y * y, 0.0)) - r


def taxel_layout(cfg: TactileSensorCfg) -> tuple[np.ndarray, np.ndarray]:
    """Taxel positions and frames in the pad frame.

    Returns:
        positions: (rows, cols, 3) float64, taxel (r, c) at
            ``x = -w/2 + margin + c * pitch_x``, ``y = -l/2 + margin + r * pitch_y``, on the gel
            surface (:func:`pad_surface_z`); a single row or column sits on the centre line.
        frames: (rows, cols, 3, 3) float64 rotation matrices whose columns are the taxel's axes
            (t1, t2, n): n the gel's outward normal, t1 the pad's x projected onto the surface,
            t2 = n x t1. Flat pads give the identity everywhere.
    """
    w, length = cfg.pad_size
    px, py = cfg.taxel_pitch
    xs = -w / 2 + cfg.margin + np.arange(cfg.cols) * px if cfg.cols > 1 else np.zeros(1)
    ys = -length / 2 + cfg.margin + np.arange(cfg.rows) * py if cfg.rows > 1 else np.zeros(1)
    x, y = np.meshgrid(xs, ys)  # (rows, cols)
    z = pad_surface_z(cfg, x, y)
    pos = np.stack([x, y, z], axis=-1)
    if cfg.dome_radius is None:
        n = np.broadcast_to(np.array([0.0, 0.0, 1.0]), pos.shape).copy()
    else:
        centre = np.array([0.0, 0.0, -cfg.dome_radius])
        n = pos - centre
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
    ex = np.array([1.0, 0.0, 0.0])
    t1 = ex - (n @ ex)[..., None] * n
    t1 /= np.linalg.norm(t1, axis=-1, keepdims=True)
    t2 = np.cross(n, t1)
    frames = np.stack([t1, t2, n], axis=-1)
    return pos, frames


# ---------------------------------------------------------------------------------------------
# validation helpers: every error names the field, what it got and what is allowed


def _fail(name: str, allowed: str, value: Any) -> ConfigError:
    return ConfigError(f"TactileSensorCfg.{name} must be {allowed}, got {value!r}")


def _check_int(cfg: TactileSensorCfg, name: str, lo: int, hi: int) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise _fail(name, f"an int in [{lo}, {hi}]", v)


def _check_float(
    cfg: TactileSensorCfg,
    name: str,
    lo: float,
    hi: float | None,
    unit: str,
    open_low: bool = False,
) -> None:
    v = getattr(cfg, name)
    unit_txt = f" ({unit})" if unit else ""
    rng = f"{'>' if open_low else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise _fail(name, f"a finite number {rng}{unit_txt}", v)
    f = float(v)
    bad = not math.isfinite(f) or f < lo or (open_low and f == lo) or (hi is not None and f > hi)
    if bad:
        raise _fail(name, f"a finite number {rng}{unit_txt}", v)
    setattr(cfg, name, f)


def _check_pair(cfg: TactileSensorCfg, name: str, kind: type) -> tuple[Any, Any]:
    v = getattr(cfg, name)
    what = "two ints >= 1" if kind is int else "two finite numbers > 0 (m)"
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise _fail(name, what, v)
    out = []
    for item in v:
        if isinstance(item, bool) or not isinstance(item, (int, float, np.integer, np.floating)):
            raise _fail(name, what, v)
        if kind is int:
            if not float(item).is_integer() or item < 1 or item > 16384:
                raise _fail(name, what + " (at most 16384)", v)
            out.append(int(item))
        else:
            if not math.isfinite(float(item)) or item <= 0:
                raise _fail(name, what, v)
            out.append(float(item))
    setattr(cfg, name, tuple(out))
    return out[0], out[1]


def _check_choice(cfg: TactileSensorCfg, name: str, options: tuple[str, ...]) -> None:
    v = getattr(cfg, name)
    if v not in options:
        raise _fail(name, f"one of {list(options)}", v)
