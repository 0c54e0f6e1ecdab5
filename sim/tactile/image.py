"""Visuotactile images in Warp: every env's and sensor's gel image in one set of launches.

    imager = TactileImager(cfg, num_envs, num_sensors, packed_shapes, device="cpu")
    rgb = imager.render(pad_pose, obj_pose, resolution="sensor")   # (N, S, H, W, 3) uint8, RGB

The camera sits inside the finger and looks along the pad frame's +z, orthographically, at the
profile's field of view (native pixels x pixel size) centred on the pad origin; image column c
grows with pad x, row r with pad y, and pixel (r, c) sees
``x = (c + 0.5) * pitch_x - fov_w / 2``, ``y = (r + 0.5) * pitch_y - fov_h / 2``.
Every resolution shows the same gel area: pitch = field of view / pixels (see
:func:`image_geometry`).

Pipeline (each step has a NumPy twin in :mod:`.image_reference`):

1. **Depth** ``d(x, y)`` (m, >= 0, clipped at ``cfg.max_depth``): how far the gel surface is
   pushed in, i.e. the lowest point of any object on the pixel's vertical segment from the
   undeformed surface (flat, or ``cfg.dome_radius``) down to ``max_depth`` below it; max over
   objects. Found from the shapes' SDFs with Newton steps on ``sdf(z)`` along the segment:
   for the (convex) primitives, one step down from the surface when it is inside the object,
   then steps up from below, which never overshoot a convex shape (exact for planes and boxes,
   two or three steps for curved ones); plain sphere tracing up from the bottom for SDF grids
   (meshes, possibly non-convex).
2. **Blur**: a ``cfg.blur_kernel``-wide Gaussian (OpenCV's default sigma for that width at the
   sensor resolution, the same width in metres at other resolutions), edges replicated.
3. **Gradient** of the blurred depth, central differences (one-sided at the border), as
   ``numpy.gradient`` does.
4. **Shading**: the profile's calibrated lookup (:mod:`.calibration`) by slope magnitude and
   direction bin, a quadratic over the image, added to the profile's background.
5. **Markers** (``cfg.markers``, off by default): a ``cfg.marker_grid`` of dark dots, displaced
   by an optional per-taxel displacement field ``(N, S, rows, cols, 2)`` (m, pad x/y) that is
   interpolated bilinearly to pixels.

Speed (Warp runs CPU kernels on one thread): the image is cut into 8x8 tiles. A tile whose slab
of gel (its pixels down to ``max_depth``) lies farther from every object than the slab's
bounding radius cannot be touched (SDFs are 1-Lipschitz), so the depth is computed only over
the bounding box of the remaining tiles, blurred over that box plus the blur radius and shaded
over one more pixel; pixels with zero slope keep the background, which one torch copy put
everywhere first. Cost thus scales with the contact area, not the image. Measured on the 2-core
CI machine (per CPU-second, both pads of every env pressed 1 mm by a 6 mm ball): about 2,600 to
3,800 images/s at 160x120, 7,000-10,000 at 80x60, 1,000 at 320x240, for 64 to 1024 envs.

On the CPU the batch is also split into contiguous chunks of images rendered on ``threads``
threads at once (default: every core this process may use; at least
``MIN_IMAGES_PER_THREAD`` images a thread): Warp's CPU launches release the GIL, so two cores
render 64 pinches in 0.55-0.6 of the time one takes. The launches are recorded once per
resolution and replayed on fixed input buffers: packing their arguments in Python cost about a
third of a one-pinch render (1.1 -> 0.7 ms for two 160x120 images).

Policy resolution is rendered **directly** (same field of view, coarser pitch, blur scaled in
metres), not by resizing the sensor image: 80x60 is ~2.5x faster than 160x120 and agrees with
OpenCV ``INTER_AREA`` resizing of the sensor image to within a few levels on average
(``tests/test_tactile_image.py``; the direct image is a little sharper at the contact rim).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import torch
import warp as wp

from embodied.sim.batch_threads import BatchThreads
from embodied.sim.tactile.calibration import ImageProfile, load_profile
from embodied.sim.tactile.config import PROFILES, TactileSensorCfg
from embodied.sim.tactile.shapes import SHAPE_SDF_GRID, PackedShapes, load_pose, shape_sdf

wp.config.quiet = True
# Warp unrolls constant-bound loops up to 16 times; the SDF march inlines every shape's SDF, so
# unrolling its 16 iterations bloats the code and costs more than it saves (measured: the depth
# kernel ran 40 % faster without).
wp.set_module_options({"max_unroll": 4})

TILE = 8
"""Tile edge (pixels) of the contact culling."""
NEWTON_ITERS = 16
HIT_TOL = 5.0e-8  # m: a march point this close to the surface is on it (float32 poses: ~1e-8)
LOOSE_TOL = 1.0e-5  # m: accepted after the last iteration, SDF grids only (grazing rays crawl)
MIN_IMAGES_PER_THREAD = 2
"""The CPU renders a batch on several threads only when each gets at least this many images."""
MARKER_RADIUS_FRACTION = 0.12
"""Marker dot radius as a fraction of the marker spacing (GelSight-like: ~0.4 mm at ~3 mm)."""
MARKER_DARKNESS = 0.8
"""A marker pixel keeps ``1 - MARKER_DARKNESS`` of the gel's colour."""

Resolution = Literal["sensor", "policy"]


# ---------------------------------------------------------------------------------------------
# Geometry of an image (pure Python, shared with the NumPy reference)


