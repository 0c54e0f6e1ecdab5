"""Visuotactile images: Warp renderer vs analytic cases and the NumPy reference, profiles, calibration."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embodied.sim.tactile import Box, Capsule, Cylinder, Sphere, TactileSensorCfg, pack_shapes
from embodied.sim.tactile import image_reference as ref
from embodied.sim.tactile.calibration import (
    ImageProfile,
    ProfileError,
    calibrate_from_ball_presses,
    detect_contact_circle,
    load_profile,
    match_markers,
    save_profile,
    track_markers,
)
from embodied.sim.tactile.image import TactileImager, image_geometry, marker_layout
from embodied.sim.tactile.reference import quat_to_matrix_wxyz

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]


def _poses(n: int, s: int, rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(n, s, 7)


def _sphere_press(radius: float, depth: float, x: float = 0.0, y: float = 0.0) -> list[float]:
    return [x, y, radius - depth, 1.0, 0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------------
# analytic cases


@pytest.mark.parametrize("profile", ["gelsight_r15", "gelsight_mini", "digit"])
def test_no_contact_gives_the_background_exactly(profile: str) -> None:
    cfg = TactileSensorCfg(profile=profile)
    im = TactileImager(cfg, 2, 2, pack_shapes([Sphere(0.005)]), "cpu")
    far = _poses(2, 1, [_sphere_press(0.005, -0.001), [0.0, 0.0, 0.3, 1, 0, 0, 0]])  # 1 mm above; far away
    pad = _poses(2, 2, [IDENTITY] * 4)
    for res in ("sensor", "policy"):
        img = im.render(pad, far, res)
        h, w = cfg.image_resolution if res == "sensor" else cfg.policy_resolution
        assert img.shape == (2, 2, h, w, 3) and img.dtype == torch.uint8
        assert torch.equal(img, im.background(res).expand_as(img))
    np.testing.assert_array_equal(im.background("sensor").numpy(), load_profile(profile).background)


def test_sphere_press_is_radially_symmetric_with_the_geometric_contact_radius() -> None:
    cfg = TactileSensorCfg(profile="gelsight_mini")  # 240x320, 0.065 mm/pixel
    radius, depth = 0.004, 0.0008
    im = TactileImager(cfg, 1, 1, pack_shapes([Sphere(radius)]), "cpu")
    img = im.render(_poses(1, 1, [IDENTITY]), _poses(1, 1, [_sphere_press(radius, depth)]))[0, 0].numpy()
    d = im.last_maps()["depth"][0, 0].numpy().astype(np.float64)
    geom = image_geometry(cfg)
    xs, ys = np.meshgrid(geom.pixel_x(), geom.pixel_y())
    r2 = xs**2 + ys**2
    exact = np.clip(np.sqrt(np.maximum(radius**2 - r2, 0.0)) - (radius - depth), 0.0, None)
    np.testing.assert_allclose(d, exact, atol=2e-7)  # the gel follows the ball's lower surface
    assert d.max() == pytest.approx(exact.max(), abs=2e-7) and exact.max() > depth - 1e-6
    np.testing.assert_allclose(d, d[::-1, :], atol=2e-7)  # the image centre is the ball's axis
    np.testing.assert_allclose(d, d[:, ::-1], atol=2e-7)
    a_true = math.sqrt(2 * radius * depth - depth**2)
    a_px = math.sqrt((d > 0).sum() / math.pi) * geom.pitch_x
    assert abs(a_px - a_true) < 1.5 * geom.pitch_x
    # the image: the changed region is a centred disc of the same radius (plus the blur's reach)
    bg = im.background().numpy()
    changed = np.abs(img.astype(int) - bg.astype(int)).max(-1) > 2
    rows, cols = np.nonzero(changed)
    assert abs(rows.mean() - (geom.height - 1) / 2) < 1.0 and abs(cols.mean() - (geom.width - 1) / 2) < 1.0
    for extent in (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1):
        assert abs(extent / 2 * geom.pitch_x - a_true) < 3 * geom.pitch_x
    cx, cy, a_det = detect_contact_circle(img, bg)
    assert abs(a_det * geom.pitch_x - a_true) < 2.5 * geom.pitch_x


def test_flat_press_has_a_uniform_interior() -> None:
    cfg = TactileSensorCfg(profile="gelsight_r15", sensor_resolution=(120, 160))
    half = (0.004, 0.003, 0.005)
    depth = 0.0006
    im = TactileImager(cfg, 1, 1, pack_shapes([Box(half)]), "cpu")
    obj = _poses(1, 1, [[0.001, -0.002, half[2] - depth, 1, 0, 0, 0]])
    img = im.render(_poses(1, 1, [IDENTITY]), obj)[0, 0].numpy()
    d = im.last_maps()["depth"][0, 0].numpy()
    geom = image_geometry(cfg)
    xs, ys = np.meshgrid(geom.pixel_x(), geom.pixel_y())
    inside = (np.abs(xs - 0.001) < half[0]) & (np.abs(ys + 0.002) < half[1])
    np.testing.assert_allclose(d[inside], depth, atol=1e-7)
    assert (d[~inside] == 0).all()
    # interior beyond the blur's reach: flat, so exactly the background; the rim is shaded
    margin = (cfg.blur_kernel // 2 + 2) * geom.pitch_x
    core = (np.abs(xs - 0.001) < half[0] - margin) & (np.abs(ys + 0.002) < half[1] - margin)
    bg = im.background().numpy()
    np.testing.assert_array_equal(img[core], bg[core])
    rim = inside & ~core
    assert np.abs(img[rim].astype(int) - bg[rim].astype(int)).max() > 20


# ---------------------------------------------------------------------------------------------
# Warp == NumPy reference


def _random_scene(rng: np.random.Generator, n: int, s: int, shapes: list) -> tuple[np.ndarray, np.ndarray]:
    """Pads anywhere; every object pressed into one of its env's pads from above (tilted)."""

    def quat() -> np.ndarray:
        q = rng.normal(size=4)
        return q / np.linalg.norm(q)

    pad = np.zeros((n, s, 7))
    obj = np.zeros((n, len(shapes), 7))
    for e in range(n):
        for j in range(s):
            pad[e, j, :3] = rng.uniform(-0.05, 0.05, 3)
            pad[e, j, 3:] = quat()
        for k in range(len(shapes)):
            j = k % s
            rot = quat_to_matrix_wxyz(pad[e, j, 3:])
            local = np.array([rng.uniform(-0.008, 0.008), rng.uniform(-0.006, 0.006), rng.uniform(0.001, 0.003)])
            obj[e, k, :3] = pad[e, j, :3] + rot @ local
            obj[e, k, 3:] = quat()
    return pad.astype(np.float32), obj.astype(np.float32)


