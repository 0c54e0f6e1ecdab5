"""Plain NumPy (+ OpenCV) reference of the visuotactile image pipeline, one function per step.

Written independently of the Warp kernels in :mod:`.image` to check them in tests; slow and
simple, one image at a time. It shares only the definitions (pixel geometry, profile lookup,
marker layout) with the renderer:

- :func:`depth_map`: the gel's depth per pixel by dense sampling of each object's SDF along the
  pixel's vertical segment and bisection of the first crossing (no Newton steps, unlike the kernel).
- :func:`blur`: OpenCV ``GaussianBlur`` with replicated borders.
- :func:`gradient`: ``numpy.gradient`` in metres.
- :func:`shade`: the profile lookup plus background, before rounding.
- :func:`marker_cover`: marker-dot coverage per pixel, the shear displacement interpolated bilinearly.
- :func:`render`: all of it, returning the uint8 image and every intermediate map.
"""

from __future__ import annotations

import cv2
import numpy as np

from embodied.sim.tactile import reference as force_reference
from embodied.sim.tactile.calibration import ImageProfile, pixel_uv, poly_basis, slope_bins
from embodied.sim.tactile.config import TactileSensorCfg, pad_surface_z
from embodied.sim.tactile.image import (
    MARKER_DARKNESS,
    ImageGeometry,
    background_at,
    image_geometry,
    marker_layout,
    taxel_axes,
)
from embodied.sim.tactile.shapes import Shape