@dataclass(frozen=True)
class ImageGeometry:
    """Where the pixels of one image resolution sit on the gel, and the blur at that resolution."""

    height: int
    width: int
    pitch_x: float
    """Metres of gel per pixel along x (columns)."""
    pitch_y: float
    fov: tuple[float, float]
    """(width along x, length along y) in metres."""
    blur_kernel: int
    blur_sigma: float
    """Gaussian sigma in pixels of this resolution (0 when blur_kernel == 1)."""

    def pixel_x(self) -> np.ndarray:
        """(W,) pad-frame x (m) of each column's pixel centres."""
        return (np.arange(self.width) + 0.5) * self.pitch_x - self.fov[0] / 2

    def pixel_y(self) -> np.ndarray:
        """(H,) pad-frame y (m) of each row's pixel centres."""
        return (np.arange(self.height) + 0.5) * self.pitch_y - self.fov[1] / 2

    def blur_weights(self) -> np.ndarray:
        """(blur_kernel,) normalised 1-D Gaussian (float64), applied along rows and columns."""
        if self.blur_kernel == 1:
            return np.ones(1)
        return cv2.getGaussianKernel(self.blur_kernel, self.blur_sigma, cv2.CV_64F).reshape(-1)


def _default_sigma(ksize: int) -> float:
    """OpenCV's sigma for a Gaussian of width ``ksize`` when none is given."""
    return 0.3 * ((ksize - 1) * 0.5 - 1.0) + 0.8


def field_of_view(cfg: TactileSensorCfg) -> tuple[float, float]:
    """(width, length) in metres of gel the camera sees (:attr:`TactileSensorCfg.image_field_of_view`)."""
    return cfg.image_field_of_view


def image_geometry(cfg: TactileSensorCfg, resolution: Resolution | tuple[int, int] = "sensor") -> ImageGeometry:
    """The :class:`ImageGeometry` of ``"sensor"``, ``"policy"`` or an explicit (H, W)."""
    if resolution == "sensor":
        h, w = cfg.image_resolution
    elif resolution == "policy":
        h, w = cfg.policy_resolution
    elif isinstance(resolution, tuple) and len(resolution) == 2:
        h, w = int(resolution[0]), int(resolution[1])
    else:
        raise ValueError(f"resolution must be 'sensor', 'policy' or (H, W), got {resolution!r}")
    if h < 2 or w < 2:
        raise ValueError(f"tactile images need at least 2x2 pixels, got {h}x{w}")
    fov_w, fov_h = field_of_view(cfg)
    sh, sw = cfg.image_resolution
    sensor_pitch = fov_w / sw
    pitch_x, pitch_y = fov_w / w, fov_h / h
    k = cfg.blur_kernel
    # blur is set in sensor pixels; keep its width in metres at other resolutions
    sigma = 0.0 if k == 1 else _default_sigma(k) * sensor_pitch / pitch_x
    return ImageGeometry(h, w, pitch_x, pitch_y, (fov_w, fov_h), k, sigma)


