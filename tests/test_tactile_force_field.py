"""Tactile force field: analytic cases (flat indenter, sphere, sliding, stick-slip, damping,
several objects), the Warp kernel against the NumPy reference on random scenes, input checks,
and the CUDA path where a GPU exists."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import warp as wp

from embodied.sim.tactile import reference as ref
from embodied.sim.tactile.config import TactileSensorCfg
from embodied.sim.tactile.sensor import TactileSensor
from embodied.sim.tactile.shapes import Box, Capsule, Cylinder, Plane, SdfGrid, Sphere, icosphere_mesh

DT = 0.01


def quat_axis_angle(axis, angle: float) -> np.ndarray:
    """wxyz quaternion of a rotation by ``angle`` about ``axis``."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    return np.concatenate([[math.cos(angle / 2)], math.sin(angle / 2) * a])


def qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = np.moveaxis(a, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        -1,
    )


def t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def pose(pos, quat=(1.0, 0.0, 0.0, 0.0)) -> np.ndarray:
    return np.concatenate([np.asarray(pos, dtype=np.float64), np.asarray(quat, dtype=np.float64)])


def single(sensor: TactileSensor, pad, obj, pad_vel=None, obj_vel=None) -> torch.Tensor:
    """One env, one pad: poses (7,) or (O, 7); returns (rows, cols, 3)."""
    obj = np.atleast_2d(obj)
    pv = np.zeros((1, 1, 6)) if pad_vel is None else np.reshape(pad_vel, (1, 1, 6))
    ov = np.zeros((1, len(obj), 6)) if obj_vel is None else np.reshape(obj_vel, (1, len(obj), 6))
    return sensor.force_field(t(pad)[None, None], t(pv), t(obj)[None], t(ov), dt=DT)[0, 0]


FLIP = quat_axis_angle([1, 0, 0], math.pi)  # a Plane's solid side turned to face +z


# ---------------------------------------------------------------------------------------------
# analytic cases


@pytest.mark.parametrize("indenter", ["plane", "box"])
def test_flat_indenter_gives_uniform_field_and_documented_total(indenter: str) -> None:
    cfg = TactileSensorCfg()
    d = 0.0008
    shape = Plane() if indenter == "plane" else Box((0.05, 0.05, 0.01))
    sensor = TactileSensor(cfg, 1, 1, [shape])
    # the whole scene turned by an arbitrary rotation: the reading must not change
    q = quat_axis_angle([0.3, -1.0, 0.5], 1.1)
    r = ref.quat_to_matrix_wxyz(q)
    pad_pos = np.array([0.1, -0.2, 0.3])
    if indenter == "plane":
        obj = pose(pad_pos + r @ [0, 0, -d], qmul(q, FLIP))
    else:
        obj = pose(pad_pos + r @ [0, 0, 0.01 - d], q)
    f = single(sensor, pose(pad_pos, q), obj).numpy()
    np.testing.assert_allclose(f[..., 2], cfg.kn * d, rtol=1e-4)
    np.testing.assert_allclose(f[..., :2], 0.0, atol=1e-9)
    assert f[..., 2].sum() == pytest.approx(cfg.kn * d * cfg.rows * cfg.cols, rel=1e-4)
    np.testing.assert_allclose(sensor.last_depth[0, 0].numpy(), d, rtol=1e-4)