@pytest.mark.parametrize(
    "profile,dome,res,blur,seed",
    [
        ("gelsight_r15", None, "policy", 5, 0),
        ("digit", 0.04, "policy", 5, 1),
        ("gelsight_mini", None, "sensor", 5, 2),
        ("gelsight_r15", None, "policy", 19, 3),  # a blur wider than the 8-pixel tiles
    ],
)
def test_warp_matches_the_numpy_reference_on_random_scenes(
    profile: str, dome: float | None, res: str, blur: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    cfg = TactileSensorCfg(profile=profile, dome_radius=dome, sensor_resolution=(72, 96), blur_kernel=blur)
    shapes = [Sphere(0.004), Box((0.003, 0.004, 0.002)), Capsule(0.002, 0.003), Cylinder(0.0025, 0.002)]
    pad, obj = _random_scene(rng, 2, 2, shapes)
    im = TactileImager(cfg, 2, 2, pack_shapes(shapes), "cpu")
    img = im.render(torch.from_numpy(pad), torch.from_numpy(obj), res).numpy()
    maps = im.last_maps()
    geom = image_geometry(cfg, res)
    touched = 0
    for e in range(2):
        for j in range(2):
            r = ref.render(cfg, im.profile, shapes, pad[e, j].astype(np.float64), obj[e].astype(np.float64), res)
            touched += int((r["depth"] > 0).sum() > 20)
            # depth: equal but where a pixel's segment grazes an object (a corner dipping in by
            # well under a micrometre): there float32 and float64 may disagree on hit or miss
            depth_w = maps["depth"][e, j].numpy().astype(np.float64)
            bad = np.abs(depth_w - r["depth"]) > 1e-6
            assert bad.sum() <= max(3, 0.002 * bad.size), f"depth differs on {bad.sum()} pixels (env {e}, pad {j})"
            # image vs the full reference, away from those pixels' blur reach
            reach = cv2.dilate(bad.astype(np.uint8), np.ones((2 * (blur // 2) + 3,) * 2, np.uint8)) > 0
            diff = np.abs(img[e, j].astype(int) - r["image"].astype(int)).max(-1)[~reach]
            assert (diff > 2).mean() < 0.003, f"{(diff > 2).sum()} pixels differ by > 2 levels"
            assert (diff > 0).mean() < 0.01
            # the image steps alone, fed the kernel's own depth map: equal everywhere
            blurred = ref.blur(depth_w.astype(np.float32), geom)
            np.testing.assert_allclose(maps["blurred"][e, j].numpy(), blurred, atol=2e-8)
            colour = ref.shade(*ref.gradient(blurred, geom), im.background(res).numpy(), im.profile)
            mine = np.clip(np.floor(colour + 0.5), 0, 255).astype(int)
            diff = np.abs(img[e, j].astype(int) - mine).max(-1)
            assert (diff > 2).mean() < 0.002 and (diff > 0).mean() < 0.01
    assert touched >= 2  # the scenes really press things


# ---------------------------------------------------------------------------------------------
# resolutions


def test_policy_resolution_rendered_directly_agrees_with_inter_area_resize() -> None:
    cfg = TactileSensorCfg(profile="gelsight_r15")  # 240x320 -> policy 60x80
    im = TactileImager(cfg, 1, 2, pack_shapes([Sphere(0.006), Capsule(0.003, 0.004)]), "cpu")
    pad = _poses(1, 2, [IDENTITY, [0.1, 0, 0, 1, 0, 0, 0]])
    tilt = [math.cos(0.3), math.sin(0.3), 0.0, 0.0]  # capsule lying tilted across the pad
    obj = _poses(1, 2, [_sphere_press(0.006, 0.001, 0.004, 0.002), [-0.002, 0.0, 0.0022, *tilt]])
    big = im.render(pad, obj, "sensor")[0, 0].numpy()
    small = im.render(pad, obj, "policy")[0, 0].numpy()
    resized = cv2.resize(big, (80, 60), interpolation=cv2.INTER_AREA)
    diff = np.abs(small.astype(int) - resized.astype(int))
    assert diff.mean() < 1.5
    assert np.percentile(diff, 99) < 20
    bg = im.background("policy").numpy().astype(int)
    m_small = np.abs(small.astype(int) - bg).max(-1) > 8
    m_resized = np.abs(resized.astype(int) - bg).max(-1) > 8
    assert (m_small & m_resized).sum() / max((m_small | m_resized).sum(), 1) > 0.7  # same contact patch


# ---------------------------------------------------------------------------------------------
# profiles


def test_shipped_profiles_load_and_match_the_config_table() -> None:
    from embodied.sim.tactile.config import PROFILES

    for name, spec in PROFILES.items():
        p = load_profile(name, spec.resolution, spec.pixel_size)
        assert p.resolution == spec.resolution and p.lookup.dtype == np.float32
        assert (p.lookup[0] == 0).all() and np.abs(p.lookup[1:]).max() > 10


def test_profile_generator_is_deterministic(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_tactile_profiles", ROOT / "scripts" / "make_tactile_profiles.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop(spec.name, None)
    mod.main(["digit", "--out", str(tmp_path)])
    fresh, shipped = load_profile(tmp_path / "digit.npz"), load_profile("digit")
    np.testing.assert_array_equal(fresh.background, shipped.background)
    np.testing.assert_allclose(fresh.lookup, shipped.lookup, atol=1e-4)


def _good_profile() -> ImageProfile:
    lut = np.zeros((4, 8, 3, 6), np.float32)
    lut[1:] = 5.0
    return ImageProfile("t", np.full((6, 8, 3), 100, np.uint8), 1e-4, lut, 0.8)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.pop("lookup"), "missing keys ['lookup']"),
        (lambda d: d.update(format=np.str_("something-else")), "'format'"),
        (lambda d: d.update(version=np.int64(9)), "'version' is 9"),
        (lambda d: d.update(background=np.zeros((6, 8), np.uint8)), "'background' must be uint8 (H, W, 3)"),
        (lambda d: d.update(background=np.zeros((6, 8, 3), np.float32)), "'background' must be uint8"),
        (lambda d: d.update(lookup=np.zeros((4, 8, 3, 5), np.float32)), "'lookup' must be"),
        (lambda d: d.update(lookup=np.full((4, 8, 3, 6), np.nan, np.float32)), "finite"),
        (lambda d: d.update(lookup=np.ones((4, 8, 3, 6), np.float32)), "bin 0"),
        (lambda d: d.update(pixel_size=np.float64(-1.0)), "'pixel_size'"),
        (lambda d: d.update(max_slope=np.float64(2.0)), "'max_slope'"),
    ],
)
def test_malformed_profiles_raise_naming_the_file_and_problem(tmp_path: Path, change, message: str) -> None:
    path = save_profile(_good_profile(), tmp_path / "p.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ProfileError) as err:
        load_profile(tmp_path / "bad.npz")
    assert str(tmp_path / "bad.npz") in str(err.value) and message in str(err.value)


def test_mismatched_or_missing_profiles_raise(tmp_path: Path) -> None:
    path = save_profile(_good_profile(), tmp_path / "p.npz")
    assert load_profile(path).resolution == (6, 8)
    with pytest.raises(ProfileError, match="expects 240x320"):
        load_profile(path, expect_resolution=(240, 320))
    with pytest.raises(ProfileError, match="pixel_size is 0.0001 m but the sensor config expects"):
        load_profile(path, expect_pixel_size=6.5e-5)
    with pytest.raises(ProfileError, match="no such file"):
        load_profile(tmp_path / "nope.npz")
    with pytest.raises(ProfileError, match="no such file.*shipped profiles"):
        load_profile("gelsight_r99")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=400))
def test_garbage_profile_files_raise_profile_error(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "garbage.npz"
    path.write_bytes(blob)
    with pytest.raises(ProfileError, match="garbage.npz"):
        load_profile(path)


# ---------------------------------------------------------------------------------------------
# calibration tool


def test_ball_press_calibration_recovers_the_profile() -> None:
    cfg = TactileSensorCfg(profile="gelsight_mini")
    radius = 0.003
    presses = [(0.0, 0.0, 0.0007), (-0.005, -0.003, 0.0009), (0.005, 0.003, 0.0006), (0.004, -0.003, 0.0008),
               (-0.004, 0.003, 0.0009), (0.0, 0.004, 0.0007)]  # fmt: skip
    test_press = (0.002, -0.001, 0.00075)
    n = len(presses) + 1
    im = TactileImager(cfg, n, 1, pack_shapes([Sphere(radius)]), "cpu")
    obj = _poses(n, 1, [_sphere_press(radius, d, x, y) for x, y, d in [*presses, test_press]])
    imgs = im.render(_poses(n, 1, [IDENTITY] * n), obj)[:, 0].numpy()
    bg = im.background().numpy()
    geom = image_geometry(cfg)
    for (x, y, d), img in zip(presses, imgs, strict=False):
        cx, cy, a = detect_contact_circle(img, bg)
        assert abs(cx - (x - geom.pixel_x()[0]) / geom.pitch_x) < 1.0
        assert abs(cy - (y - geom.pixel_y()[0]) / geom.pitch_y) < 1.0
        assert abs(a * geom.pitch_x - math.sqrt(2 * radius * d - d * d)) < 2.5 * geom.pitch_x  # blur: ~2 px
    fitted = calibrate_from_ball_presses(list(imgs[:-1]), bg, radius, geom.pitch_x, n_mag=24, n_dir=32)
    again = TactileImager(cfg, n, 1, pack_shapes([Sphere(radius)]), "cpu", profile=fitted)
    twin = again.render(_poses(n, 1, [IDENTITY] * n), obj)[-1, 0].numpy().astype(int)
    truth = imgs[-1].astype(int)
    patch = np.abs(truth - bg.astype(int)).max(-1) > 3
    err = np.abs(twin - truth)[patch]
    assert patch.sum() > 300
    assert err.mean() < 3.0, f"mean error {err.mean():.2f} levels over the contact patch"
    assert np.percentile(err, 90) < 8


# ---------------------------------------------------------------------------------------------
# markers


def test_markers_move_with_the_shear_displacement_field() -> None:
    cfg = TactileSensorCfg(profile="gelsight_r15", markers=True, sensor_resolution=(120, 160))
    im = TactileImager(cfg, 1, 3, pack_shapes([Sphere(0.005)]), "cpu")
    geom = image_geometry(cfg)
    pad = _poses(1, 3, [IDENTITY] * 3)
    obj = _poses(1, 1, [[0, 0, 0.5, 1, 0, 0, 0]])
    shift = 0.0006  # m, about 3.4 pixels
    disp = torch.zeros(1, 3, cfg.rows, cfg.cols, 2)
    disp[0, 1, ..., 0] = shift  # pad 1: gel dragged along +x
    disp[0, 2, ..., 1] = -shift  # pad 2: along -y
    img = im.render(pad, obj, marker_displacement=disp)[0].numpy()
    rest = track_markers(img[0])
    mx, my, _ = marker_layout(cfg, geom)
    expected = np.stack(
        np.meshgrid((mx - geom.pixel_x()[0]) / geom.pitch_x, (my - geom.pixel_y()[0]) / geom.pitch_y), -1
    )
    assert len(rest) == cfg.marker_grid[0] * cfg.marker_grid[1]
    found = match_markers(expected.reshape(-1, 2), rest, max_distance=1.0)
    assert np.abs(found).max() < 0.3  # every marker where the layout puts it (NaN would fail too)
    px = shift / geom.pitch_x
    for j, axis, sign in ((1, 0, 1.0), (2, 1, -1.0)):
        moved = match_markers(rest, track_markers(img[j]), max_distance=2 * px)
        inner = ~np.isnan(moved).any(1)
        assert inner.sum() >= 0.6 * len(rest)  # markers pushed off the image edge are lost
        np.testing.assert_allclose(np.median(moved[inner, axis]), sign * px, atol=0.35)
        assert abs(np.median(moved[inner, 1 - axis])) < 0.2
    # without a displacement the markers sit at rest; markers off by default
    still = im.render(pad, obj)[0, 1].numpy()
    np.testing.assert_array_equal(still, img[0])
    plain = TactileImager(TactileSensorCfg(profile="gelsight_r15", sensor_resolution=(120, 160)), 1, 3,
                          pack_shapes([Sphere(0.005)]), "cpu")  # fmt: skip
    assert len(track_markers(plain.render(pad, obj)[0, 0].numpy())) == 0


def test_markers_match_the_reference_with_contact_and_shear() -> None:
    cfg = TactileSensorCfg(profile="digit", markers=True, sensor_resolution=(96, 72))
    shapes = [Sphere(0.004)]
    im = TactileImager(cfg, 1, 1, pack_shapes(shapes), "cpu")
    obj = np.array([_sphere_press(0.004, 0.001, 0.001, -0.002)], np.float32)
    rng = np.random.default_rng(3)
    disp = rng.uniform(-3e-4, 3e-4, (cfg.rows, cfg.cols, 2)).astype(np.float32)
    img = im.render(
        _poses(1, 1, [IDENTITY]), torch.from_numpy(obj)[None], marker_displacement=torch.from_numpy(disp)[None, None]
    )
    r = ref.render(cfg, im.profile, shapes, np.array(IDENTITY), obj.astype(np.float64), displacement=disp)
    diff = np.abs(img[0, 0].numpy().astype(int) - r["image"].astype(int))
    assert (diff > 2).mean() < 0.003 and (diff > 0).mean() < 0.02


# ---------------------------------------------------------------------------------------------
# API edges and CUDA


def test_render_rejects_bad_inputs() -> None:
    im = TactileImager(TactileSensorCfg(sensor_resolution=(24, 32)), 2, 2, pack_shapes([Sphere(0.005)]), "cpu")
    pad = _poses(2, 2, [IDENTITY] * 4)
    obj = _poses(2, 1, [IDENTITY] * 2)
    with pytest.raises(ValueError, match="pad_pose must have shape"):
        im.render(pad[:1], obj)
    with pytest.raises(ValueError, match="obj_pose must have shape"):
        im.render(pad, obj.reshape(1, 2, 7))
    with pytest.raises(ValueError, match="resolution must be"):
        im.render(pad, obj, "native")
    with pytest.raises(ValueError, match="out must be uint8"):
        im.render(pad, obj, out=torch.empty(2, 2, 24, 32, 3))
    out = torch.empty(2, 2, 24, 32, 3, dtype=torch.uint8)
    assert im.render(pad, obj, out=out).data_ptr() == out.data_ptr()


@pytest.mark.parametrize("num_envs,threads", [(5, 2), (5, 3), (1, 2), (3, 16)])
def test_threaded_rendering_is_bit_identical_to_one_thread(num_envs: int, threads: int) -> None:
    """Chunks of the batch rendered on several CPU threads give exactly the one-thread images, with
    markers moved by a per-pad displacement (sliced per chunk), into reused and fresh outputs."""
    rng = np.random.default_rng(11)
    cfg = TactileSensorCfg(profile="gelsight_mini", sensor_resolution=(60, 80), markers=True)
    shapes = [Sphere(0.004), Box((0.003, 0.004, 0.002))]
    pad, obj = (torch.from_numpy(a) for a in _random_scene(rng, num_envs, 2, shapes))
    disp = torch.from_numpy(rng.uniform(-2e-4, 2e-4, (num_envs, 2, cfg.rows, cfg.cols, 2)).astype(np.float32))
    one = TactileImager(cfg, num_envs, 2, pack_shapes(shapes), "cpu", threads=1)
    many = TactileImager(cfg, num_envs, 2, pack_shapes(shapes), "cpu", threads=threads)
    assert many.threads == max(1, min(threads, num_envs * 2 // 2)) and one.threads == 1
    expected = one.render(pad, obj, marker_displacement=disp)
    still = one.render(pad, obj)  # markers at rest
    out = torch.zeros_like(expected)
    # the recorded launches follow a new output and the displacement switching on and off
    for _ in range(2):
        assert torch.equal(many.render(pad, obj, marker_displacement=disp, out=out), expected)
        assert torch.equal(many.render(pad, obj), still)
    assert torch.equal(out, expected)  # the fresh output above did not write into the old one
    assert torch.equal(many.render(pad, obj, "policy"), one.render(pad, obj, "policy"))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be an int >= 1"):
            TactileImager(cfg, 1, 1, pack_shapes(shapes), "cpu", threads=bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(5)
    cfg = TactileSensorCfg(profile="gelsight_mini", sensor_resolution=(120, 160), markers=True)
    shapes = [Sphere(0.004), Box((0.003, 0.004, 0.002))]
    pad, obj = _random_scene(rng, 4, 2, shapes)
    disp = torch.from_numpy(rng.uniform(-2e-4, 2e-4, (4, 2, cfg.rows, cfg.cols, 2)).astype(np.float32))
    imgs = {}
    for dev in ("cpu", "cuda"):
        im = TactileImager(cfg, 4, 2, pack_shapes(shapes, device=dev), dev)
        imgs[dev] = im.render(
            torch.from_numpy(pad).to(dev), torch.from_numpy(obj).to(dev), marker_displacement=disp.to(dev)
        ).cpu()
    diff = (imgs["cpu"].int() - imgs["cuda"].int()).abs()
    assert (diff > 1).float().mean() < 1e-3


def test_mesh_sdf_grid_renders_like_its_analytic_twin() -> None:
    from embodied.sim.tactile import SdfGrid
    from embodied.sim.tactile.shapes import icosphere_mesh

    radius, depth = 0.005, 0.001
    grid = SdfGrid.from_mesh(*icosphere_mesh(radius, 3), resolution=48)
    cfg = TactileSensorCfg(sensor_resolution=(60, 80))
    pad, obj = _poses(1, 1, [IDENTITY]), _poses(1, 1, [_sphere_press(radius, depth, 0.001, 0.0)])
    out = {}
    for name, shape in (("sphere", Sphere(radius)), ("grid", grid)):
        im = TactileImager(cfg, 1, 1, pack_shapes([shape]), "cpu")
        out[name] = (im.render(pad, obj)[0, 0].numpy().astype(int), im.last_maps()["depth"][0, 0].numpy())
    assert np.abs(out["sphere"][1] - out["grid"][1]).max() < 5e-5  # mesh facets and grid cells: tens of um
    assert np.abs(out["sphere"][0] - out["grid"][0]).mean() < 1.0