def background_at(profile: ImageProfile, height: int, width: int) -> np.ndarray:
    """The profile's background resized (OpenCV: INTER_AREA down, INTER_LINEAR up) to (H, W)."""
    if profile.resolution == (height, width):
        return profile.background
    shrink = height * width < profile.resolution[0] * profile.resolution[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(profile.background, (width, height), interpolation=interp)


def marker_layout(cfg: TactileSensorCfg, geom: ImageGeometry) -> tuple[np.ndarray, np.ndarray, float]:
    """Rest positions of the marker dots: x (cols,), y (rows,) in m, and the dot radius (m).

    The ``cfg.marker_grid`` (rows, cols) spreads evenly over the field of view, half a spacing
    from each edge.
    """
    rows, cols = cfg.marker_grid
    sx, sy = geom.fov[0] / cols, geom.fov[1] / rows
    xs = (np.arange(cols) + 0.5) * sx - geom.fov[0] / 2
    ys = (np.arange(rows) + 0.5) * sy - geom.fov[1] / 2
    return xs, ys, MARKER_RADIUS_FRACTION * min(sx, sy)


def taxel_axes(cfg: TactileSensorCfg) -> tuple[np.ndarray, np.ndarray]:
    """Pad-frame x of the taxel columns (cols,) and y of the taxel rows (rows,), in m."""
    w, length = cfg.pad_size
    px, py = cfg.taxel_pitch
    xs = -w / 2 + cfg.margin + np.arange(cfg.cols) * px if cfg.cols > 1 else np.zeros(1)
    ys = -length / 2 + cfg.margin + np.arange(cfg.rows) * py if cfg.rows > 1 else np.zeros(1)
    return xs, ys


# ---------------------------------------------------------------------------------------------
# Warp kernels


@wp.struct
class Raster:
    """Everything the kernels need about one image resolution."""

    height: int
    width: int
    tile: int
    px: float
    py: float
    x0: float
    y0: float
    dome_r: float
    max_depth: float
    blur_r: int
    blur_w: wp.array(dtype=float)
    n_mag: int
    n_dir: int
    inv_mag_step: float
    dir_scale: float
    lookup: wp.array(dtype=float)
    background: wp.array3d(dtype=wp.uint8)
    markers: int
    m_rows: int
    m_cols: int
    m_sx: float
    m_sy: float
    m_x0: float
    m_y0: float
    m_radius: float
    t_rows: int
    t_cols: int
    t_x0: float
    t_y0: float
    t_px: float
    t_py: float


@wp.func
def _atan_unit(x: float) -> float:
    """atan(x) for 0 <= x <= 1 (Abramowitz & Stegun 4.4.49, |error| <= 2e-8 rad)."""
    x2 = x * x
    p = -0.0161657367 + x2 * 0.0028662257
    p = 0.0429096138 + x2 * p
    p = -0.0752896400 + x2 * p
    p = 0.1065626393 + x2 * p
    p = -0.1420889944 + x2 * p
    p = 0.1999355085 + x2 * p
    p = -0.3333314528 + x2 * p
    return x * (1.0 + x2 * p)


@wp.func
def _atan2(y: float, x: float) -> float:
    """atan2 in float32 precision, a few times cheaper than the libm call on Warp's CPU path."""
    ax = wp.abs(x)
    ay = wp.abs(y)
    hi = wp.max(ax, ay)
    if hi == 0.0:
        return 0.0
    a = _atan_unit(wp.min(ax, ay) / hi)
    if ay > ax:
        a = 0.5 * wp.pi - a
    if x < 0.0:
        a = wp.pi - a
    if y < 0.0:
        a = -a
    return a


@wp.func
def _surface_z(x: float, y: float, dome_r: float) -> float:
    if dome_r <= 0.0:
        return 0.0
    return wp.sqrt(wp.max(dome_r * dome_r - x * x - y * y, 0.0)) - dome_r


@wp.func
def _column_depth(
    shapes: PackedShapes, k: int, xf: wp.transform, x: float, y: float, z_top: float, max_depth: float
) -> float:
    """Depth below ``z_top`` of object k's lowest point on the segment [z_top - max_depth, z_top]."""
    # the segment in the object's frame: p(z) = p0 + z * up (one transform per pixel, not per step)
    p0 = wp.transform_point(xf, wp.vec3(x, y, 0.0))
    up = wp.transform_vector(xf, wp.vec3(0.0, 0.0, 1.0))
    convex = shapes.types[k] != SHAPE_SDF_GRID
    z = z_top - max_depth
    if convex:
        # start at the surface: far away -> no contact; inside -> one Newton step down, which for
        # a convex shape lands at or just below its lowest point (the tangent underestimates)
        sd = shape_sdf(shapes, k, p0 + up * z_top)
        if sd[0] >= max_depth:
            return 0.0
        rate = -(sd[1] * up[0] + sd[2] * up[1] + sd[3] * up[2])
        if sd[0] <= 0.0 and rate > 0.0:
            z = wp.max(z_top + sd[0] / rate, z)
    sd = shape_sdf(shapes, k, p0 + up * z)
    if sd[0] <= 0.0 and z <= z_top - max_depth:
        return max_depth
    for _it in range(NEWTON_ITERS):
        f = sd[0]
        rate = -(sd[1] * up[0] + sd[2] * up[1] + sd[3] * up[2])  # -d sdf / dz
        if f <= HIT_TOL:
            if convex and rate > 0.1:
                z = wp.min(z + f / rate, z_top)  # one last Newton step: converged to float precision
            return z_top - z
        step = f
        if convex:
            if rate <= 0.0:
                return 0.0  # moving up only moves away from a convex shape
            step = f / rate
        z = z + step
        if z >= z_top:
            return 0.0
        sd = shape_sdf(shapes, k, p0 + up * z)
    if not convex and sd[0] <= LOOSE_TOL:  # sphere tracing crawls along grazing rays
        return z_top - z
    return 0.0


@wp.func
def _bit(k: int) -> int:
    return 1 << wp.min(k, 31)  # objects from 31 on share the last bit (conservative)


@wp.func
def _slab(R: Raster, r0: int, r1: int, c0: int, c1: int) -> wp.vec4:
    """Bounding sphere (centre xyz, radius) of the gel under pixels [r0, r1) x [c0, c1), from
    the undeformed surface down to max_depth below it."""
    xa = R.x0 + float(c0) * R.px
    xb = R.x0 + float(c1 - 1) * R.px
    ya = R.y0 + float(r0) * R.py
    yb = R.y0 + float(r1 - 1) * R.py
    z_hi = wp.float32(0.0)
    z_lo = -R.max_depth
    if R.dome_r > 0.0:
        z_hi = _surface_z(wp.clamp(0.0, xa, xb), wp.clamp(0.0, ya, yb), R.dome_r)
        z_lo = _surface_z(wp.max(wp.abs(xa), wp.abs(xb)), wp.max(wp.abs(ya), wp.abs(yb)), R.dome_r) - R.max_depth
    rad = wp.length(wp.vec3(0.5 * (xb - xa), 0.5 * (yb - ya), 0.5 * (z_hi - z_lo)))
    return wp.vec4(0.5 * (xa + xb), 0.5 * (ya + yb), 0.5 * (z_hi + z_lo), rad)


@wp.func
def _pixel_region(R: Raster, pbox: wp.array2d(dtype=wp.int32), i: int, grow_r: int, grow_c: int) -> wp.vec4i:
    """Pixel box [r0, r1) x [c0, c1) of image i's pixels with depth > 0 grown by (grow_r, grow_c),
    clipped: everything the blur and the shading can change (tighter than the contact tiles)."""
    if pbox[i, 1] < 0:
        return wp.vec4i(0, 0, 0, 0)
    r0 = wp.max(pbox[i, 0] - grow_r, 0)
    r1 = wp.min(pbox[i, 1] + 1 + grow_r, R.height)
    c0 = wp.max(pbox[i, 2] - grow_c, 0)
    c1 = wp.min(pbox[i, 3] + 1 + grow_c, R.width)
    return wp.vec4i(r0, r1, c0, c1)


@wp.func
def _inside(b: wp.vec4i, r: int, c: int) -> bool:
    return r >= b[0] and r < b[1] and c >= b[2] and c < b[3]


@wp.kernel(enable_backward=False)
def _prepare(
    shapes: PackedShapes,
    num_obj: int,
    num_sensors: int,
    pad_pose: wp.array3d(dtype=float),
    obj_pose: wp.array3d(dtype=float),
    R: Raster,
    rel: wp.array2d(dtype=wp.transform),
    img_mask: wp.array(dtype=wp.int32),
    rect: wp.array2d(dtype=wp.int32),
    pbox: wp.array2d(dtype=wp.int32),
):
    """Per image: pad-to-object transforms, which objects can reach the gel at all, empty boxes."""
    i = wp.tid()
    env = i // num_sensors
    x_pad = load_pose(pad_pose, env, i - env * num_sensors)
    slab = _slab(R, 0, R.height, 0, R.width)
    centre = wp.vec3(slab[0], slab[1], slab[2])
    mask = wp.int32(0)
    for k in range(num_obj):
        xf = wp.transform_multiply(wp.transform_inverse(load_pose(obj_pose, env, k)), x_pad)
        rel[i, k] = xf
        if shape_sdf(shapes, k, wp.transform_point(xf, centre))[0] <= slab[3]:
            mask = mask | _bit(k)
    img_mask[i] = mask
    rect[i, 0] = R.height
    rect[i, 1] = -1
    rect[i, 2] = R.width
    rect[i, 3] = -1
    pbox[i, 0] = R.height
    pbox[i, 1] = -1
    pbox[i, 2] = R.width
    pbox[i, 3] = -1


@wp.kernel(enable_backward=False)
def _cull_tiles(
    shapes: PackedShapes,
    num_obj: int,
    R: Raster,
    rel: wp.array2d(dtype=wp.transform),
    img_mask: wp.array(dtype=wp.int32),
    tile_mask: wp.array3d(dtype=wp.int32),
    rect: wp.array2d(dtype=wp.int32),
):
    """Which objects can touch each tile's gel slab (SDFs are 1-Lipschitz: an object farther from
    the slab's centre than its radius cannot); grows the image's contact rect (in tiles)."""
    i, ty, tx = wp.tid()
    m = img_mask[i]
    if m == 0:
        return
    r0 = ty * R.tile
    c0 = tx * R.tile
    slab = _slab(R, r0, wp.min(r0 + R.tile, R.height), c0, wp.min(c0 + R.tile, R.width))
    centre = wp.vec3(slab[0], slab[1], slab[2])
    tm = wp.int32(0)
    for k in range(num_obj):
        if (m & _bit(k)) != 0:
            if shape_sdf(shapes, k, wp.transform_point(rel[i, k], centre))[0] <= slab[3]:
                tm = tm | _bit(k)
    tile_mask[i, ty, tx] = tm
    if tm != 0:
        wp.atomic_min(rect, i, 0, ty)
        wp.atomic_max(rect, i, 1, ty)
        wp.atomic_min(rect, i, 2, tx)
        wp.atomic_max(rect, i, 3, tx)


@wp.kernel(enable_backward=False)
def _depth_tiles(
    shapes: PackedShapes,
    num_obj: int,
    R: Raster,
    rel: wp.array2d(dtype=wp.transform),
    tile_mask: wp.array3d(dtype=wp.int32),
    rect: wp.array2d(dtype=wp.int32),
    depth: wp.array3d(dtype=float),
    pbox: wp.array2d(dtype=wp.int32),
):
    """Depth of every pixel inside the contact rect (zero outside it, never written); grows the
    image's box of pixels with depth > 0 (``pbox``, inclusive)."""
    i, ty, tx = wp.tid()
    if ty < rect[i, 0] or ty > rect[i, 1] or tx < rect[i, 2] or tx > rect[i, 3]:
        return
    tm = tile_mask[i, ty, tx]
    r0 = ty * R.tile
    c0 = tx * R.tile
    lo_r = R.height
    hi_r = wp.int32(-1)
    lo_c = R.width
    hi_c = wp.int32(-1)
    for r in range(r0, wp.min(r0 + R.tile, R.height)):
        y = R.y0 + float(r) * R.py
        for c in range(c0, wp.min(c0 + R.tile, R.width)):
            d = wp.float32(0.0)
            if tm != 0:
                x = R.x0 + float(c) * R.px
                zs = _surface_z(x, y, R.dome_r)
                for k in range(num_obj):
                    if (tm & _bit(k)) != 0:
                        d = wp.max(d, _column_depth(shapes, k, rel[i, k], x, y, zs, R.max_depth))
            depth[i, r, c] = d
            if d > 0.0:
                lo_r = wp.min(lo_r, r)
                hi_r = wp.max(hi_r, r)
                lo_c = wp.min(lo_c, c)
                hi_c = wp.max(hi_c, c)
    if hi_r >= 0:  # one set of atomics per tile, not per pixel
        wp.atomic_min(pbox, i, 0, lo_r)
        wp.atomic_max(pbox, i, 1, hi_r)
        wp.atomic_min(pbox, i, 2, lo_c)
        wp.atomic_max(pbox, i, 3, hi_c)


@wp.kernel(enable_backward=False)
def _hblur_tiles(
    R: Raster,
    pbox: wp.array2d(dtype=wp.int32),
    depth: wp.array3d(dtype=float),
    hblur: wp.array3d(dtype=float),
):
    """Blur along rows, over the rows in contact and the columns in contact +- the blur radius."""
    i, ty, tx = wp.tid()
    br = R.blur_r
    dbox = _pixel_region(R, pbox, i, 0, 0)
    hbox = _pixel_region(R, pbox, i, 0, br)
    r0 = wp.max(ty * R.tile, hbox[0])
    r1 = wp.min(ty * R.tile + R.tile, hbox[1])
    c0 = wp.max(tx * R.tile, hbox[2])
    c1 = wp.min(tx * R.tile + R.tile, hbox[3])
    for r in range(r0, r1):
        for c in range(c0, c1):
            acc = wp.float32(0.0)
            for b in range(-br, br + 1):
                cc = wp.clamp(c + b, 0, R.width - 1)  # replicated border, as OpenCV's BORDER_REPLICATE
                if cc >= dbox[2] and cc < dbox[3]:
                    acc += R.blur_w[b + br] * depth[i, r, cc]
            hblur[i, r, c] = acc


@wp.kernel(enable_backward=False)
def _vblur_tiles(
    R: Raster,
    pbox: wp.array2d(dtype=wp.int32),
    hblur: wp.array3d(dtype=float),
    blurred: wp.array3d(dtype=float),
):
    """Blur along columns: the blurred depth over the pixels in contact +- the blur radius."""
    i, ty, tx = wp.tid()
    br = R.blur_r
    hbox = _pixel_region(R, pbox, i, 0, br)
    bbox = _pixel_region(R, pbox, i, br, br)
    r0 = wp.max(ty * R.tile, bbox[0])
    r1 = wp.min(ty * R.tile + R.tile, bbox[1])
    c0 = wp.max(tx * R.tile, bbox[2])
    c1 = wp.min(tx * R.tile + R.tile, bbox[3])
    for r in range(r0, r1):
        for c in range(c0, c1):
            acc = wp.float32(0.0)
            for a in range(-br, br + 1):
                rr = wp.clamp(r + a, 0, R.height - 1)
                if rr >= hbox[0] and rr < hbox[1]:
                    acc += R.blur_w[a + br] * hblur[i, rr, c]
            blurred[i, r, c] = acc


@wp.func
def _marker_cover(R: Raster, disp: wp.array4d(dtype=float), has_disp: int, i: int, x: float, y: float) -> float:
    """Fraction (0..1) of the pixel at (x, y) covered by a marker dot."""
    xr = x
    yr = y
    if has_disp == 1:
        fx = wp.float32(0.0)
        fy = wp.float32(0.0)
        if R.t_cols > 1:
            fx = wp.clamp((x - R.t_x0) / R.t_px, 0.0, float(R.t_cols - 1))
        if R.t_rows > 1:
            fy = wp.clamp((y - R.t_y0) / R.t_py, 0.0, float(R.t_rows - 1))
        ca = wp.min(int(fx), wp.max(R.t_cols - 2, 0))
        ra = wp.min(int(fy), wp.max(R.t_rows - 2, 0))
        cb = wp.min(ca + 1, R.t_cols - 1)
        rb = wp.min(ra + 1, R.t_rows - 1)
        wx = fx - float(ca)
        wy = fy - float(ra)
        for ax in range(2):
            v00 = disp[i, ra, ca, ax]
            v01 = disp[i, ra, cb, ax]
            v10 = disp[i, rb, ca, ax]
            v11 = disp[i, rb, cb, ax]
            v = (v00 * (1.0 - wx) + v01 * wx) * (1.0 - wy) + (v10 * (1.0 - wx) + v11 * wx) * wy
            if ax == 0:
                xr = x - v
            else:
                yr = y - v
    j = wp.clamp(int(wp.floor((xr - R.m_x0) / R.m_sx + 0.5)), 0, R.m_cols - 1)
    q = wp.clamp(int(wp.floor((yr - R.m_y0) / R.m_sy + 0.5)), 0, R.m_rows - 1)
    dx = xr - (R.m_x0 + float(j) * R.m_sx)
    dy = yr - (R.m_y0 + float(q) * R.m_sy)
    dist = wp.sqrt(dx * dx + dy * dy)
    return wp.clamp((R.m_radius - dist) / R.px + 0.5, 0.0, 1.0)


@wp.func
def _quadratic(lut: wp.array(dtype=float), o: int, u: float, v: float, uu: float, uv: float, vv: float) -> float:
    """One channel's colour change: the six lookup coefficients at ``o`` on [1, u, v, u^2, uv, v^2]."""
    return lut[o] + lut[o + 1] * u + lut[o + 2] * v + lut[o + 3] * uu + lut[o + 4] * uv + lut[o + 5] * vv


@wp.func
def _to_level(x: float) -> wp.uint8:
    """Round half up and clip to a uint8 level."""
    return wp.uint8(int(wp.clamp(wp.floor(x + 0.5), 0.0, 255.0)))


@wp.func
def _blurred_at(blurred: wp.array3d(dtype=float), bbox: wp.vec4i, i: int, r: int, c: int) -> float:
    if _inside(bbox, r, c):
        return blurred[i, r, c]
    return 0.0


@wp.kernel(enable_backward=False)
def _shade_tiles(
    R: Raster,
    pbox: wp.array2d(dtype=wp.int32),
    blurred: wp.array3d(dtype=float),
    disp: wp.array4d(dtype=float),
    has_disp: int,
    out: wp.array4d(dtype=wp.uint8),
):
    """Gradient, lookup shading and markers; only where the gradient can be non-zero (the blurred
    box +- 1 pixel), or everywhere when markers are drawn. The rest is the copied background."""
    i, ty, tx = wp.tid()
    br = R.blur_r
    bbox = _pixel_region(R, pbox, i, br, br)
    sbox = _pixel_region(R, pbox, i, br + 1, br + 1)
    r0 = ty * R.tile
    r1 = wp.min(r0 + R.tile, R.height)
    c0 = tx * R.tile
    c1 = wp.min(c0 + R.tile, R.width)
    if R.markers == 0:
        r0 = wp.max(r0, sbox[0])
        r1 = wp.min(r1, sbox[1])
        c0 = wp.max(c0, sbox[2])
        c1 = wp.min(c1, sbox[3])
    for r in range(r0, r1):
        ru = wp.max(r - 1, 0)
        rd = wp.min(r + 1, R.height - 1)
        v = 2.0 * (float(r) + 0.5) / float(R.height) - 1.0
        for c in range(c0, c1):
            shaded = wp.int32(0)
            col = wp.vec3(0.0)
            if _inside(sbox, r, c):
                cl = wp.max(c - 1, 0)
                cr = wp.min(c + 1, R.width - 1)
                gx = (_blurred_at(blurred, bbox, i, r, cr) - _blurred_at(blurred, bbox, i, r, cl)) / (
                    float(cr - cl) * R.px
                )
                gy = (_blurred_at(blurred, bbox, i, rd, c) - _blurred_at(blurred, bbox, i, ru, c)) / (
                    float(rd - ru) * R.py
                )
                g2 = gx * gx + gy * gy
                if g2 > 0.0:
                    theta = _atan2(wp.sqrt(g2), 1.0)
                    mb = wp.min(int(wp.floor(theta * R.inv_mag_step + 0.5)), R.n_mag - 1)
                    if mb > 0:
                        phi = _atan2(gy, gx)
                        db = int(wp.floor((phi + wp.pi) * R.dir_scale))
                        if db >= R.n_dir:
                            db = db - R.n_dir
                        if db < 0:
                            db = db + R.n_dir
                        u = 2.0 * (float(c) + 0.5) / float(R.width) - 1.0
                        base = (mb * R.n_dir + db) * 18
                        shaded = 1
                        uu = u * u
                        uv = u * v
                        vv = v * v
                        col = wp.vec3(
                            float(R.background[r, c, 0]) + _quadratic(R.lookup, base, u, v, uu, uv, vv),
                            float(R.background[r, c, 1]) + _quadratic(R.lookup, base + 6, u, v, uu, uv, vv),
                            float(R.background[r, c, 2]) + _quadratic(R.lookup, base + 12, u, v, uu, uv, vv),
                        )
            if shaded == 0:
                if R.markers == 0:
                    continue  # flat gel: the copied background is already right
                col = wp.vec3(float(R.background[r, c, 0]), float(R.background[r, c, 1]), float(R.background[r, c, 2]))
            if R.markers == 1:
                x = R.x0 + float(c) * R.px
                y = R.y0 + float(r) * R.py
                col = col * (1.0 - MARKER_DARKNESS * _marker_cover(R, disp, has_disp, i, x, y))
            out[i, r, c, 0] = _to_level(col[0])
            out[i, r, c, 1] = _to_level(col[1])
            out[i, r, c, 2] = _to_level(col[2])


# ---------------------------------------------------------------------------------------------
# The imager


def _torch_device(device: Any) -> tuple[torch.device, wp.context.Device]:
    if isinstance(device, torch.device):
        dev = "cpu" if device.type == "cpu" else f"cuda:{device.index if device.index is not None else 0}"
        wdev = wp.get_device(dev)
    else:
        wdev = wp.get_device(device)
    return torch.device(wp.device_to_torch(wdev)), wdev


class TactileImager:
    """Renders (num_envs, num_sensors) gel images of ``num_objects`` objects per env.

    Args:
        cfg: the sensor config (profile, resolutions, blur, markers, max depth, dome).
        num_envs, num_sensors: batch sizes.
        packed_shapes: :func:`embodied.sim.tactile.shapes.pack_shapes` of the objects, on ``device``.
        device: "cpu", "cuda:0", a torch.device or a Warp device.
        profile: override the profile (an :class:`ImageProfile`, a name or an .npz path); by
            default the shipped profile ``cfg.profile``, checked against its resolution and pixel size.
        threads: CPU threads that render chunks of the batch at once (default: the cores this
            process may use); ignored on CUDA, where one launch already fills the device.
    """

    def __init__(
        self,
        cfg: TactileSensorCfg,
        num_envs: int,
        num_sensors: int,
        packed_shapes: PackedShapes,
        device: Any = "cpu",
        profile: ImageProfile | str | None = None,
        threads: int | None = None,
    ) -> None:
        if not isinstance(cfg, TactileSensorCfg):
            raise TypeError(f"cfg must be a TactileSensorCfg, got {type(cfg).__name__}")
        for name, value in (("num_envs", num_envs), ("num_sensors", num_sensors)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TactileImager: {name} must be an int >= 1, got {value!r}")
        self.cfg = cfg
        self.num_envs = num_envs
        self.num_sensors = num_sensors
        self.num_images = num_envs * num_sensors
        self.shapes = packed_shapes
        self.num_objects = int(packed_shapes.types.shape[0])
        self.device, self.wp_device = _torch_device(device)
        if profile is None:
            native = PROFILES[cfg.profile]
            profile = load_profile(cfg.profile, native.resolution, native.pixel_size)
        elif not isinstance(profile, ImageProfile):
            profile = load_profile(profile)
        self.profile = profile
        self._rasters: dict[tuple[int, int], dict[str, Any]] = {}
        self._by_resolution: dict[str, dict[str, Any]] = {}
        """The raster entry of each resolution name (saves recomputing the geometry per render)."""
        # Inputs are copied into fixed buffers, so that every launch can be recorded once per
        # resolution and replayed (packing a launch's arguments in Python cost about a third of a
        # one-pinch render); only the output's address is set again, when it changes.
        self._pad_in = torch.zeros(num_envs, num_sensors, 7, device=self.device)
        self._obj_in = torch.zeros(num_envs, self.num_objects, 7, device=self.device)
        self._pad_in_wp, self._obj_in_wp = wp.from_torch(self._pad_in), wp.from_torch(self._obj_in)
        disp_shape = (self.num_images, cfg.rows, cfg.cols, 2) if cfg.markers else (1, 1, 1, 2)
        self._disp_in = torch.zeros(disp_shape, device=self.device)
        self._disp_in_wp = wp.from_torch(self._disp_in)
        self._rel = wp.empty((self.num_images, self.num_objects), dtype=wp.transform, device=self.wp_device)
        self._img_mask = wp.empty(self.num_images, dtype=wp.int32, device=self.wp_device)
        self._rect = wp.empty((self.num_images, 4), dtype=wp.int32, device=self.wp_device)
        self._pbox = wp.empty((self.num_images, 4), dtype=wp.int32, device=self.wp_device)
        """Per image: first/last contact tile row, first/last contact tile column (empty: -1 last)."""
        self._last_resolution: tuple[int, int] | None = None
        # contiguous image ranges, one per thread, at least MIN_IMAGES_PER_THREAD each: a thread
        # hand-off costs about half a 160x120 image, so a lone pinch (two images) stays on one
        self._threads = BatchThreads(threads, MIN_IMAGES_PER_THREAD, self.device)
        self._chunks = self._threads.chunks(self.num_images)
        self.threads = len(self._chunks)
        """CPU threads one render of this batch uses (1 on CUDA, and for batches of few images)."""

    # -----------------------------------------------------------------------------------------

    def geometry(self, resolution: Resolution = "sensor") -> ImageGeometry:
        return image_geometry(self.cfg, resolution)

    def background(self, resolution: Resolution = "sensor") -> torch.Tensor:
        """(H, W, 3) uint8 no-contact image at that resolution (markers not drawn)."""
        return self._raster(self.geometry(resolution))["bg_torch"]

    def _raster(self, geom: ImageGeometry) -> dict[str, Any]:
        key = (geom.height, geom.width)
        if key in self._rasters:
            return self._rasters[key]
        cfg, prof = self.cfg, self.profile
        h, w = key
        bg = np.ascontiguousarray(background_at(prof, h, w))
        ras = Raster()
        ras.height, ras.width, ras.tile = h, w, TILE
        ras.px, ras.py = geom.pitch_x, geom.pitch_y
        ras.x0 = 0.5 * geom.pitch_x - geom.fov[0] / 2
        ras.y0 = 0.5 * geom.pitch_y - geom.fov[1] / 2
        ras.dome_r = float(cfg.dome_radius or 0.0)
        ras.max_depth = float(cfg.max_depth)
        ras.blur_r = geom.blur_kernel // 2
        ras.blur_w = wp.array(geom.blur_weights().astype(np.float32), dtype=float, device=self.wp_device)
        ras.n_mag, ras.n_dir = prof.n_mag, prof.n_dir
        ras.inv_mag_step = float((prof.n_mag - 1) / prof.max_slope)
        ras.dir_scale = float(prof.n_dir / (2.0 * math.pi))
        ras.lookup = wp.array(prof.lookup.reshape(-1), dtype=float, device=self.wp_device)
        ras.background = wp.array(bg, dtype=wp.uint8, device=self.wp_device)
        mx, my, mrad = marker_layout(cfg, geom)
        ras.markers = int(cfg.markers)
        ras.m_rows, ras.m_cols = len(my), len(mx)
        ras.m_sx = float(mx[1] - mx[0]) if len(mx) > 1 else geom.fov[0]
        ras.m_sy = float(my[1] - my[0]) if len(my) > 1 else geom.fov[1]
        ras.m_x0, ras.m_y0, ras.m_radius = float(mx[0]), float(my[0]), float(mrad)
        tx, ty = taxel_axes(cfg)
        ras.t_rows, ras.t_cols = cfg.rows, cfg.cols
        ras.t_x0, ras.t_y0 = float(tx[0]), float(ty[0])
        ras.t_px = float(tx[1] - tx[0]) if len(tx) > 1 else 1.0
        ras.t_py = float(ty[1] - ty[0]) if len(ty) > 1 else 1.0
        tiles = ((h + TILE - 1) // TILE, (w + TILE - 1) // TILE)
        shape = (self.num_images, h, w)
        scratch = {
            "depth": wp.empty(shape, dtype=float, device=self.wp_device),
            "hblur": wp.empty(shape, dtype=float, device=self.wp_device),
            "blurred": wp.empty(shape, dtype=float, device=self.wp_device),
            "tile_mask": wp.empty((self.num_images, *tiles), dtype=wp.int32, device=self.wp_device),
            "rel": self._rel,
            "img_mask": self._img_mask,
            "rect": self._rect,
            "pbox": self._pbox,
        }
        entry = {
            "raster": ras,
            "tiles": tiles,
            **scratch,
            "bg_torch": torch.as_tensor(bg, device=self.device),
            "out_ptr": None,  # the output the recorded shading launches write to
            "has_disp": 0,
        }
        entry["prepare"], entry["chunks"] = self._record_launches(ras, tiles, scratch)
        self._rasters[key] = entry
        return entry

    def _record_launches(
        self, ras: Raster, tiles: tuple[int, int], scratch: dict[str, wp.array]
    ) -> tuple[Any, list[list[Any]]]:
        """The render's launches, recorded (not run): one that prepares every image, then per chunk
        of images cull, depth, two blurs and shading on that chunk's views of the scratch arrays."""
        dev, shapes, no = self.wp_device, self.shapes, self.num_objects

        def record(kernel: Any, dim: Any, inputs: list[Any]) -> Any:
            return wp.launch(kernel, dim=dim, inputs=inputs, device=dev, record_cmd=True)

        prepare = record(
            _prepare,
            self.num_images,
            [shapes, no, self.num_sensors, self._pad_in_wp, self._obj_in_wp, ras]
            + [scratch["rel"], scratch["img_mask"], scratch["rect"], scratch["pbox"]],
        )
        h, w = ras.height, ras.width
        chunks = []
        for a, b in self._chunks:
            v = {k: arr[a:b] for k, arr in scratch.items()}
            disp = self._disp_in_wp[a:b] if self.cfg.markers else self._disp_in_wp
            grid = (b - a, *tiles)
            placeholder = wp.empty((b - a, h, w, 3), dtype=wp.uint8, device=dev)  # until render sets `out`
            chunks.append(
                [
                    record(_cull_tiles, grid, [shapes, no, ras, v["rel"], v["img_mask"], v["tile_mask"], v["rect"]]),
                    record(_depth_tiles, grid,
                           [shapes, no, ras, v["rel"], v["tile_mask"], v["rect"], v["depth"], v["pbox"]]),
                    record(_hblur_tiles, grid, [ras, v["pbox"], v["depth"], v["hblur"]]),
                    record(_vblur_tiles, grid, [ras, v["pbox"], v["hblur"], v["blurred"]]),
                    record(_shade_tiles, grid, [ras, v["pbox"], v["blurred"], disp, 0, placeholder]),
                ]
            )
        return prepare, chunks

    def _copy_pose(self, name: str, value: Any, buffer: torch.Tensor, buffer_wp: wp.array, stream: Any) -> None:
        """Checks one pose input and copies it into its fixed buffer (on the device, for Warp arrays)."""
        expected = tuple(buffer.shape)
        if isinstance(value, wp.array):
            if value.dtype != wp.float32 or tuple(value.shape) != expected or value.device != self.wp_device:
                raise ValueError(
                    f"TactileImager.render: {name} must be float32 {expected} on {self.wp_device}, "
                    f"got a Warp array {value.dtype.__name__} {tuple(value.shape)} on {value.device}"
                )
            wp.copy(buffer_wp, value, stream=stream)
            return
        t = torch.as_tensor(value)
        if tuple(t.shape) != expected:
            raise ValueError(f"TactileImager.render: {name} must have shape {expected}, got {tuple(t.shape)}")
        buffer.copy_(t)

    def render(
        self,
        pad_pose: Any,
        obj_pose: Any,
        resolution: Resolution = "sensor",
        marker_displacement: Any = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """RGB images (num_envs, num_sensors, H, W, 3) uint8 on the imager's device.

        Args:
            pad_pose: (num_envs, num_sensors, 7) pad frames (position, quaternion wxyz), world.
            obj_pose: (num_envs, num_objects, 7) object frames.
            resolution: "sensor" (``cfg.image_resolution``) or "policy" (``cfg.policy_resolution``).
            marker_displacement: optional (num_envs, num_sensors, rows, cols, 2) gel displacement (m)
                along pad x and y at each taxel (e.g. the stick-slip shear memory); moves the
                markers when ``cfg.markers`` is on.
            out: optional contiguous uint8 tensor of the result's shape to render into (saves a
                fresh allocation, which costs page faults on large batches; its old content is lost).
        """
        if resolution not in ("sensor", "policy"):
            raise ValueError(f"TactileImager.render: resolution must be 'sensor' or 'policy', got {resolution!r}")
        stream = None
        if self.device.type == "cuda":  # Warp works on torch's current stream, after its copies
            stream = wp.stream_from_torch(torch.cuda.current_stream(self.device))
        self._copy_pose("pad_pose", pad_pose, self._pad_in, self._pad_in_wp, stream)
        self._copy_pose("obj_pose", obj_pose, self._obj_in, self._obj_in_wp, stream)
        entry = self._by_resolution.get(resolution)
        if entry is None:
            entry = self._by_resolution[resolution] = self._raster(self.geometry(resolution))
        n, s, h, w = self.num_envs, self.num_sensors, entry["raster"].height, entry["raster"].width
        has_disp = 0
        if marker_displacement is not None and self.cfg.markers:
            expected = (n, s, self.cfg.rows, self.cfg.cols, 2)
            if isinstance(marker_displacement, wp.array):
                marker_displacement = wp.to_torch(marker_displacement)
            d = torch.as_tensor(marker_displacement)
            if tuple(d.shape) != expected:
                raise ValueError(
                    f"TactileImager.render: marker_displacement must have shape {expected}, got {tuple(d.shape)}"
                )
            self._disp_in.copy_(d.reshape(self._disp_in.shape))
            has_disp = 1
        if out is None:
            out = torch.empty((n, s, h, w, 3), dtype=torch.uint8, device=self.device)
        elif out.shape != (n, s, h, w, 3) or out.dtype != torch.uint8 or out.device != self.device:
            raise ValueError(
                f"TactileImager.render: out must be uint8 {(n, s, h, w, 3)} on {self.device}, "
                f"got {out.dtype} {tuple(out.shape)} on {out.device}"
            )
        elif not out.is_contiguous():
            raise ValueError("TactileImager.render: out must be contiguous")
        images = out.view(self.num_images, h, w, 3)
        for k, (a, b) in enumerate(self._chunks):  # point the recorded shading at this call's output
            shade = entry["chunks"][k][-1]
            if entry["out_ptr"] != out.data_ptr():
                shade.set_param_by_name("out", wp.from_torch(images[a:b]))
            if entry["has_disp"] != has_disp:
                shade.set_param_by_name("has_disp", has_disp)
        entry["out_ptr"], entry["has_disp"] = out.data_ptr(), has_disp
        entry["prepare"].launch(stream)
        background = entry["bg_torch"].view(1, -1)

        def render_chunk(k: int, a: int, b: int) -> None:
            images[a:b].view(b - a, -1).copy_(background.expand(b - a, -1))
            for launch in entry["chunks"][k]:
                launch.launch(stream)

        self._threads.run(self.num_images, render_chunk)
        self._last_resolution = (h, w)
        return out

    def last_maps(self) -> dict[str, torch.Tensor]:
        """The latest render's intermediate maps, (N, S, H, W) float32 copies (for tests and plots):
        ``"depth"`` (m, clipped at max_depth) and ``"blurred"`` (m). The kernels only compute them
        around the contact; they are zero elsewhere, which is what they would be."""
        if self._last_resolution is None:
            raise RuntimeError("TactileImager.last_maps: nothing rendered yet")
        h, w = self._last_resolution
        entry = self._rasters[(h, w)]
        pbox = self._pbox.numpy()
        br = entry["raster"].blur_r
        maps = {}
        for key, grow in (("depth", 0), ("blurred", br)):
            src = wp.to_torch(entry[key]).cpu()
            full = torch.zeros_like(src)
            for i in range(self.num_images):
                if pbox[i, 1] < 0:
                    continue
                r0, r1 = max(pbox[i, 0] - grow, 0), min(pbox[i, 1] + 1 + grow, h)
                c0, c1 = max(pbox[i, 2] - grow, 0), min(pbox[i, 3] + 1 + grow, w)
                full[i, r0:r1, c0:c1] = src[i, r0:r1, c0:c1]
            maps[key] = full.view(self.num_envs, self.num_sensors, h, w)
        return maps