def test_sphere_field_is_radially_symmetric_with_geometric_contact_radius() -> None:
    cfg = TactileSensorCfg(rows=31, cols=31, pad_size=(0.02, 0.02), margin=0.001)
    radius, d = 0.01, 0.001
    sensor = TactileSensor(cfg, 1, 1, [Sphere(radius)])
    f = single(sensor, pose([0, 0, 0]), pose([0, 0, radius - d])).numpy()
    fn = f[..., 2]
    # symmetric under the pad's mirror and swap symmetries
    for g in (fn[::-1], fn[:, ::-1], fn.T):
        np.testing.assert_allclose(g, fn, atol=1e-9)
    # each taxel's depth is the sphere's: R - sqrt(r^2 + (R - d)^2)
    xy = sensor.taxel_positions[..., :2].numpy().astype(np.float64)
    r = np.linalg.norm(xy, axis=-1)
    depth = np.maximum(radius - np.sqrt(r**2 + (radius - d) ** 2), 0.0)
    np.testing.assert_allclose(fn, cfg.kn * depth, atol=cfg.kn * 2e-7)
    # contact radius sqrt(2 R d - d^2) within one taxel pitch
    a = math.sqrt(2 * radius * d - d * d)
    pitch = cfg.taxel_pitch[0]
    assert r[fn > 0].max() == pytest.approx(a, abs=pitch)
    assert np.all(fn[r < a - pitch] > 0)
    assert np.all(fn[r > a] == 0)
    np.testing.assert_allclose(f[..., :2], 0.0, atol=1e-9)


@pytest.mark.parametrize("speed", [0.002, 0.05])
def test_sliding_shear_opposes_relative_velocity_capped_by_friction(speed: float) -> None:
    cfg = TactileSensorCfg(kt=2.0, mu=0.5)
    d = 0.0005
    sensor = TactileSensor(cfg, 1, 1, [Box((0.05, 0.05, 0.01))])
    yaw = quat_axis_angle([0, 0, 1], 0.4)  # pad turned about its normal: shear is in the pad's axes
    v_obj = speed * np.array([0.6, 0.8, 0.0])
    f = single(sensor, pose([0, 0, 0], yaw), pose([0, 0, 0.01 - d]), obj_vel=np.r_[v_obj, 0, 0, 0]).numpy()
    fn = f[..., 2]
    np.testing.assert_allclose(fn, cfg.kn * d, rtol=1e-4)
    v_rel_pad = ref.quat_to_matrix_wxyz(yaw).T @ (-v_obj)  # gel relative to object, in pad axes
    shear = f[..., :2]
    mag = np.linalg.norm(shear, axis=-1)
    direction = shear / mag[..., None]
    np.testing.assert_allclose(direction, np.broadcast_to(-v_rel_pad[:2] / speed, direction.shape), atol=1e-5)
    expected = min(cfg.kt * speed, cfg.mu * cfg.kn * d)
    np.testing.assert_allclose(mag, expected, rtol=1e-4)
    assert np.all(mag <= cfg.mu * fn * (1 + 1e-6))
    if speed > 0.01:
        np.testing.assert_allclose(mag, cfg.mu * fn, rtol=1e-5)  # sliding fast: on the cap


def test_pad_spin_gives_shear_along_the_lever_arm() -> None:
    cfg = TactileSensorCfg(kt=0.1, mu=10.0)
    d = 0.0005
    sensor = TactileSensor(cfg, 1, 1, [Box((0.05, 0.05, 0.01))])
    w = 2.0
    f = single(sensor, pose([0, 0, 0]), pose([0, 0, 0.01 - d]), pad_vel=[0, 0, 0, 0, 0, w]).numpy()
    xy = sensor.taxel_positions[..., :2].numpy()
    v_tax = w * np.stack([-xy[..., 1], xy[..., 0]], -1)  # w z x r
    np.testing.assert_allclose(f[..., :2], -cfg.kt * v_tax, atol=1e-7)


