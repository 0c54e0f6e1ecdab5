"""Tactile physics coupling: one scene file, MuJoCo / PyBullet / MuJoCo Warp / Isaac Gym backends.

Checks the scene format and its errors, the gel calibration (a static press sinks F / K in every
engine), the pad frame convention, velocity extraction against finite differences, reset, bad
inputs, and that the backends agree on a pressed-and-slid object. MuJoCo Warp's test is slow
(its CPU kernels compile for 30-45 s the first time).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from embodied.config import ConfigError
from embodied.sim.physics.tactile_backend import quat_mul, quat_rotate
from embodied.sim.physics.tactile_rig import (
    BACKENDS,
    TactileRig,
    available_backends,
    make_tactile_backend,
    sensor_cfg_for,
)
from embodied.sim.physics.tactile_scene import (
    TactileScene,
    list_scenes,
    load_scene,
    scene_to_dict,
)

CPU_BACKENDS = ["mujoco", "pybullet"]
EZ = torch.tensor([0.0, 0.0, 1.0])


def _axis(pose: torch.Tensor, k: int) -> torch.Tensor:
    """World direction of a frame's axis k (0 x, 1 y, 2 z) for poses (..., 7)."""
    e = torch.zeros(3)
    e[k] = 1.0
    return quat_rotate(pose[..., 3:], e.expand(*pose.shape[:-1], 3))


def _penetration(backend) -> torch.Tensor:
    """(N, 2) depth (m) of the pinch_sphere ball into each pad's plane, from the readouts."""
    pad, ball = backend.pad_pose(), backend.obj_pose()[:, None, 0]
    radius = backend.scene.objects[0].geoms[0].radius
    return radius - ((ball[..., :3] - pad[..., :3]) * _axis(pad, 2)).sum(-1)