def _pose(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pose = np.asarray(pose, dtype=np.float64)
    return force_reference.quat_to_matrix_wxyz(pose[3:7]), pose[:3]


def depth_map(
    cfg: TactileSensorCfg,
    geom: ImageGeometry,
    shapes: list[Shape],
    pad_pose: np.ndarray,
    obj_pose: np.ndarray,
    samples: int = 64,
    bisections: int = 40,
) -> np.ndarray:
    """(H, W) float64 depth (m) of the gel under each pixel, clipped at ``cfg.max_depth``.

    For each object, the segment from ``max_depth`` below the undeformed surface up to it is
    sampled ``samples`` times from the bottom; the first sample inside the object brackets the
    object's lowest point, which bisection then pins down. Max over objects.
    """
    xs, ys = np.meshgrid(geom.pixel_x(), geom.pixel_y())
    zs = pad_surface_z(cfg, xs, ys)
    dmax = cfg.max_depth
    t = np.linspace(0.0, 1.0, samples)
    rot_p, pos_p = _pose(pad_pose)
    out = np.zeros(xs.shape)
    for k, shape in enumerate(shapes):
        rot_o, pos_o = _pose(obj_pose[k])

        def f(z: np.ndarray, shape: Shape = shape, rot_o: np.ndarray = rot_o, pos_o: np.ndarray = pos_o) -> np.ndarray:
            x = np.broadcast_to(xs[..., None], z.shape)
            y = np.broadcast_to(ys[..., None], z.shape)
            p_pad = np.stack([x, y, z], axis=-1)
            world = p_pad @ rot_p.T + pos_p
            local = (world - pos_o) @ rot_o  # R^T (w - t), row-vector form
            return force_reference.sdf(shape, local)[0]

        z = (zs - dmax)[..., None] + dmax * t  # (H, W, samples), bottom to top
        fz = f(z)
        inside = fz <= 0.0
        hit = inside.any(axis=-1)
        first = np.argmax(inside, axis=-1)
        lo = np.take_along_axis(z, np.maximum(first - 1, 0)[..., None], -1)[..., 0]
        hi = np.take_along_axis(z, first[..., None], -1)[..., 0]
        # a corner can dip into a segment between two samples: search the smallest sample's
        # neighbourhood for the minimum of the SDF (ternary search, unimodal there)
        j = np.argmin(fz, axis=-1)
        a = np.take_along_axis(z, np.maximum(j - 1, 0)[..., None], -1)[..., 0]
        b = np.take_along_axis(z, np.minimum(j + 1, samples - 1)[..., None], -1)[..., 0]
        for _ in range(bisections):
            m1, m2 = a + (b - a) / 3.0, b - (b - a) / 3.0
            left = f(m1[..., None])[..., 0] < f(m2[..., None])[..., 0]
            b = np.where(left, m2, b)
            a = np.where(left, a, m1)
        zmin = 0.5 * (a + b)
        nicked = ~hit & (f(zmin[..., None])[..., 0] <= 0.0)
        lo = np.where(nicked, np.take_along_axis(z, np.maximum(j - 1, 0)[..., None], -1)[..., 0], lo)
        hi = np.where(nicked, zmin, hi)
        hit |= nicked
        first = np.where(nicked, 1, first)
        depth = np.zeros(xs.shape)
        depth[hit & (first == 0)] = dmax
        todo = hit & (first > 0)
        if todo.any():
            for _ in range(bisections):
                mid = 0.5 * (lo + hi)
                inn = f(mid[..., None])[..., 0] <= 0.0
                hi = np.where(inn, mid, hi)
                lo = np.where(inn, lo, mid)
            depth[todo] = (zs - hi)[todo]
        out = np.maximum(out, depth)
    return out


def blur(depth: np.ndarray, geom: ImageGeometry) -> np.ndarray:
    """Gaussian blur of the depth map (float32 in, float64 out), replicated borders (OpenCV)."""
    if geom.blur_kernel == 1:
        return depth.astype(np.float64)
    k = geom.blur_kernel
    src = depth.astype(np.float32)
    return cv2.GaussianBlur(
        src, (k, k), geom.blur_sigma, sigmaY=geom.blur_sigma, borderType=cv2.BORDER_REPLICATE
    ).astype(np.float64)


def gradient(blurred: np.ndarray, geom: ImageGeometry) -> tuple[np.ndarray, np.ndarray]:
    """(gx, gy) of the blurred depth (dimensionless), central differences inside, one-sided at edges."""
    gy, gx = np.gradient(blurred, geom.pitch_y, geom.pitch_x)
    return gx, gy


def shade(gx: np.ndarray, gy: np.ndarray, background: np.ndarray, profile: ImageProfile) -> np.ndarray:
    """(H, W, 3) float64 colour before rounding: background + lookup(bin, u, v)."""
    h, w = gx.shape
    mag, direction = slope_bins(gx, gy, profile.n_mag, profile.n_dir, profile.max_slope)
    coeffs = profile.lookup[mag, direction].astype(np.float64)  # (H, W, 3, 6)
    u, v = pixel_uv(h, w)
    delta = np.einsum("hwck,hwk->hwc", coeffs, poly_basis(u, v))
    delta[mag == 0] = 0.0
    return background.astype(np.float64) + delta


def marker_cover(cfg: TactileSensorCfg, geom: ImageGeometry, displacement: np.ndarray | None = None) -> np.ndarray:
    """(H, W) fraction of each pixel covered by a marker dot; ``displacement`` (rows, cols, 2) m
    at the taxels moves the dots (each pixel looks up the dot at its position minus the
    displacement interpolated there)."""
    xs, ys = np.meshgrid(geom.pixel_x(), geom.pixel_y())
    if displacement is not None:
        tx, ty = taxel_axes(cfg)
        fx = np.clip((xs - tx[0]) / (tx[1] - tx[0]), 0, len(tx) - 1) if len(tx) > 1 else np.zeros_like(xs)
        fy = np.clip((ys - ty[0]) / (ty[1] - ty[0]), 0, len(ty) - 1) if len(ty) > 1 else np.zeros_like(ys)
        ca = np.minimum(np.floor(fx).astype(int), max(len(tx) - 2, 0))
        ra = np.minimum(np.floor(fy).astype(int), max(len(ty) - 2, 0))
        cb, rb = np.minimum(ca + 1, len(tx) - 1), np.minimum(ra + 1, len(ty) - 1)
        wx, wy = (fx - ca)[..., None], (fy - ra)[..., None]
        d = np.asarray(displacement, dtype=np.float64)
        disp = (d[ra, ca] * (1 - wx) + d[ra, cb] * wx) * (1 - wy) + (d[rb, ca] * (1 - wx) + d[rb, cb] * wx) * wy
        xs, ys = xs - disp[..., 0], ys - disp[..., 1]
    mx, my, radius = marker_layout(cfg, geom)
    sx = mx[1] - mx[0] if len(mx) > 1 else geom.fov[0]
    sy = my[1] - my[0] if len(my) > 1 else geom.fov[1]
    j = np.clip(np.floor((xs - mx[0]) / sx + 0.5).astype(int), 0, len(mx) - 1)
    q = np.clip(np.floor((ys - my[0]) / sy + 0.5).astype(int), 0, len(my) - 1)
    dist = np.hypot(xs - mx[j], ys - my[q])
    return np.clip((radius - dist) / geom.pitch_x + 0.5, 0.0, 1.0)


def render(
    cfg: TactileSensorCfg,
    profile: ImageProfile,
    shapes: list[Shape],
    pad_pose: np.ndarray,
    obj_pose: np.ndarray,
    resolution: str = "sensor",
    displacement: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One sensor's image and its intermediate maps.

    Args:
        pad_pose: (7,) pad frame; obj_pose: (O, 7) object frames (position, quaternion wxyz).
        displacement: optional (rows, cols, 2) marker displacement (m), used when ``cfg.markers``.
    Returns:
        dict with ``image`` (H, W, 3) uint8 RGB, ``depth``, ``blurred``, ``gx``, ``gy`` (H, W) float64.
    """
    geom = image_geometry(cfg, resolution)  # type: ignore[arg-type]
    depth = depth_map(cfg, geom, shapes, np.asarray(pad_pose), np.asarray(obj_pose).reshape(-1, 7))
    blurred = blur(depth, geom)
    gx, gy = gradient(blurred, geom)
    colour = shade(gx, gy, background_at(profile, geom.height, geom.width), profile)
    if cfg.markers:
        colour *= (1.0 - MARKER_DARKNESS * marker_cover(cfg, geom, displacement))[..., None]
    image = np.clip(np.floor(colour + 0.5), 0, 255).astype(np.uint8)
    return {"image": image, "depth": depth, "blurred": blurred, "gx": gx, "gy": gy}