def test_stick_slip_holds_static_shear_then_slips_at_the_cap() -> None:
    cfg = TactileSensorCfg(shear_model="stick_slip", kt_spring=40.0, mu=0.8)
    d = 0.0005
    fn = cfg.kn * d
    sensor = TactileSensor(cfg, 2, 1, [Box((0.05, 0.05, 0.01))])
    pad = t(np.tile(pose([0, 0, 0]), (2, 1, 1)))
    obj = t(np.tile(pose([0, 0, 0.01 - d]), (2, 1, 1)))
    zero_pad, zero_obj = torch.zeros(2, 1, 6), torch.zeros(2, 1, 6)
    # nudge the object 0.1 mm along +x in one step (below the slip distance mu fn / kt_spring)
    delta = 1e-4
    assert cfg.kt_spring * delta < cfg.mu * fn
    nudge = zero_obj.clone()
    nudge[..., 0] = delta / DT
    f = sensor.force_field(pad, zero_pad, obj, nudge, DT)
    np.testing.assert_allclose(f[..., 0].numpy(), cfg.kt_spring * delta, rtol=1e-4)
    # held still: the static shear persists (memoryless shear would read zero here)
    for _ in range(5):
        f = sensor.force_field(pad, zero_pad, obj, zero_obj, DT)
    np.testing.assert_allclose(f[..., 0].numpy(), cfg.kt_spring * delta, rtol=1e-4)
    np.testing.assert_allclose(f[..., 1].numpy(), 0.0, atol=1e-9)
    # the memory is the gel's displacement relative to the object: opposite to the object's motion
    np.testing.assert_allclose(sensor.shear_displacement[..., 0].numpy(), -delta, rtol=1e-4)
    # a large pull slips: shear sits on mu * fn, the memory is the slip distance
    pull = zero_obj.clone()
    pull[..., 0] = 0.05
    f = sensor.force_field(pad, zero_pad, obj, pull, DT)
    np.testing.assert_allclose(f[..., 0].numpy(), cfg.mu * fn, rtol=1e-5)
    np.testing.assert_allclose(sensor.shear_displacement[..., 0].numpy(), -cfg.mu * fn / cfg.kt_spring, rtol=1e-5)
    # reset of env 1 only
    sensor.reset(torch.tensor([1]))
    f = sensor.force_field(pad, zero_pad, obj, zero_obj, DT)
    np.testing.assert_allclose(f[0, ..., 0].numpy(), cfg.mu * fn, rtol=1e-5)
    np.testing.assert_allclose(f[1, ..., :2].numpy(), 0.0, atol=1e-9)
    # lifting off releases the memory
    lifted = obj.clone()
    lifted[..., 2] += 0.01
    assert float(sensor.force_field(pad, zero_pad, lifted, zero_obj, DT).abs().max()) == 0.0
    f = sensor.force_field(pad, zero_pad, obj, zero_obj, DT)
    np.testing.assert_allclose(f[..., :2].numpy(), 0.0, atol=1e-9)


def test_velocity_model_has_no_shear_in_a_static_grasp() -> None:
    sensor = TactileSensor(TactileSensorCfg(), 1, 1, [Box((0.05, 0.05, 0.01))])
    single(sensor, pose([0, 0, 0]), pose([0, 0, 0.0095]), obj_vel=[0.01, 0, 0, 0, 0, 0])
    f = single(sensor, pose([0, 0, 0]), pose([0, 0, 0.0095])).numpy()
    np.testing.assert_allclose(f[..., :2], 0.0, atol=1e-9)


def test_hunt_crossley_damping_uses_the_depth_rate() -> None:
    cfg = TactileSensorCfg(kd=300.0)
    sensor = TactileSensor(cfg, 1, 1, [Box((0.05, 0.05, 0.01))])
    d0, d1 = 0.0004, 0.0006
    f0 = single(sensor, pose([0, 0, 0]), pose([0, 0, 0.01 - d0])).numpy()
    np.testing.assert_allclose(f0[..., 2], cfg.kn * d0, rtol=1e-4)  # first call: no rate known
    f1 = single(sensor, pose([0, 0, 0]), pose([0, 0, 0.01 - d1])).numpy()
    np.testing.assert_allclose(f1[..., 2], cfg.kn * d1 + cfg.kd * (d1 - d0) / DT * d1, rtol=1e-3)
    # pulling out fast: damping may not make the normal force negative
    f2 = single(sensor, pose([0, 0, 0]), pose([0, 0, 0.01 - 1e-5])).numpy()
    assert np.all(f2[..., 2] >= 0)
    assert f2[..., 2].max() < cfg.kn * 1e-5