def _summary(forces: torch.Tensor, taxels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Total normal force (N, S), normal-weighted contact centroid in the pad plane (N, S, 2) and the
    summed shear vector (N, S, 2) of force fields (N, S, rows, cols, 3)."""
    fn = forces[..., 2]
    total = fn.sum((-1, -2))
    centroid = (fn[..., None] * taxels[..., :2]).sum((-2, -3)) / total[..., None].clamp_min(1e-12)
    return total, centroid, forces[..., :2].sum((-2, -3))


# ---------------------------------------------------------------------------------------- the scene format
def test_shipped_scenes_load_and_round_trip() -> None:
    assert {"pinch_sphere", "peg_socket"} <= set(list_scenes())
    for name in list_scenes():
        scene = load_scene(name)
        assert scene.name == name
        assert load_scene(scene_to_dict(scene)) == scene
    peg = load_scene("peg_socket")
    assert [o.name for o in peg.objects] == ["peg", "socket"]
    assert len(peg.sensed) == 1  # the socket's four boxes are not sensed


def test_scene_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'stiffness'"):
        load_scene("pinch_sphere", **{"gripper.gel.stifness": 1.0})
    with pytest.raises(ConfigError, match="stiffness must be a finite number > 0"):
        load_scene("pinch_sphere", **{"gripper.gel.stiffness": -5.0})
    with pytest.raises(
        ConfigError, match=r"geoms.shape. expects one of \[.sphere., .box., .cylinder., .capsule.\], got .torus."
    ):
        load_scene({"objects": [{"name": "a", "geoms": [{"shape": "torus"}]}]})
    with pytest.raises(ConfigError, match="does not fit"):
        load_scene("pinch_sphere", **{"gripper.pad.width": 0.05})
    with pytest.raises(ConfigError, match="unique"):
        load_scene({"objects": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ConfigError, match="version"):
        load_scene({"version": 2})
    with pytest.raises(FileNotFoundError, match="pinch_sphere"):  # lists the shipped scenes
        load_scene("no_such_scene")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_scene(bad)


def test_mjcf_and_urdf_come_from_the_same_scene() -> None:
    """Both generated models hold the same bodies, masses and collision geometry."""
    import mujoco
    import pybullet as p

    from embodied.sim.physics.tactile_mujoco import scene_mjcf
    from embodied.sim.physics.tactile_pybullet import write_urdfs

    scene = load_scene("peg_socket")
    model = mujoco.MjModel.from_xml_string(scene_mjcf(scene))
    pads = [model.geom(n).id for n in ("pad_left", "pad_right")]
    assert model.npair == 2 * (sum(len(o.geoms) for o in scene.objects) + 1)  # + the floor
    assert all(g1 in pads or g2 in pads for g1, g2 in zip(model.pair_geom1, model.pair_geom2, strict=True))
    c = p.connect(p.DIRECT)
    try:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            paths = write_urdfs(scene, tmp)
            flags = p.URDF_USE_INERTIA_FROM_FILE
            for obj in scene.objects:
                body = p.loadURDF(str(paths[obj.name]), flags=flags, physicsClientId=c)
                assert p.getDynamicsInfo(body, -1, physicsClientId=c)[0] == pytest.approx(obj.mass)
                assert model.body_mass[model.body(obj.name).id] == pytest.approx(obj.mass)
                assert len(p.getCollisionShapeData(body, -1, physicsClientId=c)) == len(obj.geoms)
            hand = p.loadURDF(str(paths["gripper"]), useFixedBase=True, flags=flags, physicsClientId=c)
            links = [
                p.getJointInfo(hand, j, physicsClientId=c)[12].decode()
                for j in range(p.getNumJoints(hand, physicsClientId=c))
            ]
            assert {"palm", "finger_left", "finger_right", "pad_left", "pad_right"} <= set(links)
            urdf_mass = sum(p.getDynamicsInfo(hand, j, physicsClientId=c)[0] for j in range(-1, len(links)))
            hand_mass = model.body_subtreemass[model.body("hand").id]
            assert urdf_mass == pytest.approx(hand_mass, abs=0.01)  # URDF's tiny joint-chain links
    finally:
        p.disconnect(c)


# ---------------------------------------------------------------------------------------- selection and bad inputs
def test_backend_selection_and_clear_errors() -> None:
    assert set(CPU_BACKENDS) <= set(available_backends())
    assert list(BACKENDS) == ["mujoco", "mujoco_warp", "pybullet", "isaacgym"]
    with pytest.raises(
        ValueError,
        match=r"unknown tactile backend 'pybulet' \(did you mean 'pybullet'\?\); options: mujoco, mujoco_warp, pybullet, isaacgym",
    ):
        make_tactile_backend("pybulet")
    with pytest.raises(ValueError, match="options: mujoco"):
        make_tactile_backend("physx")


@pytest.mark.skipif(importlib.util.find_spec("isaacgym") is not None, reason="Isaac Gym is installed here")
def test_isaacgym_absent_says_so() -> None:
    from embodied.sim.physics.tactile_isaacgym import IsaacGymTactileBackend

    for make in (lambda: make_tactile_backend("isaacgym"), lambda: IsaacGymTactileBackend("pinch_sphere", 1)):
        with pytest.raises(ModuleNotFoundError, match=r"not installed.*available.*mujoco.*pybullet"):
            make()


@pytest.fixture(scope="module")
def mujoco2():
    backend = make_tactile_backend("mujoco", "pinch_sphere", num_envs=2)
    yield backend
    backend.close()


def test_bad_targets_and_env_ids(mujoco2) -> None:
    b = mujoco2
    good = b.hand_state()
    nan = good.clone()
    nan[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf \(envs \[1\]\)"):
        b.step(nan)
    with pytest.raises(ValueError, match=r"shape \(2, 7\)"):
        b.step(good[:, :6])
    with pytest.raises(ValueError, match=r"shape \(2, 7\)"):
        b.step(good[:1])
    with pytest.raises(ValueError, match=r"env_ids must be integers in \[0, 2\)"):
        b.reset(torch.tensor([2]))
    with pytest.raises(ValueError, match="hand must have shape"):
        b.reset(torch.tensor([0]), hand=good)
    with pytest.raises(ValueError, match="object_pose"):
        b.reset(torch.tensor([0]), object_pose=torch.zeros(1, 1, 7))  # pinch_sphere has no free object
    with pytest.raises(ValueError, match="num_envs must be an int"):
        make_tactile_backend("mujoco", "pinch_sphere", num_envs=0)
    # Nothing above reached the physics: the state is still the home pose.
    assert torch.allclose(b.hand_state(), good)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(0, 4),
    cols=st.integers(0, 9),
    bad=st.sampled_from([None, float("nan"), float("inf"), -float("inf")]),
)
def test_targets_property(mujoco2, rows: int, cols: int, bad: float | None) -> None:
    """Any target that is not (2, 7) and finite is refused with a ValueError; nothing else is."""
    t = mujoco2.hand_state().new_zeros(rows, cols) + 0.05
    if bad is not None and t.numel():
        t.view(-1)[0] = bad
    ok = (rows, cols) == (2, 7) and (bad is None)
    if ok:
        mujoco2.step(t)
        mujoco2.reset()
    else:
        with pytest.raises(ValueError, match="tactile backend"):
            mujoco2.step(t)


# ---------------------------------------------------------------------------------------- physics and frames
def _press(backend, steps: int = 30, opening: float = 0.0) -> None:
    t = backend.hand_state().clone()
    t[:, 6] = opening
    for _ in range(steps):
        backend.step(t)


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_gel_sinks_force_over_stiffness(name: str) -> None:
    """A static press of F newtons (the finger servo's kp x closing error) sinks F / K."""
    with make_tactile_backend(name, "pinch_sphere", num_envs=2) as b:
        targets = b.hand_state().clone()
        targets[:, 6] = torch.tensor([0.0, 0.012])
        for _ in range(40):
            b.step(targets)
        g = b.scene.gripper
        closing = b.joint_pos()[:, 6:]
        servo = g.gains.finger[0] * (b.targets_to_joints(targets)[:, 6:] - closing)  # (N, 2) newtons
        engine = b.pad_contact_force()
        assert torch.allclose(engine, servo, rtol=0.01), (engine, servo)
        depth = _penetration(b)
        assert torch.allclose(depth, servo / g.gel.stiffness, rtol=0.03), (depth, servo / g.gel.stiffness)
        assert servo[0, 0] > 1.8 * servo[1, 0]  # the harder squeeze sinks deeper


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_set_gel_changes_one_env(name: str) -> None:
    """Per-env gel parameters (domain randomisation): half the stiffness sinks twice as deep there."""
    with make_tactile_backend(name, "pinch_sphere", num_envs=3) as b:
        b.set_gel(torch.tensor([1, 2]), stiffness=torch.tensor([2500.0, 10000.0]), damping_ratio=0.5)
        assert b.gel["stiffness"].tolist() == [5000.0, 2500.0, 10000.0]
        assert b.gel["damping_ratio"].tolist() == pytest.approx([0.7, 0.5, 0.5])
        _press(b, 40)
        force = b.pad_contact_force()
        stiffness = b.gel["stiffness"][:, None]
        assert torch.allclose(_penetration(b), force / stiffness, rtol=0.03)
        with pytest.raises(ValueError, match="gel stiffness must be"):
            b.set_gel(stiffness=0.0)
        with pytest.raises(ValueError, match=r"gel friction must be a float or a \(2,\) tensor"):
            b.set_gel(torch.tensor([0, 1]), friction=torch.tensor([0.5, float("nan")]))
        # Friction 0 on env 0: the hand slides with no lag; env 2 keeps mu 1 and lags mu N / kp.
        b.set_gel(torch.tensor([0]), friction=0.0)
        t = b.hand_state().clone()
        t[:, 6] = 0.0
        for _ in range(40):
            t[:, 1] += 0.02 * b.dt
            b.step(t)
        lag = t[:, 1] - b.hand_state()[:, 1]
        assert lag[0] < 0.0015 < 0.003 < lag[2]


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_pad_frames_follow_the_contract(name: str) -> None:
    """Pad +z points at the object, +y towards the fingertip, frames right-handed, origin on the gel
    surface; a pressed sphere's contact centroid is the sphere centre projected on the pad."""
    rig = TactileRig("pinch_sphere", backend=name, num_envs=1)
    b = rig.backend
    home = b.hand_state().clone()
    home[:, 1:3] += torch.tensor([0.003, -0.002])  # the ball sits off the pads' centres
    rig.reset(hand=home)
    pad, ball = b.pad_pose()[0], b.obj_pose()[0, 0]
    x, y, z = (_axis(pad, k) for k in range(3))
    assert torch.allclose(torch.linalg.cross(x, y, dim=-1), z, atol=1e-5)
    to_ball = ball[:3] - pad[:, :3]
    assert ((to_ball * z).sum(-1) > 0).all()  # +z points at the object
    assert torch.allclose(y, -EZ.expand(2, 3), atol=1e-5)  # towards the fingertip (down)
    assert torch.allclose(z[0], -z[1], atol=1e-6)  # the pads face each other
    assert torch.allclose(x[0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)  # left pad x = palm +y
    gap = ((pad[1, :3] - pad[0, :3]) * z[0]).sum()
    assert gap.item() == pytest.approx(home[0, 6].item(), abs=1e-6)  # origins on the gel surfaces
    _press(b, 30, opening=0.01)
    forces = rig.read()
    total, centroid, _ = _summary(forces, rig.sensor.taxel_positions)
    pad, ball = b.pad_pose()[0], b.obj_pose()[0, 0]
    expected = torch.stack([((ball[:3] - pad[:, :3]) * _axis(pad, k)).sum(-1) for k in (0, 1)], -1)
    assert (total > 0.1).all()
    assert torch.allclose(centroid[0], expected, atol=2e-4), (centroid, expected)
    assert expected[0, 0] == pytest.approx(-0.003, abs=3e-4)  # left pad x = palm +y: ball 3 mm to -x


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_velocities_match_finite_differences(name: str) -> None:
    """pad_vel / obj_vel (linear of the frame origin + angular) match pose differences of a moving grasp.

    One physics step per control step, so that the difference of two readouts spans one
    semi-implicit Euler step, whose displacement is dt times the velocity read after it."""
    scene = load_scene("peg_socket", substeps=1)
    with make_tactile_backend(name, scene, num_envs=1) as b:
        t = b.hand_state().clone()
        t[:, 6] = 0.0
        for _ in range(100):  # grasp the peg
            b.step(t)
        for _ in range(50):  # then lift and turn the hand at constant rates
            t[:, 2] += 0.03 * b.dt
            t[:, 5] += 0.5 * b.dt
            b.step(t)
        p0, o0 = b.pad_pose().clone(), b.obj_pose().clone()
        t[:, 2] += 0.03 * b.dt
        t[:, 5] += 0.5 * b.dt
        b.step(t)
        for pose0, pose1, vel in ((p0, b.pad_pose(), b.pad_vel()), (o0, b.obj_pose(), b.obj_vel())):
            fd = (pose1[..., :3] - pose0[..., :3]) / b.dt
            assert torch.allclose(fd, vel[..., :3], atol=1e-3), (fd, vel)
            rel = quat_mul(pose1[..., 3:], torch.cat([pose0[..., 3:4], -pose0[..., 4:]], -1))
            rel = rel * torch.sign(rel[..., :1])
            omega = 2.0 * rel[..., 1:] / b.dt  # small-angle rotation rate, world frame
            assert torch.allclose(omega, vel[..., 3:], atol=0.02), (omega, vel)
            assert vel[..., 5].min() > 0.3 and vel[..., 2].min() > 0.01  # the test moved everything
        # The pads' origins move with the hand's turn: v = v_finger + w x r, not the finger's own.
        assert (b.pad_vel()[0, :, :2].norm(dim=-1) > 1e-3).all()


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_peg_is_held_and_lifted(name: str) -> None:
    """The peg_socket scene grasps its peg against gravity and carries it up with the hand."""
    with make_tactile_backend(name, "peg_socket", num_envs=1) as b:
        t = b.hand_state().clone()
        t[:, 6] = 0.0
        for _ in range(20):
            b.step(t)
        z0 = b.body_pose()[0, 2, 2].item()
        for _ in range(40):
            t[:, 2] += 0.05 * b.dt
            b.step(t)
        z1 = b.body_pose()[0, 2, 2].item()
        assert z1 - z0 == pytest.approx(0.02, abs=0.003)


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_peg_goes_into_its_socket(name: str) -> None:
    """Lowered straight down, the held round peg (0.5 mm clearance) enters the socket, centred."""
    with make_tactile_backend(name, "peg_socket", num_envs=1) as b:
        t = b.hand_state().clone()
        t[:, 6] = 0.0
        for _ in range(20):
            b.step(t)
        for _ in range(80):
            t[:, 2] -= 0.05 * b.dt
            b.step(t)
        peg = b.body_pose()[0, 2]
        bottom = peg[2] - b.scene.objects[0].geoms[0].half_length
        top = 2 * b.scene.objects[1].geoms[0].half_extents[2]
        assert bottom < top - 0.008  # 8 mm in (then the fingertips reach the socket)
        assert peg[:2].abs().max() < 0.0006  # within the clearance


@pytest.mark.parametrize("noslip", [0, 1])
def test_mujoco_grasp_creep_and_noslip(noslip: int) -> None:
    """MuJoCo's soft friction lets a held peg creep down slowly; the no-slip pass stops it."""
    with make_tactile_backend("mujoco", "peg_socket", num_envs=1, noslip_iterations=noslip) as b:
        t = b.hand_state().clone()
        t[:, 6] = 0.0
        for _ in range(10):
            b.step(t)
        z0 = b.body_pose()[0, 2, 2].item()
        for _ in range(50):
            b.step(t)
        speed = (z0 - b.body_pose()[0, 2, 2].item()) / (50 * b.dt)
        if noslip:
            assert abs(speed) < 5e-5
        else:
            assert 2e-4 < speed < 3e-3  # the documented ~1 mm/s


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_reset_restores_chosen_envs_only(name: str) -> None:
    with make_tactile_backend(name, "peg_socket", num_envs=3) as b:
        home_q = b.joint_pos().clone()
        home_obj = b.obj_pose().clone()
        t = b.hand_state().clone()
        t[:, 6] = 0.0
        t[:, 0] += 0.01
        for _ in range(10):
            b.step(t)
        moved_q = b.joint_pos().clone()
        assert not torch.allclose(moved_q, home_q, atol=1e-3)
        peg = torch.tensor([[[0.05, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0]]])
        b.reset(torch.tensor([1]), object_pose=peg)
        q = b.joint_pos()
        assert torch.allclose(q[1], home_q[1], atol=1e-6)
        assert torch.allclose(q[[0, 2]], moved_q[[0, 2]])
        assert torch.allclose(b.obj_pose()[1, 0], peg[0, 0], atol=1e-5)
        assert torch.allclose(b.pad_vel()[1], torch.zeros(2, 6), atol=1e-6)
        b.reset()
        assert torch.allclose(b.joint_pos(), home_q, atol=1e-6)
        assert torch.allclose(b.obj_pose(), home_obj, atol=1e-5)


def test_rig_outputs_and_sensor_reset() -> None:
    cfg = sensor_cfg_for("pinch_sphere", rows=10, cols=12, shear_model="stick_slip")
    with TactileRig("pinch_sphere", backend="mujoco", num_envs=2, sensor_cfg=cfg) as rig:
        t = rig.backend.hand_state().clone()
        t[:, 6] = 0.0
        for _ in range(20):
            forces = rig.step(t)
        t[:, 1] += 0.002
        forces = rig.step(t)
        assert forces.shape == (2, 2, 10, 12, 3) and forces.dtype == torch.float32
        assert (forces[..., 2] >= 0).all() and forces[..., 2].sum() > 0
        assert rig.sensor.shear_displacement.abs().sum() > 0
        rig.reset(torch.tensor([0]))
        assert rig.sensor.shear_displacement[0].abs().sum() == 0
        assert rig.sensor.shear_displacement[1].abs().sum() > 0
        images = rig.images("policy")
        assert images.shape == (2, 2, *cfg.policy_resolution, 3) and images.dtype == torch.uint8
    with pytest.raises(ConfigError, match="pad_size"):
        TactileRig("pinch_sphere", sensor_cfg=sensor_cfg_for("peg_socket", pad_size=(0.02, 0.02)))


# ---------------------------------------------------------------------------------------- agreement
PRESS_STEPS, SLIDE_STEPS, SLIDE_SPEED = 30, 70, 0.02
COMPARE = range(PRESS_STEPS + SLIDE_STEPS - 10, PRESS_STEPS + SLIDE_STEPS)


def press_and_slide(backend: str, num_envs: int = 1) -> dict[str, np.ndarray]:
    """Close both gel pads on the fixed ball of ``pinch_sphere`` (0.3 s), then slide the hand along
    the palm's y at 2 cm/s (0.7 s) while squeezing. Per step: total normal force (N, 2),
    contact centroid (N, 2, 2) in the pad plane, summed shear (N, 2, 2), hand y."""
    rig = TactileRig("pinch_sphere", backend=backend, num_envs=num_envs)
    b = rig.backend
    t = b.hand_state().clone()
    t[:, 6] = 0.0
    out: dict[str, list] = {"total": [], "centroid": [], "shear": [], "hand_y": []}
    for i in range(PRESS_STEPS + SLIDE_STEPS):
        if i >= PRESS_STEPS:
            t[:, 1] += SLIDE_SPEED * b.dt
        total, centroid, shear = _summary(rig.step(t), rig.sensor.taxel_positions)
        for key, value in (
            ("total", total),
            ("centroid", centroid),
            ("shear", shear),
            ("hand_y", b.hand_state()[:, 1]),
        ):
            out[key].append(value.cpu().numpy())
    rig.close()
    return {k: np.array(v) for k, v in out.items()}


def assert_agree(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """The tolerances of :func:`test_backends_agree_on_a_pressed_and_slid_object`."""
    press = PRESS_STEPS - 1
    for when in [press, *COMPARE]:
        ta, tb = a["total"][when], b["total"][when]
        assert np.allclose(ta, tb, rtol=0.05), (when, ta, tb)
        ca, cb = a["centroid"][when], b["centroid"][when]
        assert np.abs(ca - cb).max() < (0.1e-3 if when == press else 0.5e-3), (when, ca, cb)
    for when in COMPARE:
        sa, sb = a["shear"][when], b["shear"][when]
        cos = (sa * sb).sum(-1) / (np.linalg.norm(sa, axis=-1) * np.linalg.norm(sb, axis=-1))
        assert (cos > 0.98).all(), (when, sa, sb)
        assert (np.abs(sa[..., 0]) > 0.5 * a["total"][when]).all()  # sliding: shear near mu x normal


def test_backends_agree_on_a_pressed_and_slid_object() -> None:
    """MuJoCo and PyBullet give the same force fields for the same pressed-and-slid scene.

    Tolerances, and why:
    - total normal force within 5 %: both engines' gel contact is calibrated to sink F / K
      (measured: MuJoCo within 0.1 %, Bullet ~1 % deeper from its collision margin); the force
      field sums kn x depth over taxels, which grows faster than linearly with depth for a ball
      (measured gap 2-3.5 %).
    - contact centroid within 0.1 mm while pressed and 0.5 mm while sliding: pressed, both are at
      the ball's projection (taxel pitch ~0.8 mm, the centroid interpolates); sliding, the hand lags
      its target by about mu x normal / kp, and MuJoCo's soft friction creeps before it breaks away,
      so MuJoCo's hand leads by up to 0.8 mm early in the slide; after 0.6 s both slide steadily
      (measured gap <= 0.25 mm over the compared window).
    - shear direction within ~11 degrees (cosine > 0.98): both slide, so both shear fields are
      TacSL's velocity-model shear opposite to the pads' motion over the ball (measured < 3 deg).
    Compared at the end of the press and over the last 0.1 s of the slide.
    """
    a = press_and_slide("mujoco")
    b = press_and_slide("pybullet")
    assert_agree(a, b)
    # The scene did what it says: pressed (both pads), then slid > 5 mm with shear opposing it.
    assert (a["total"][PRESS_STEPS - 1] > 0.5).all()
    assert a["hand_y"][-1, 0] > 0.005 and b["hand_y"][-1, 0] > 0.005
    last = a["shear"][-1, 0]
    assert last[0, 0] < 0 < last[1, 0]  # left pad moves along its +x over the ball: shear -x; right mirrored


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mujoco_warp") is None, reason="mujoco-warp (extra 'gpu') not installed")
def test_mujoco_warp_agrees_and_resets() -> None:
    """MuJoCo Warp (CPU here, 30-45 s of kernel compile when cold) runs the same scene: its force
    fields match MuJoCo's to float precision and PyBullet's within the agreement tolerances."""
    w = press_and_slide("mujoco_warp", num_envs=2)
    m = press_and_slide("mujoco", num_envs=2)
    assert np.allclose(w["total"], m["total"], rtol=1e-3, atol=1e-4)
    assert np.allclose(w["centroid"], m["centroid"], atol=2e-5)
    assert np.allclose(w["shear"], m["shear"], rtol=1e-2, atol=1e-3)
    assert_agree(w, press_and_slide("pybullet", num_envs=2))
    with make_tactile_backend("mujoco_warp", "peg_socket", num_envs=2) as b:
        home = b.joint_pos().clone()
        t = b.hand_state().clone()
        t[:, 0] += 0.01
        b.step(t)
        peg = torch.tensor([[[0.05, 0.0, 0.2, 1.0, 0.0, 0.0, 0.0]]])
        b.reset(torch.tensor([1]), object_pose=peg)
        assert torch.allclose(b.joint_pos()[1], home[1], atol=1e-6)
        assert not torch.allclose(b.joint_pos()[0], home[0], atol=1e-4)
        assert torch.allclose(b.obj_pose()[1, 0], peg[0, 0], atol=1e-5)
    depths = []
    for name in ("mujoco_warp", "mujoco"):  # per-world gel parameters
        with make_tactile_backend(name, "pinch_sphere", num_envs=2) as b:
            b.set_gel(torch.tensor([1]), stiffness=2500.0, friction=0.5)
            _press(b, 40)
            depths.append(_penetration(b))
    assert torch.allclose(depths[0], depths[1], rtol=1e-3)
    assert depths[0][1, 0] > 1.8 * depths[0][0, 0]


def test_scene_json_is_the_documented_format() -> None:
    """Every shipped file names the format and version and uses only known keys (strict loading)."""
    from embodied.sim.physics.tactile_scene import SCENES_DIR

    for path in SCENES_DIR.glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["format"] == "embodied/tactile-scene" and data["version"] == 1
        assert isinstance(load_scene(path), TactileScene)
