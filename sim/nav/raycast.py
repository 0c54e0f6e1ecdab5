"""Depth, semantic and RGB frames of every env in one Warp launch: a column ray caster.

    caster = RayCaster(CameraCfg(width=128, height=128), num_envs, device)
    frames = caster.render(scene, pose)        # pose (N, 3): x, y, heading (rad, CCW from +x)
    frames.depth  (N, H, W) float32;  frames.semantic (N, H, W) int32;  frames.rgb (N, H, W, 3) uint8

On the CPU, chunks of envs render on every core at once (Warp's CPU launches release the GIL).

Every object in a house is a vertical extrusion (``house.py``), so everything one image column
can see lies along one horizontal ray. One thread per (env, column):

1. **Column pass**: walk the ray through the scene's 2-D uniform grid (Amanatides-Woo DDA) and
   collect the footprints it crosses, each as its entry and exit distance ``[t0, t1]`` along the
   ray. The walk stops at the first cell beyond a floor-to-ceiling wall, since nothing behind
   that wall can show in any row.
2. **Row pass**: pixel row ``r`` rises ``s_r`` metres per metre of horizontal travel, so for each
   collected footprint the hit is closed form: the side face at ``t0`` when the ray's height
   there lies within ``[zmin, zmax]``, else the top (or bottom) face where the ray crosses
   ``zmax`` (``zmin``) if that happens before ``t1``; the floor and the ceiling are planes. The
   nearest of these is the pixel.

Camera: a pinhole at ``camera_height`` looking level along the heading, ``hfov`` degrees wide
(Habitat's default 90), square pixels; pixel (r, c) looks along ``forward + x_c right + y_r up``
with ``x_c = (c + 0.5 - W / 2) / f``, ``y_r = (H / 2 - r - 0.5) / f``, ``f = (W / 2) / tan(hfov / 2)``.
Depth is Habitat's: the distance along the optical axis (z-buffer depth), which for a horizontal
distance ``t`` along column c is ``t / sqrt(1 + x_c^2)``; clipped to ``[min_depth, max_depth]``,
and with ``normalize_depth`` mapped to [0, 1] over that range. A ray that sees nothing (it
cannot in a closed house) reads ``max_depth``. RGB is a flat colour per semantic class, shaded by
face (side faces facing x or y differ; cylinders by their normal), a 1 m floor checker, and a
fall-off with distance, so texture-free frames still carry orientation and range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import warp as wp

from embodied.sim.batch_threads import BatchThreads
from embodied.sim.nav.scene import CEILING_ID, CLASS_COLOURS, FLOOR_ID, Scene, SceneBatch, wp_device, wp_stream

wp.config.quiet = True

MAX_HITS = 24
"""Footprints one column keeps (nearest first when more are crossed)."""
FAR = 1.0e10


@dataclass(frozen=True)
class CameraCfg:
    """The depth/semantic/RGB camera (all three share it, as Habitat's co-located sensors do)."""

    width: int = 128
    height: int = 128
    hfov: float = 90.0
    """Horizontal field of view (degrees)."""
    camera_height: float = 0.88
    """Metres above the floor (Habitat ObjectNav's HM3D agent)."""
    min_depth: float = 0.0
    max_depth: float = 10.0
    normalize_depth: bool = False
    """Depth in [0, 1] over [min_depth, max_depth] (Habitat's ``normalize_depth``) instead of metres."""

    @property
    def focal(self) -> float:
        """Focal length in pixels."""
        return (self.width / 2) / math.tan(math.radians(self.hfov) / 2)


@dataclass
class Frames:
    """One launch's output for every env rendered (fresh tensors each call)."""

    depth: torch.Tensor
    semantic: torch.Tensor
    rgb: torch.Tensor


@wp.func
def footprint_hit(kind: int, g: wp.vec4, px: float, py: float, ux: float, uy: float) -> wp.vec3:
    """(t0, t1, side shade) of the horizontal ray p + t u through a footprint; t1 < t0 for a miss."""
    if kind == 1:  # cylinder (cx, cy, r)
        ox = px - g[0]
        oy = py - g[1]
        b = ox * ux + oy * uy
        c = ox * ox + oy * oy - g[2] * g[2]
        disc = b * b - c
        if disc < 0.0:
            return wp.vec3(1.0, -1.0, 0.0)
        root = wp.sqrt(disc)
        t0 = -b - root
        nx = (ox + t0 * ux) / g[2]
        ny = (oy + t0 * uy) / g[2]
        return wp.vec3(t0, -b + root, 0.7 + 0.3 * wp.abs(0.6 * nx + 0.8 * ny))
    tx0 = -FAR
    tx1 = FAR
    if wp.abs(ux) > 1.0e-12:
        a = (g[0] - px) / ux
        b = (g[2] - px) / ux
        tx0 = wp.min(a, b)
        tx1 = wp.max(a, b)
    elif px < g[0] or px > g[2]:
        return wp.vec3(1.0, -1.0, 0.0)
    ty0 = -FAR
    ty1 = FAR
    if wp.abs(uy) > 1.0e-12:
        a = (g[1] - py) / uy
        b = (g[3] - py) / uy
        ty0 = wp.min(a, b)
        ty1 = wp.max(a, b)
    elif py < g[1] or py > g[3]:
        return wp.vec3(1.0, -1.0, 0.0)
    shade = 0.95
    if tx0 > ty0:
        shade = 0.75
    return wp.vec3(wp.max(tx0, ty0), wp.min(tx1, ty1), shade)


@wp.kernel(enable_backward=False)
def render_kernel(
    scene: Scene,
    first_env: int,
    pose: wp.array(dtype=wp.vec3),
    camera_height: float,
    focal: float,
    min_depth: float,
    max_depth: float,
    normalize: int,
    want_semantic: int,
    want_rgb: int,
    hit_t: wp.array3d(dtype=wp.vec3),
    hit_p: wp.array3d(dtype=wp.int32),
    depth: wp.array3d(dtype=float),
    semantic: wp.array3d(dtype=wp.int32),
    rgb: wp.array4d(dtype=wp.uint8),
    floor_colour: wp.vec3,
    ceiling_colour: wp.vec3,
    floor_id: int,
    ceiling_id: int,
):
    out, col = wp.tid()  # output frame, image column
    e = first_env + out  # env of the scene
    height = depth.shape[1]
    width = depth.shape[2]
    q = pose[out]
    px = q[0]
    py = q[1]
    fx = wp.cos(q[2])
    fy = wp.sin(q[2])
    xc = (float(col) + 0.5 - float(width) * 0.5) / focal
    norm = wp.sqrt(1.0 + xc * xc)
    # right = (fy, -fx): horizontal direction of this column, unit length
    ux = (fx + xc * fy) / norm
    uy = (fy - xc * fx) / norm
    ceiling = scene.ceiling[e]

    # ---- column pass: DDA over the uniform grid, collecting footprints
    cell = scene.cell
    o = scene.origin[e]
    ncols = scene.dims[e, 0]
    nrows = scene.dims[e, 1]
    ix = int(wp.floor((px - o[0]) / cell))
    iy = int(wp.floor((py - o[1]) / cell))
    step_x = 1
    step_y = 1
    next_x = FAR
    next_y = FAR
    delta_x = FAR
    delta_y = FAR
    if ux > 1.0e-12:
        next_x = (o[0] + float(ix + 1) * cell - px) / ux
        delta_x = cell / ux
    elif ux < -1.0e-12:
        step_x = -1
        next_x = (o[0] + float(ix) * cell - px) / ux
        delta_x = -cell / ux
    if uy > 1.0e-12:
        next_y = (o[1] + float(iy + 1) * cell - py) / uy
        delta_y = cell / uy
    elif uy < -1.0e-12:
        step_y = -1
        next_y = (o[1] + float(iy) * cell - py) / uy
        delta_y = -cell / uy
    n = wp.int32(0)
    blocked = float(FAR)
    while ix >= 0 and iy >= 0 and ix < ncols and iy < nrows:
        c = iy * ncols + ix
        for k in range(scene.cell_start[e, c], scene.cell_start[e, c + 1]):
            p = scene.items[e, k]
            seen = wp.int32(0)
            for i in range(n):
                if hit_p[out, col, i] == p:
                    seen = 1
            if seen == 0:
                h = footprint_hit(scene.kind[e, p], scene.geom[e, p], px, py, ux, uy)
                if h[1] > wp.max(h[0], 0.0):
                    # insertion into the list kept sorted by t0 (the farthest falls off when full)
                    if n < MAX_HITS or h[0] < hit_t[out, col, MAX_HITS - 1][0]:
                        if n < MAX_HITS:
                            n += 1
                        slot = n - 1
                        while slot > 0 and hit_t[out, col, slot - 1][0] > h[0]:
                            hit_t[out, col, slot] = hit_t[out, col, slot - 1]
                            hit_p[out, col, slot] = hit_p[out, col, slot - 1]
                            slot -= 1
                        hit_t[out, col, slot] = h
                        hit_p[out, col, slot] = p
                    zr = scene.z[e, p]
                    if zr[0] <= 0.0 and zr[1] >= ceiling:
                        blocked = wp.min(blocked, wp.max(h[0], 0.0))
        t_exit = wp.min(next_x, next_y)
        if blocked <= t_exit:
            break
        if next_x < next_y:
            ix += step_x
            next_x += delta_x
        else:
            iy += step_y
            next_y += delta_y

    # ---- row pass: closed-form hit per collected footprint, floor and ceiling
    rise = 1.0 / (focal * norm)
    inv_norm = 1.0 / norm
    for row in range(height):
        slope = (float(height) * 0.5 - float(row) - 0.5) * rise  # ray rise per horizontal metre
        best = float(FAR)
        sem = wp.int32(0)
        colour = wp.vec3(0.0, 0.0, 0.0)
        shade = wp.float32(1.0)
        if slope < 0.0:
            best = -camera_height / slope
            sem = floor_id
            colour = floor_colour
            shade = 0.85
        elif slope > 0.0:
            best = (ceiling - camera_height) / slope
            sem = ceiling_id
            colour = ceiling_colour
            shade = 0.9
        for i in range(n):
            h = hit_t[out, col, i]
            te = wp.max(h[0], 0.0)
            if te >= best:
                break  # sorted by t0: no later footprint can be nearer
            p = hit_p[out, col, i]
            zr = scene.z[e, p]
            ze = camera_height + slope * te
            t_hit = float(FAR)
            face = wp.float32(1.0)
            if ze >= zr[0] and ze <= zr[1]:
                t_hit = te
                face = h[2]
            elif ze > zr[1] and slope < 0.0:
                t_top = (zr[1] - camera_height) / slope
                if t_top <= h[1]:
                    t_hit = t_top
                    face = 1.0
            elif ze < zr[0] and slope > 0.0:
                t_bottom = (zr[0] - camera_height) / slope
                if t_bottom <= h[1]:
                    t_hit = t_bottom
                    face = 0.55
            if t_hit < best:
                best = t_hit
                sem = scene.sem[e, p]
                colour = scene.colour[e, p]
                shade = face
        d = max_depth
        if best < FAR:
            d = wp.clamp(best * inv_norm, min_depth, max_depth)
        else:
            sem = 0
        if want_rgb != 0:
            if sem == floor_id:  # 1 m checker on the floor
                checker = (int(wp.floor(px + best * ux)) + int(wp.floor(py + best * uy))) % 2
                shade += 0.15 * float(checker)
            fade = shade * (0.35 + 0.65 * wp.exp(-0.12 * d)) * 255.0
            rgb[out, row, col, 0] = wp.uint8(int(wp.clamp(colour[0] * fade, 0.0, 255.0)))
            rgb[out, row, col, 1] = wp.uint8(int(wp.clamp(colour[1] * fade, 0.0, 255.0)))
            rgb[out, row, col, 2] = wp.uint8(int(wp.clamp(colour[2] * fade, 0.0, 255.0)))
        if want_semantic != 0:
            semantic[out, row, col] = sem
        if normalize != 0:
            d = (d - min_depth) / (max_depth - min_depth)
        depth[out, row, col] = d


class RayCaster:
    """Renders the camera frames of a batch of envs: one launch, or on the CPU one launch per
    chunk of envs on each core (:class:`~embodied.sim.batch_threads.BatchThreads`)."""

    def __init__(
        self, camera: CameraCfg, num_envs: int, device: str | torch.device = "cpu", threads: int | None = None
    ) -> None:
        """``threads``: CPU threads rendering chunks of envs at once (default: every usable core)."""
        if camera.width < 1 or camera.height < 1 or not 0.0 < camera.hfov < 180.0:
            raise ValueError(f"camera needs width, height >= 1 and 0 < hfov < 180, got {camera}")
        if not 0.0 <= camera.min_depth < camera.max_depth:
            raise ValueError(f"camera needs 0 <= min_depth < max_depth, got {camera.min_depth}, {camera.max_depth}")
        self.camera = camera
        self.num_envs = num_envs
        self.device = torch.device(device)
        self._hit_t = wp.zeros((num_envs, camera.width, MAX_HITS), dtype=wp.vec3, device=wp_device(self.device))
        self._hit_p = wp.zeros((num_envs, camera.width, MAX_HITS), dtype=wp.int32, device=wp_device(self.device))
        # a 128x128 frame costs about twice a thread hand-off (0.2 ms): split from two frames a thread
        self._threads = BatchThreads(threads, min_per_thread=2, device=self.device)

    def render(
        self, scene: SceneBatch, pose: torch.Tensor, semantic: bool = True, rgb: bool = True, first_env: int = 0
    ) -> Frames:
        """New frames of envs ``first_env ..`` of ``scene`` seen from ``pose`` (n, 3) float32, n <= num_envs.

        With ``semantic`` / ``rgb`` False those frames are not computed (empty tensors come back)."""
        cam = self.camera
        n, dev = len(pose), self.device
        if n > self.num_envs or first_env + n > scene.num_envs:
            raise ValueError(f"cannot render {n} envs from env {first_env} with a {self.num_envs}-env caster")
        depth = torch.empty(n, cam.height, cam.width, device=dev)
        sem = torch.empty(n, cam.height, cam.width, dtype=torch.int32, device=dev) if semantic else None
        colour = torch.empty(n, cam.height, cam.width, 3, dtype=torch.uint8, device=dev) if rgb else None
        unused = torch.empty(1, 1, 1, 1, dtype=torch.uint8, device=dev)
        poses = wp.from_torch(pose.to(torch.float32).contiguous(), dtype=wp.vec3)
        stream = wp_stream(dev)

        def render_chunk(k: int, a: int, b: int) -> None:
            wp.launch(
                render_kernel,
                dim=(b - a, cam.width),
                inputs=[
                    scene.struct,
                    first_env + a,
                    poses[a:b],
                    cam.camera_height,
                    cam.focal,
                    cam.min_depth,
                    cam.max_depth,
                    int(cam.normalize_depth),
                    int(semantic),
                    int(rgb),
                    self._hit_t[a:b],
                    self._hit_p[a:b],
                    wp.from_torch(depth[a:b]),
                    wp.from_torch(sem[a:b] if sem is not None else unused[..., 0].int()),
                    wp.from_torch(colour[a:b] if colour is not None else unused),
                    wp.vec3(*CLASS_COLOURS[FLOOR_ID]),
                    wp.vec3(*CLASS_COLOURS[CEILING_ID]),
                    FLOOR_ID,
                    CEILING_ID,
                ],
                device=wp_device(dev),
                stream=stream,
            )

        self._threads.run(n, render_chunk)
        empty = torch.empty(0, device=dev)
        return Frames(depth, sem if sem is not None else empty, colour if colour is not None else empty)