def test_deepest_object_wins() -> None:
    cfg = TactileSensorCfg()
    sensor = TactileSensor(cfg, 1, 1, [Box((0.05, 0.05, 0.01)), Plane()])
    # the box presses 0.3 mm, the plane (solid side facing the pad) 0.7 mm, then 0.1 mm
    f = single(sensor, pose([0, 0, 0]), [pose([0, 0, 0.0097]), pose([0, 0, -0.0007], FLIP)]).numpy()
    np.testing.assert_allclose(f[..., 2], cfg.kn * 0.0007, rtol=1e-4)
    f = single(sensor, pose([0, 0, 0]), [pose([0, 0, 0.0097]), pose([0, 0, -0.0001], FLIP)]).numpy()
    np.testing.assert_allclose(f[..., 2], cfg.kn * 0.0003, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Warp kernel == NumPy reference


def random_scene(rng: np.random.Generator, n: int, shapes: list) -> tuple[np.ndarray, ...]:
    """Two facing pads per env (a gripper), objects between them at random poses."""

    def rand_quat(k: int) -> np.ndarray:
        q = rng.normal(size=(k, 4))
        return q / np.linalg.norm(q, axis=1, keepdims=True)

    o = len(shapes)
    pad = np.zeros((n, 2, 7))
    q0 = rand_quat(n)
    r0 = ref.quat_to_matrix_wxyz(q0)
    pad[:, 0, :3] = rng.uniform(-0.05, 0.05, (n, 3))
    pad[:, 0, 3:] = q0
    pad[:, 1, 3:] = qmul(q0, np.tile(FLIP, (n, 1)))
    pad[:, 1, :3] = pad[:, 0, :3] + r0[:, :, 2] * 0.01
    obj = np.zeros((n, o, 7))
    for k in range(o):
        local = np.c_[rng.uniform(-0.008, 0.008, (n, 2)), rng.uniform(0.002, 0.006, n)]
        obj[:, k, :3] = pad[:, 0, :3] + np.einsum("nij,nj->ni", r0, local)
        obj[:, k, 3:] = rand_quat(n)
    pad_vel = rng.normal(0, 0.01, (n, 2, 6))
    obj_vel = rng.normal(0, 0.01, (n, o, 6))
    return pad, pad_vel, obj, obj_vel


@pytest.fixture(scope="module")
def scene_shapes() -> list:
    grid = SdfGrid.from_mesh(*icosphere_mesh(0.006, 2), resolution=24)
    return [Sphere(0.008), Box((0.004, 0.006, 0.003)), Capsule(0.003, 0.006), Cylinder(0.004, 0.005), grid]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"dome_radius": 0.04, "kd": 5.0},
        {"shear_model": "stick_slip", "kt_spring": 30.0},
        {"shear_model": "stick_slip", "dome_radius": 0.03, "rows": 9, "cols": 7, "mu": 0.3},
    ],
    ids=["flat-velocity", "dome-damped", "flat-stickslip", "dome-stickslip-small"],
)
def test_kernel_matches_numpy_reference_on_random_scenes(overrides: dict, scene_shapes: list) -> None:
    cfg = TactileSensorCfg(**overrides)
    rng = np.random.default_rng(len(overrides))
    pad, pad_vel, obj, obj_vel = random_scene(rng, 4, scene_shapes)
    sensor = TactileSensor(cfg, 4, 2, scene_shapes)
    state = None
    contacts = 0
    for _ in range(3):
        f = sensor.force_field(t(pad), t(pad_vel), t(obj), t(obj_vel), DT)
        f_ref, d_ref, state = ref.force_field(cfg, scene_shapes, pad, pad_vel, obj, obj_vel, DT, state)
        np.testing.assert_allclose(f.numpy(), f_ref, atol=5e-6)
        np.testing.assert_allclose(sensor.last_depth.numpy(), d_ref, atol=1e-7)
        if cfg.shear_model == "stick_slip":
            np.testing.assert_allclose(
                sensor.shear_displacement.numpy().reshape(state["shear_disp"].shape), state["shear_disp"], atol=1e-7
            )
        contacts += int((d_ref > 0).sum())
        pad[..., :3] += pad_vel[..., :3] * DT
        obj[..., :3] += obj_vel[..., :3] * DT
    assert contacts > 100  # the scenes really touch


