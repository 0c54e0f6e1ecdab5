"""TactileSensor: gel pads that read force fields and visuotactile images of nearby objects.

A sensor object serves ``num_envs`` environments with ``num_sensors`` pads each (all of one
:class:`TactileSensorCfg`); object ``k`` of every env has ``shapes[k]``, and every pad sees every
object of its env. Tensors are batch-first torch tensors on the sensor's device; Warp arrays
on the same device are accepted too (MuJoCo Warp callers, no host round trip)::

    sensor = TactileSensor(cfg, num_envs=N, num_sensors=S, shapes=[Sphere(0.01)], device="cpu")
    forces = sensor.force_field(pad_pose, pad_vel, obj_pose, obj_vel, dt=0.01)  # (N, S, rows, cols, 3)
    image = sensor.image(pad_pose, obj_pose, resolution="policy")              # (N, S, H, W, 3) uint8
    sensor.reset(env_ids)                                                      # clear shear memory

Poses are (..., 7) = position + quaternion wxyz, velocities (..., 6) = linear + angular, all in
world coordinates (see the tactile contract and :mod:`embodied.sim.tactile.force_field`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import warp as wp

from embodied.sim.tactile.config import TactileSensorCfg, taxel_layout
from embodied.sim.tactile.force_field import launch_force_field, pose_buffers, taxel_arrays
from embodied.sim.tactile.shapes import Shape, pack_shapes

ArrayLike = torch.Tensor | wp.array | np.ndarray


def _wp_device(device: torch.device) -> str:
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}"
    raise ValueError(f"TactileSensor runs on 'cpu' or 'cuda' devices, got {device}")


class TactileSensor:
    """Batched tactile pads: force fields (Warp kernel) and images (delegated to the imager)."""

    def __init__(
        self,
        cfg: TactileSensorCfg,
        num_envs: int,
        num_sensors: int,
        shapes: Sequence[Shape],
        device: str | torch.device = "cpu",
        validate: bool = True,
    ) -> None:
        """
        Args:
            cfg: the pads' config (validated when built).
            num_envs, num_sensors: batch sizes; every env has ``num_sensors`` pads.
            shapes: one shape per object; object k of every env has ``shapes[k]``.
            device: torch device of inputs and outputs ("cpu", "cuda", "cuda:1").
            validate: check every call's inputs (shape, dtype, device, NaN, zero quaternions);
                turn off in tight loops once a caller is known to be right.
        """
        if not isinstance(cfg, TactileSensorCfg):
            raise TypeError(f"cfg must be a TactileSensorCfg, got {type(cfg).__name__}")
        for name, value in (("num_envs", num_envs), ("num_sensors", num_sensors)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TactileSensor: {name} must be an int >= 1, got {value!r}")
        self.cfg = cfg
        self.num_envs = num_envs
        self.num_sensors = num_sensors
        self.shapes = list(shapes)
        self.num_objects = len(self.shapes)
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.wp_device = _wp_device(self.device)
        self.validate = validate
        self.packed_shapes = pack_shapes(self.shapes, device=self.wp_device)
        pos, frames = taxel_layout(cfg)
        self.taxel_positions = torch.as_tensor(pos, dtype=torch.float32, device=self.device)
        """(rows, cols, 3) taxel rest points in the pad frame (m)."""
        self.taxel_frames = torch.as_tensor(frames, dtype=torch.float32, device=self.device)
        """(rows, cols, 3, 3) taxel axes (columns t1, t2, n) in the pad frame."""
        self._taxel_pos, self._taxel_rot = taxel_arrays(pos, frames, self.wp_device)
        t = cfg.num_taxels
        self._prev_depth = torch.full((num_envs, num_sensors, t), -1.0, device=self.device)
        self._shear_disp = torch.zeros(num_envs, num_sensors, t, 2, device=self.device)
        self.last_depth = torch.zeros(num_envs, num_sensors, cfg.rows, cfg.cols, device=self.device)
        """(N, S, rows, cols) penetration depth (m) of the last :meth:`force_field` call."""
        self._params = {"kn": cfg.kn, "kd": cfg.kd, "kt": cfg.kt, "kt_spring": cfg.kt_spring, "mu": cfg.mu}
        self._imager: Any = None
        self._last_shear: torch.Tensor | None = None
        # persistent state, wrapped once (reset edits these tensors in place)
        self._prev_depth_wp = wp.from_torch(self._prev_depth)
        self._shear_disp_wp = wp.from_torch(self._shear_disp, dtype=wp.vec2)
        self._scratch = pose_buffers(num_envs, num_sensors, self.num_objects, self.wp_device)

    # -----------------------------------------------------------------------------------------

    @property
    def shear_displacement(self) -> torch.Tensor:
        """(N, S, rows, cols, 2) stick-slip memory: the gel's tangential displacement relative to the
        object since first contact (m, taxel frame), clipped at slip; a view."""
        return self._shear_disp.view(self.num_envs, self.num_sensors, self.cfg.rows, self.cfg.cols, 2)

    def force_field(
        self,
        pad_pose: ArrayLike,
        pad_vel: ArrayLike,
        obj_pose: ArrayLike,
        obj_vel: ArrayLike,
        dt: float,
    ) -> torch.Tensor:
        """Per-taxel forces (newtons) on each pad, in each taxel's frame.

        Args:
            pad_pose: (num_envs, num_sensors, 7) pad frames (position, quaternion wxyz), world.
            pad_vel: (num_envs, num_sensors, 6) pad linear (m/s) and angular (rad/s) velocity, world.
            obj_pose: (num_envs, num_objects, 7) object frames.
            obj_vel: (num_envs, num_objects, 6) object velocities.
            dt: seconds since the previous call (used by damping and the stick-slip memory).

        Returns:
            (num_envs, num_sensors, rows, cols, 3) float32: shear along pad x, shear along pad y,
            normal (>= 0). Updates :attr:`last_depth` and, for "stick_slip", the shear memory.
        """
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"TactileSensor.force_field: dt must be a finite number > 0 (s), got {dt!r}")
        n, s, o = self.num_envs, self.num_sensors, self.num_objects
        wp_arrays, views, from_warp = [], [], False
        for name, value, shape in (
            ("pad_pose", pad_pose, (n, s, 7)),
            ("pad_vel", pad_vel, (n, s, 6)),
            ("obj_pose", obj_pose, (n, o, 7)),
            ("obj_vel", obj_vel, (n, o, 6)),
        ):
            arr, view, is_wp = self._as_warp(name, value, shape)
            wp_arrays.append(arr)
            views.append((name, view))
            from_warp |= is_wp
        if self.validate:
            self._check_values(views)
        t = self.cfg.num_taxels
        forces = torch.empty(n, s, t, 3, device=self.device)
        depth = torch.empty(n, s, t, device=self.device)
        stream = None
        if self.device.type == "cuda":
            stream = wp.stream_from_torch(torch.cuda.current_stream(self.device))
            if from_warp:  # Warp inputs were written on Warp's stream: order torch's after it
                stream.wait_stream(wp.get_stream(self.wp_device))
        launch_force_field(
            self.packed_shapes,
            o,
            self._taxel_pos,
            self._taxel_rot,
            *wp_arrays,
            dt=float(dt),
            params=self._params,
            stick_slip=self.cfg.shear_model == "stick_slip",
            prev_depth=self._prev_depth_wp,
            shear_disp=self._shear_disp_wp,
            depth_out=wp.from_torch(depth, return_ctype=True),
            force_out=wp.from_torch(forces, dtype=wp.vec3, return_ctype=True),
            device=self.wp_device,
            stream=stream,
            scratch=self._scratch,
            dim=(n, s, t),
        )
        rows, cols = self.cfg.rows, self.cfg.cols
        self.last_depth = depth.view(n, s, rows, cols)
        out = forces.view(n, s, rows, cols, 3)
        self._last_shear = out[..., :2]
        return out

    def image(
        self,
        pad_pose: ArrayLike,
        obj_pose: ArrayLike,
        resolution: Literal["sensor", "policy"] = "sensor",
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Visuotactile RGB images, (num_envs, num_sensors, H, W, 3) uint8.

        ``out``: a uint8 tensor of that shape on the sensor's device to render into and return
        (saves allocating a fresh batch of images per call; ~1.4x more images/s at 1024 envs).

        ``resolution="sensor"`` gives ``cfg.image_resolution``, ``"policy"`` gives
        ``cfg.policy_resolution``. Rendering is :class:`embodied.sim.tactile.image.TactileImager`.
        With ``cfg.markers`` on, the markers move by the last :meth:`force_field` call's shear
        divided by ``kt_spring`` (the gel's elastic tangential displacement).
        """
        if resolution not in ("sensor", "policy"):
            raise ValueError(f"TactileSensor.image: resolution must be 'sensor' or 'policy', got {resolution!r}")
        n, s, o = self.num_envs, self.num_sensors, self.num_objects
        if self.validate:  # the imager copies the poses itself: checked views only, no Warp arguments
            views = [
                (name, self._as_warp(name, value, shape, warp_argument=False)[1])
                for name, value, shape in (("pad_pose", pad_pose, (n, s, 7)), ("obj_pose", obj_pose, (n, o, 7)))
            ]
            self._check_values(views)
        if self._imager is None:
            from embodied.sim.tactile.image import TactileImager  # lazy: OpenCV and the image kernels

            self._imager = TactileImager(self.cfg, n, s, self.packed_shapes, self.wp_device)
        displacement = None
        if self.cfg.markers and self._last_shear is not None and self.cfg.kt_spring > 0:
            # the gel surface follows the shear elastically: displacement = shear / kt_spring
            # (in the stick-slip model this is exactly minus the anchored memory)
            displacement = self._last_shear / self.cfg.kt_spring
        return self._imager.render(pad_pose, obj_pose, resolution, marker_displacement=displacement, out=out)

    def reset(self, env_ids: torch.Tensor | Sequence[int] | None = None) -> None:
        """Forget the shear memory and damping history of ``env_ids`` (all envs when None)."""
        if env_ids is None:
            self._shear_disp.zero_()
            self._prev_depth.fill_(-1.0)
            self._last_shear = None
            return
        ids = torch.as_tensor(env_ids, device=self.device)
        if ids.dtype == torch.bool:
            if ids.shape != (self.num_envs,):
                raise ValueError(
                    f"TactileSensor.reset: a bool env_ids mask needs shape ({self.num_envs},), got {tuple(ids.shape)}"
                )
            ids = ids.nonzero().flatten()
        if ids.dtype.is_floating_point or ids.dim() > 1:
            raise ValueError(
                f"TactileSensor.reset: env_ids must be a 1-D integer tensor, got {ids.dtype} {tuple(ids.shape)}"
            )
        ids = ids.flatten().long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_envs):
            raise ValueError(f"TactileSensor.reset: env_ids must lie in [0, {self.num_envs - 1}], got {ids.tolist()}")
        self._shear_disp[ids] = 0.0
        self._prev_depth[ids] = -1.0
        if self._last_shear is not None:
            self._last_shear = self._last_shear.clone()
            self._last_shear[ids] = 0.0

    # -----------------------------------------------------------------------------------------

    def _as_warp(
        self, name: str, value: ArrayLike, shape: tuple[int, ...], warp_argument: bool = True
    ) -> tuple[Any, torch.Tensor, bool]:
        """(a float32 Warp argument (None unless ``warp_argument``), a torch view of the same data,
        whether it came as a Warp array).

        Shapes, dtypes and devices are checked here; values in :meth:`_check_values`.
        """
        if isinstance(value, wp.array):
            if value.dtype != wp.float32 or value.ndim != len(shape):
                raise TypeError(
                    f"TactileSensor: {name} as a Warp array must be float32 with {len(shape)} dims "
                    f"(shape {shape}), got dtype {value.dtype.__name__} shape {value.shape}"
                )
            if str(value.device) != self.wp_device:
                raise ValueError(
                    f"TactileSensor: {name} is on Warp device {value.device}, the sensor on {self.wp_device}"
                )
            if tuple(value.shape) != shape:
                raise ValueError(f"TactileSensor: {name} must have shape {shape}, got {tuple(value.shape)}")
            if not value.is_contiguous:
                raise ValueError(f"TactileSensor: {name} must be a contiguous Warp array")
            return value, wp.to_torch(value), True
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"TactileSensor: {name} must be a torch tensor or Warp array, got {type(value).__name__}")
        if not value.dtype.is_floating_point:
            raise TypeError(f"TactileSensor: {name} must hold floats (float32 preferred), got {value.dtype}")
        if tuple(value.shape) != shape:
            raise ValueError(f"TactileSensor: {name} must have shape {shape}, got {tuple(value.shape)}")
        if value.device != self.device:
            raise ValueError(f"TactileSensor: {name} is on {value.device}, the sensor on {self.device}")
        value = value.to(dtype=torch.float32).contiguous()
        if not warp_argument:
            return None, value, False
        # a bare descriptor launches faster than a wp.array; ``value`` outlives the launch (same stream)
        return wp.from_torch(value, return_ctype=True), value, False

    @staticmethod
    def _check_values(views: list[tuple[str, torch.Tensor]]) -> None:
        """NaN/inf and zero quaternions, with one host sync when everything is fine."""
        if all(v.device.type == "cpu" for _, v in views):  # NumPy is cheaper than torch on small CPU arrays
            # The fast path: a sum is finite only when every value is (a false alarm from an
            # overflowing sum falls through to the exact checks below).
            ok = True
            for name, value in views:
                a = value.numpy()
                ok = ok and bool(np.isfinite(a.sum()))
                if name.endswith("pose"):
                    ok = ok and bool(np.abs(a[..., 3:7]).max(axis=-1).min() >= 1e-6)
            if ok:
                return
        flags = []
        for name, value in views:
            flags.append(~torch.isfinite(value).all())
            if name.endswith("pose"):
                flags.append((value[..., 3:7].abs().amax(dim=-1) < 1e-6).any())
        if not bool(torch.stack(flags).any()):
            return
        for name, value in views:
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"TactileSensor: {name} contains NaN or inf values")
            if name.endswith("pose") and bool((value[..., 3:7].abs().amax(dim=-1) < 1e-6).any()):
                raise ValueError(f"TactileSensor: {name} has a zero quaternion (wxyz in [..., 3:7]); use (1, 0, 0, 0)")
