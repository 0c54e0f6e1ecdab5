"""Tactile geometry: shape SDFs (Warp and NumPy reference) against closed forms, SDF grids from
meshes, .npz files, shape and sensor-config validation, and the taxel layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import warp as wp
from hypothesis import given, settings
from hypothesis import strategies as st

from embodied.config import ConfigError, apply_overrides
from embodied.sim.tactile import reference as ref
from embodied.sim.tactile.config import TactileSensorCfg, taxel_layout
from embodied.sim.tactile.shapes import (
    Box,
    Capsule,
    Cylinder,
    PackedShapes,
    Plane,
    SdfGrid,
    Sphere,
    box_mesh,
    icosphere_mesh,
    pack_shapes,
    shape_sdf,
)


@wp.kernel
def _eval_sdf(shapes: PackedShapes, k: int, pts: wp.array(dtype=wp.vec3), out: wp.array(dtype=wp.vec4)):
    i = wp.tid()
    out[i] = shape_sdf(shapes, k, pts[i])


def warp_sdf(shapes: list, k: int, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    packed = pack_shapes(shapes)
    out = wp.zeros(len(pts), dtype=wp.vec4)
    wp.launch(_eval_sdf, dim=len(pts), inputs=[packed, k, wp.array(pts.astype(np.float32), dtype=wp.vec3), out])
    o = out.numpy()
    return o[:, 0].astype(np.float64), o[:, 1:].astype(np.float64)


PRIMITIVES = [Sphere(0.01), Box((0.01, 0.02, 0.005)), Capsule(0.004, 0.01), Cylinder(0.006, 0.008), Plane()]


def closed_form(shape, p: np.ndarray) -> np.ndarray:
    """Distances written out independently of both implementations."""
    if isinstance(shape, Sphere):
        return np.linalg.norm(p, axis=1) - shape.radius
    if isinstance(shape, Box):
        q = np.abs(p) - np.array(shape.half_extents)
        return np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
    if isinstance(shape, Capsule):
        z = np.clip(p[:, 2], -shape.half_length, shape.half_length)
        return np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2 + (p[:, 2] - z) ** 2) - shape.radius
    if isinstance(shape, Cylinder):
        dr = np.hypot(p[:, 0], p[:, 1]) - shape.radius
        dz = np.abs(p[:, 2]) - shape.half_length
        return np.minimum(np.maximum(dr, dz), 0) + np.hypot(np.maximum(dr, 0), np.maximum(dz, 0))
    return p[:, 2]


@pytest.mark.parametrize("k", range(len(PRIMITIVES)), ids=[type(s).__name__ for s in PRIMITIVES])
def test_primitive_sdf_matches_closed_form_and_reference(k: int) -> None:
    shape = PRIMITIVES[k]
    p = np.random.default_rng(k).uniform(-0.03, 0.03, (2000, 3))
    d_wp, n_wp = warp_sdf(PRIMITIVES, k, p)
    d_ref, n_ref = ref.sdf(shape, p)
    exact = closed_form(shape, p)
    np.testing.assert_allclose(d_ref, exact, atol=1e-12)
    np.testing.assert_allclose(d_wp, exact, atol=2e-7)
    np.testing.assert_allclose(n_wp, n_ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(n_ref, axis=1), 1.0, atol=1e-9)
    # the normal is the distance's gradient (central differences, away from the medial axis)
    h = 1e-6
    fd = np.stack([(closed_form(shape, p + h * e) - closed_form(shape, p - h * e)) / (2 * h) for e in np.eye(3)], 1)
    smooth = np.abs(np.linalg.norm(fd, axis=1) - 1.0) < 1e-4
    assert smooth.mean() > 0.9
    np.testing.assert_allclose(n_ref[smooth], fd[smooth], atol=1e-3)


def test_hand_checked_points() -> None:
    shapes = [Box((1.0, 2.0, 3.0)), Cylinder(1.0, 2.0), Capsule(1.0, 2.0)]
    pts = np.array([[0.0, 0, 0], [2, 0, 0], [2, 3, 0], [0, 0, 4]])
    d, n = warp_sdf(shapes, 0, pts)
    np.testing.assert_allclose(d, [-1, 1, math.sqrt(2), 1], atol=1e-6)
    np.testing.assert_allclose(n[0], [1, 0, 0], atol=1e-6)
    d, n = warp_sdf(shapes, 1, np.array([[0.0, 0, 0], [0, 0, 3], [2, 0, 3], [0.5, 0, -1.9]]))
    np.testing.assert_allclose(d, [-1, 1, math.sqrt(2), -0.1], atol=1e-6)
    np.testing.assert_allclose(n[1], [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(n[3], [0, 0, -1], atol=1e-6)
    d, _ = warp_sdf(shapes, 2, np.array([[0.0, 0, 4], [3, 0, 0], [0, 0, 0]]))
    np.testing.assert_allclose(d, [1, 2, -1], atol=1e-6)


@pytest.fixture(scope="module")
def sphere_grid() -> SdfGrid:
    return SdfGrid.from_mesh(*icosphere_mesh(0.01, 3), resolution=32)


def test_reference_mesh_sdf_matches_sphere() -> None:
    v, f = icosphere_mesh(0.01, 3)
    p = np.random.default_rng(0).uniform(-0.02, 0.02, (300, 3))
    np.testing.assert_allclose(ref.mesh_sdf(p, v, f), np.linalg.norm(p, axis=1) - 0.01, atol=1e-4)


def test_sdf_grid_from_icosphere_matches_sphere(sphere_grid: SdfGrid) -> None:
    g = sphere_grid
    h = float(g.spacing.max())
    assert np.allclose(g.spacing, h)  # cubic cells
    assert np.all(g.lower < -0.01) and np.all(g.upper > 0.01)
    # nodes: exact mesh distance (brute force), and within the mesh's faceting of the sphere
    idx = np.random.default_rng(1).integers(0, g.values.shape, (200, 3))
    nodes = g.lower + idx * g.spacing
    v, f = icosphere_mesh(0.01, 3)
    np.testing.assert_allclose(g.values[tuple(idx.T)], ref.mesh_sdf(nodes, v, f), atol=1e-6)
    # anywhere inside the grid: trilinear error well within a cell
    p = np.random.default_rng(2).uniform(g.lower, g.upper, (3000, 3))
    d_wp, n_wp = warp_sdf([g], 0, p)
    exact = np.linalg.norm(p, axis=1) - 0.01
    assert np.abs(d_wp - exact).max() < 0.5 * h
    near = np.abs(exact) < 0.003
    cos = (n_wp[near] * ref.sdf(Sphere(0.01), p[near])[1]).sum(1)
    assert cos.min() > 0.95


def test_sdf_grid_from_box_mesh_matches_box() -> None:
    half = (0.01, 0.006, 0.004)
    g = SdfGrid.from_mesh(*box_mesh(half), resolution=40)
    p = np.random.default_rng(3).uniform(g.lower, g.upper, (3000, 3))
    d_wp, _ = warp_sdf([g], 0, p)
    assert np.abs(d_wp - closed_form(Box(half), p)).max() < float(g.spacing.max())


def test_sdf_grid_warp_matches_reference_inside_and_outside(sphere_grid: SdfGrid) -> None:
    p = np.random.default_rng(4).uniform(-0.03, 0.03, (3000, 3))  # many outside the grid box
    shapes = [Sphere(0.01), sphere_grid]
    d_wp, n_wp = warp_sdf(shapes, 1, p)
    d_ref, n_ref = ref.sdf(sphere_grid, p)
    np.testing.assert_allclose(d_wp, d_ref, atol=1e-6)
    np.testing.assert_allclose(n_wp, n_ref, atol=1e-4)
    outside = np.any((p < sphere_grid.lower) | (p > sphere_grid.upper), axis=1)
    assert outside.any() and np.all(d_wp[outside] > 0)


def test_sdf_grid_save_load_round_trip(tmp_path, sphere_grid: SdfGrid) -> None:
    path = tmp_path / "sphere.npz"
    sphere_grid.save(path)
    back = SdfGrid.load(path)
    np.testing.assert_array_equal(back.values, sphere_grid.values)
    np.testing.assert_array_equal(back.lower, sphere_grid.lower)
    np.testing.assert_array_equal(back.upper, sphere_grid.upper)


def _write(path, **arrays) -> None:
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"lower": np.zeros(3), "upper": np.ones(3)}, "lacks keys"),
        ({"values": np.zeros((4, 4)), "lower": np.zeros(3), "upper": np.ones(3)}, "3-D"),
        ({"values": np.zeros((4, 1, 4)), "lower": np.zeros(3), "upper": np.ones(3)}, "3-D"),
        ({"values": np.full((3, 3, 3), np.nan), "lower": np.zeros(3), "upper": np.ones(3)}, "finite"),
        ({"values": np.zeros((3, 3, 3)), "lower": np.ones(3), "upper": np.zeros(3)}, "upper > lower"),
        ({"values": np.zeros((3, 3, 3)), "lower": np.zeros(2), "upper": np.ones(3)}, "lower"),
        ({"values": np.zeros((3, 3, 3)), "lower": np.zeros(3), "upper": np.ones(3), "format_version": 9}, "format"),
    ],
)
def test_malformed_npz_files_get_clear_errors(tmp_path, arrays, match) -> None:
    path = tmp_path / "bad.npz"
    _write(path, **arrays)
    with pytest.raises(ValueError, match=match):
        SdfGrid.load(path)


def test_unreadable_files_get_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no file"):
        SdfGrid.load(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not a readable .npz"):
        SdfGrid.load(junk)
    npy = tmp_path / "plain.npy"
    np.save(npy, np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="plain .npy"):
        SdfGrid.load(npy)


def test_from_mesh_rejects_bad_meshes() -> None:
    v, f = box_mesh((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="closed"):
        SdfGrid.from_mesh(v, f[:-1])
    with pytest.raises(ValueError, match="face indices"):
        SdfGrid.from_mesh(v, np.where(f == 7, 8, f))
    with pytest.raises(ValueError, match="vertices"):
        SdfGrid.from_mesh(v[:, :2], f)
    with pytest.raises(ValueError, match="resolution"):
        SdfGrid.from_mesh(v, f, resolution=2)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Sphere(-1.0), "Sphere.radius"),
        (lambda: Sphere(float("nan")), "Sphere.radius"),
        (lambda: Box((1.0, 2.0)), "Box.half_extents"),
        (lambda: Box((1.0, 0.0, 1.0)), r"Box.half_extents\[1\]"),
        (lambda: Capsule(0.0, 1.0), "Capsule.radius"),
        (lambda: Cylinder(1.0, -2.0), "Cylinder.half_length"),
    ],
)
def test_bad_shape_params_raise_naming_the_field(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_shape_types() -> None:
    with pytest.raises(TypeError, match="Sphere.radius"):
        Sphere("big")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"shapes\[1\]"):
        pack_shapes([Sphere(1.0), "cube"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="non-empty"):
        pack_shapes([])


# ---------------------------------------------------------------------------------------------
# config


def test_config_defaults_and_overrides() -> None:
    cfg = TactileSensorCfg()
    assert (cfg.rows, cfg.cols, cfg.margin, cfg.blur_kernel) == (20, 25, 0.003, 5)
    assert cfg.image_resolution == (240, 320) and cfg.policy_resolution == (60, 80)
    new = apply_overrides(cfg, {"kn": 5, "shear_model": "stick_slip", "profile": "digit", "pad_size": [0.02, 0.02]})
    assert new.kn == 5.0 and new.shear_model == "stick_slip" and new.image_resolution == (320, 240)
    assert new.pad_size == (0.02, 0.02) and cfg.kn == 20.0
    with pytest.raises(ConfigError, match="shear_model"):
        apply_overrides(cfg, {"shear_model": "sticky"})
    with pytest.raises(ConfigError, match="kn"):
        apply_overrides(cfg, {"kn": -1.0})


NUMERIC_LIMITS = {
    "kn": st.floats(max_value=0.0) | st.just(float("nan")) | st.just(float("inf")),
    "kd": st.floats(max_value=-1e-9) | st.just(float("nan")),
    "kt": st.floats(max_value=-1e-9),
    "kt_spring": st.floats(max_value=-1e-9),
    "mu": st.floats(max_value=-1e-9) | st.just(float("inf")),
    "margin": st.floats(min_value=0.01, max_value=1e6) | st.floats(max_value=-1e-9),
    "rows": st.integers(max_value=0) | st.integers(min_value=4097),
    "cols": st.integers(max_value=0),
    "blur_kernel": st.integers(min_value=1, max_value=30).map(lambda k: 2 * k) | st.integers(max_value=0),
    "dome_radius": st.floats(max_value=0.016),
    "gel_thickness": st.floats(max_value=0.0),
    "max_depth": st.floats(min_value=0.0041, max_value=1.0) | st.floats(max_value=0.0),
    "policy_resolution": st.tuples(st.integers(max_value=0), st.integers(min_value=1, max_value=9)),
    "marker_grid": st.tuples(st.integers(min_value=1, max_value=9), st.integers(max_value=0)),
    "pad_size": st.tuples(st.floats(max_value=0.0), st.floats(min_value=0.01, max_value=1.0)),
}


@settings(max_examples=60, deadline=None)
@given(data=st.data(), field=st.sampled_from(sorted(NUMERIC_LIMITS)))
def test_bad_config_values_raise_naming_the_field(data, field: str) -> None:
    value = data.draw(NUMERIC_LIMITS[field])
    with pytest.raises(ConfigError, match=f"TactileSensorCfg.{field}"):
        TactileSensorCfg(**{field: value})


@settings(max_examples=30, deadline=None)
@given(value=st.one_of(st.text(max_size=3), st.booleans(), st.none(), st.lists(st.integers(), max_size=2)))
def test_wrong_types_raise(value) -> None:
    with pytest.raises(ConfigError, match="TactileSensorCfg.kn"):
        TactileSensorCfg(kn=value)  # type: ignore[arg-type]


def test_flat_taxel_layout_is_the_documented_grid() -> None:
    cfg = TactileSensorCfg(rows=4, cols=5, pad_size=(0.02, 0.01), margin=0.002)
    pos, frames = taxel_layout(cfg)
    assert pos.shape == (4, 5, 3) and frames.shape == (4, 5, 3, 3)
    np.testing.assert_allclose(pos[0, :, 0], [-0.008, -0.004, 0.0, 0.004, 0.008], atol=1e-12)
    np.testing.assert_allclose(pos[:, 0, 1], [-0.003, -0.001, 0.001, 0.003], atol=1e-12)
    np.testing.assert_allclose(pos[..., 2], 0.0)
    np.testing.assert_allclose(frames, np.broadcast_to(np.eye(3), frames.shape), atol=1e-12)


def test_domed_taxels_sit_on_the_dome_with_orthonormal_frames() -> None:
    cfg = TactileSensorCfg(dome_radius=0.03)
    pos, frames = taxel_layout(cfg)
    centre = np.array([0.0, 0.0, -0.03])
    np.testing.assert_allclose(np.linalg.norm(pos - centre, axis=-1), 0.03, atol=1e-12)
    np.testing.assert_allclose(pos[..., :2], taxel_layout(TactileSensorCfg())[0][..., :2])
    rtr = np.einsum("...ji,...jk->...ik", frames, frames)
    np.testing.assert_allclose(rtr, np.broadcast_to(np.eye(3), rtr.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(frames), 1.0, atol=1e-12)
    np.testing.assert_allclose(frames[..., 2], (pos - centre) / 0.03, atol=1e-12)  # normal is radial
    assert np.all(frames[..., 0, 0] > 0.9)  # t1 still mostly along pad x


def test_bounding_radius_holds_the_solid(sphere_grid: SdfGrid) -> None:
    from embodied.sim.tactile.shapes import bounding_radius

    rng = np.random.default_rng(5)
    for shape in [*PRIMITIVES[:4], sphere_grid]:
        r = bounding_radius(shape)
        dirs = rng.normal(size=(500, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        pts = dirs * r * rng.uniform(1.0, 2.0, (500, 1))
        assert np.all(ref.sdf(shape, pts)[0] >= -1e-12), type(shape).__name__
        # and it is not absurdly loose: something within 10 % of it is inside or on the solid
        inner = dirs * r * 0.9
        assert np.any(ref.sdf(shape, inner)[0] <= 0.1 * r)
    assert bounding_radius(Plane()) == math.inf