# ---------------------------------------------------------------------------------------------
# inputs


def _inputs(n: int = 2, o: int = 1) -> list[torch.Tensor]:
    pad = torch.zeros(n, 2, 7)
    pad[..., 3] = 1
    obj = torch.zeros(n, o, 7)
    obj[..., 3] = 1
    obj[..., 2] = 0.0095
    return [pad, torch.zeros(n, 2, 6), obj, torch.zeros(n, o, 6)]


@pytest.mark.parametrize(
    "index, bad, match",
    [
        (0, lambda x: x[:, :1], r"pad_pose must have shape \(2, 2, 7\)"),
        (3, lambda x: x[..., :3], "obj_vel must have shape"),
        (1, lambda x: x.fill_(float("nan")), "pad_vel contains NaN"),
        (2, lambda x: x.zero_(), "obj_pose has a zero quaternion"),
        (0, lambda x: x.long(), "pad_pose must hold floats"),
        (2, lambda x: x.tolist(), "obj_pose must be a torch tensor"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(index: int, bad, match: str) -> None:
    sensor = TactileSensor(TactileSensorCfg(), 2, 2, [Sphere(0.01)])
    args = _inputs()
    args[index] = bad(args[index])
    with pytest.raises((ValueError, TypeError), match=match):
        sensor.force_field(*args, dt=DT)


def test_bad_dt_env_ids_and_constructor_args() -> None:
    sensor = TactileSensor(TactileSensorCfg(), 2, 2, [Sphere(0.01)])
    with pytest.raises(ValueError, match="dt"):
        sensor.force_field(*_inputs(), dt=0.0)
    with pytest.raises(ValueError, match="env_ids"):
        sensor.reset([5])
    with pytest.raises(ValueError, match="num_envs"):
        TactileSensor(TactileSensorCfg(), 0, 2, [Sphere(0.01)])
    with pytest.raises(TypeError, match="TactileSensorCfg"):
        TactileSensor({"rows": 3}, 1, 1, [Sphere(0.01)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="resolution"):
        sensor.image(_inputs()[0], _inputs()[2], resolution="full")  # type: ignore[arg-type]


def test_warp_and_float64_inputs_match_torch_float32() -> None:
    sensor = TactileSensor(TactileSensorCfg(), 2, 2, [Sphere(0.01)])
    args = _inputs()
    args[3][..., 0] = 0.01
    expected = sensor.force_field(*args, dt=DT).clone()
    got_wp = sensor.force_field(*[wp.from_torch(a.contiguous()) for a in args], dt=DT)
    got_64 = sensor.force_field(*[a.double() for a in args], dt=DT)
    got_np = sensor.force_field(*[a.numpy() for a in args], dt=DT)
    for got in (got_wp, got_64, got_np):
        torch.testing.assert_close(got, expected)
    assert expected[..., 2].sum() > 0 and expected.dtype == torch.float32


@pytest.mark.skipif(wp.get_cuda_device_count() == 0 or not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(scene_shapes: list) -> None:
    cfg = TactileSensorCfg(shear_model="stick_slip", dome_radius=0.04)
    pad, pad_vel, obj, obj_vel = random_scene(np.random.default_rng(7), 8, scene_shapes)
    cpu = TactileSensor(cfg, 8, 2, scene_shapes, device="cpu")
    gpu = TactileSensor(cfg, 8, 2, scene_shapes, device="cuda")
    for _ in range(3):
        f_cpu = cpu.force_field(t(pad), t(pad_vel), t(obj), t(obj_vel), DT)
        f_gpu = gpu.force_field(*(t(x).cuda() for x in (pad, pad_vel, obj, obj_vel)), DT)
        assert f_gpu.device.type == "cuda"
        torch.testing.assert_close(f_gpu.cpu(), f_cpu, atol=1e-6, rtol=1e-4)
        pad[..., :3] += pad_vel[..., :3] * DT


def test_image_delegates_to_the_imager() -> None:
    cfg = TactileSensorCfg(markers=True, shear_model="stick_slip")
    sensor = TactileSensor(cfg, 2, 2, [Sphere(0.01)])
    pad, pad_vel, obj, obj_vel = _inputs()
    obj[1, :, 2] = 1.0  # env 1: nothing touches
    obj_vel[..., 0] = 0.01
    sensor.force_field(pad, pad_vel, obj, obj_vel, dt=DT)
    img = sensor.image(pad, obj, resolution="policy")
    assert img.shape == (2, 2, *cfg.policy_resolution, 3) and img.dtype == torch.uint8
    assert not torch.equal(img[0, 0], img[1, 0])  # the pressed gel looks different
    out = torch.zeros_like(img)
    assert sensor.image(pad, obj, resolution="policy", out=out) is out and torch.equal(out, img)
    with pytest.raises(ValueError, match="out"):
        sensor.image(pad, obj, resolution="sensor", out=out)  # wrong shape for this resolution


def test_plane_on_a_domed_pad_reads_the_dome_height() -> None:
    cfg = TactileSensorCfg(dome_radius=0.03)
    d = 0.001
    sensor = TactileSensor(cfg, 1, 1, [Plane()])
    f = single(sensor, pose([0, 0, 0]), pose([0, 0, -d], FLIP)).numpy()
    xy = sensor.taxel_positions[..., :2].numpy().astype(np.float64)
    z = np.sqrt(0.03**2 - (xy**2).sum(-1)) - 0.03  # the dome's surface, <= 0
    np.testing.assert_allclose(f[..., 2], cfg.kn * np.maximum(d + z, 0.0), atol=cfg.kn * 2e-7)
    assert 0 < (f[..., 2] > 0).sum() < cfg.num_taxels  # the rim stays out of contact


@pytest.mark.parametrize("shear_model", ["velocity", "stick_slip"])
def test_field_is_invariant_to_moving_the_whole_scene(shear_model: str, scene_shapes: list) -> None:
    """Rotating and shifting pads, objects and velocities together changes nothing (taxel frames)."""
    cfg = TactileSensorCfg(shear_model=shear_model, dome_radius=0.04)
    rng = np.random.default_rng(11)
    pad, pad_vel, obj, obj_vel = random_scene(rng, 3, scene_shapes)
    q = quat_axis_angle(rng.normal(size=3), 2.0)
    r = ref.quat_to_matrix_wxyz(q)
    shift = np.array([0.3, -0.1, 0.2])

    def moved(poses: np.ndarray) -> np.ndarray:
        out = poses.copy()
        out[..., :3] = poses[..., :3] @ r.T + shift
        out[..., 3:] = qmul(np.broadcast_to(q, poses[..., 3:].shape), poses[..., 3:])
        return out

    def moved_vel(vel: np.ndarray) -> np.ndarray:
        return np.concatenate([vel[..., :3] @ r.T, vel[..., 3:] @ r.T], -1)

    a = TactileSensor(cfg, 3, 2, scene_shapes)
    b = TactileSensor(cfg, 3, 2, scene_shapes)
    for _ in range(2):
        fa = a.force_field(t(pad), t(pad_vel), t(obj), t(obj_vel), DT)
        fb = b.force_field(t(moved(pad)), t(moved_vel(pad_vel)), t(moved(obj)), t(moved_vel(obj_vel)), DT)
        assert float(fa[..., 2].sum()) > 0
        torch.testing.assert_close(fb, fa, atol=2e-6, rtol=1e-3)
        pad[..., :3] += pad_vel[..., :3] * DT
        obj[..., :3] += obj_vel[..., :3] * DT
