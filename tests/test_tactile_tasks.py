"""Tactile tasks (Tactile/PegInsert-v0, Tactile/PegPlace-v0) and the image augmentation adapter.

A scripted controller that knows the true poses inserts every peg shape (success flag and keypoint
distance checked against analytic placements); PegPlace's observations depend on the in-hand pose
only through the tactile entries; the declared randomisation lands in the engine within its
documented ranges; each augmentation op is checked against a direct computation.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import embodied
from embodied.config import ConfigError
from embodied.sim.check import check_batched_env
from embodied.sim.physics.tactile_backend import quat_rotate
from embodied.sim2real.image_augment import (
    ImageAugmentation,
    ImageAugmentCfg,
    ImageAugmenter,
    channel_swap,
    colour_jitter,
    crop_and_shift,
    full_augmentation,
)
from embodied.sim2real.randomize import DomainRandomization, RandomizeCfg
from embodied.tasks.tactile.peg_insert import (
    HELDOUT_PEGS,
    PARAM_LIMITS,
    PRIVILEGED_DIM,
    PRIVILEGED_LAYOUT,
    PROPRIO_DIM,
    PROPRIO_LAYOUT,
    PegDR,
    nominal_dr,
)

INSERT, PLACE = "Tactile/PegInsert-v0", "Tactile/PegPlace-v0"
EZ = torch.tensor([0.0, 0.0, 1.0])


def _part(x: torch.Tensor, layout: dict[str, tuple[int, int]], name: str) -> torch.Tensor:
    a, b = layout[name]
    return x[:, a:b]


def scripted_action(obs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Move the peg (true pose) over the socket, straighten it, then go down."""
    pv = obs["privileged"]
    peg = _part(pv, PRIVILEGED_LAYOUT, "peg_pos_rel_socket")
    quat = _part(pv, PRIVILEGED_LAYOUT, "peg_quat")
    yaw = _part(pv, PRIVILEGED_LAYOUT, "hand_angles")[:, 2]
    n = len(pv)
    tilt = torch.linalg.cross(quat_rotate(quat, EZ.expand(n, 3)), EZ.expand(n, 3))
    a = torch.zeros(n, 6)
    a[:, :2] = -peg[:, :2] / 0.01
    a[:, 3:5] = tilt[:, :2] / 0.05
    a[:, 5] = -yaw / 0.05
    aligned = (peg[:, :2].norm(dim=-1) < 4e-4) & (tilt.norm(dim=-1) < 0.01)
    above = peg[:, 2] - 0.025 > 0.004  # bottom more than 4 mm above the socket top: approach
    a[:, 2] = torch.where(aligned, -0.5, torch.where(above, -0.3, 0.0))
    return a.clamp(-1.0, 1.0)


def run_scripted(env, steps: int = 60) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(succeeded, steps taken, keypoint distance at the end) per env of one episode."""
    obs, _ = env.reset(seed=0)
    n = env.num_envs
    done = torch.zeros(n, dtype=torch.bool)
    success = torch.zeros(n, dtype=torch.bool)
    taken = torch.full((n,), steps)
    final_dist = torch.zeros(n)
    for t in range(steps):
        obs, reward, terminated, truncated, info = env.step(scripted_action(obs))
        new = (terminated | truncated) & ~done
        success |= info["success"] & new
        final_dist[new] = info["keypoint_dist"][new]
        # the success flag is exactly "keypoint distance below 4.5 mm", and the bonus follows it
        assert torch.equal(info["success"], info["keypoint_dist"] < 0.0045)
        assert torch.equal(info["reward_terms"]["success"] > 0, info["success"])
        taken[new] = t + 1
        done |= new
        if done.all():
            break
    return success, taken, final_dist


def nominal_start_dr() -> PegDR:
    """No randomisation except the hand's start position (the nominal task)."""
    return dataclasses.replace(nominal_dr(), start_x=(-0.01, 0.01), start_y=(-0.01, 0.01), start_z=(0.005, 0.02))


# ---------------------------------------------------------------------------------------- PegInsert
PEGS = {"round": {}, "rect": {"peg_shape": "rect"}, **HELDOUT_PEGS}


@pytest.mark.parametrize("peg", list(PEGS))
def test_scripted_insertion_succeeds_on_the_nominal_task(peg: str) -> None:
    env = embodied.make(INSERT, num_envs=3, seed=0, dr=nominal_start_dr(), **PEGS[peg])
    success, taken, dist = run_scripted(env)
    assert success.all(), (success, taken)
    assert (taken <= 30).all() and (dist < 0.0045).all()


def test_scripted_insertion_succeeds_under_default_randomisation_in_pybullet() -> None:
    env = embodied.make(INSERT, num_envs=2, seed=1, backend="pybullet", peg_shape="rect")
    success, taken, _ = run_scripted(env)
    assert success.all(), taken


def test_keypoint_distance_and_success_of_placed_pegs() -> None:
    """Pegs put at known poses: the distance is the analytic one, success exactly below 4.5 mm."""
    env = embodied.make(INSERT, num_envs=4, seed=0, dr=nominal_dr())
    half = env.cfg.peg_half_length
    hand = env.rig.backend.hand_state()
    tilt = 0.2
    peg = torch.tensor(
        [
            [0.0, 0.0, half, 1.0, 0.0, 0.0, 0.0],  # fully inserted
            [0.0, 0.0, half + 0.01, 1.0, 0.0, 0.0, 0.0],  # 10 mm too high
            [0.004, 0.0, half, 1.0, 0.0, 0.0, 0.0],  # 4 mm off the axis
            [0.0, 0.0, half, math.cos(tilt / 2), math.sin(tilt / 2), 0.0, 0.0],  # tilted about its centre
        ]
    )
    env.rig.reset(None, hand, peg[:, None])
    # tilted: keypoints at z in {-h, -h/3, h/3, h} move by 2 |z| sin(tilt / 2)
    z = torch.linspace(-half, half, 4)
    tilted = (2 * z.abs() * math.sin(tilt / 2)).mean().item()
    expected = torch.tensor([0.0, 0.01, 0.004, tilted])
    assert torch.allclose(env.keypoint_distance(), expected, atol=2e-6)
    _, _, _, _, info = env.step(torch.zeros(4, 6))
    assert info["success"].tolist() == [True, False, True, tilted < 0.0045]


def test_dropping_the_peg_ends_the_episode_only_when_asked() -> None:
    for flag in (False, True):
        env = embodied.make(INSERT, num_envs=2, seed=0, dr=nominal_dr(), obs_terms=("proprio",), terminate_on_drop=flag)
        hand = env.rig.backend.hand_state()
        far = torch.tensor([[0.1, 0.1, 0.03, 1.0, 0.0, 0.0, 0.0]])
        env.rig.reset(torch.tensor([1]), hand[1:], far[:, None])  # env 1's peg lies away from the hand
        _, _, terminated, _, info = env.step(torch.zeros(2, 6))
        assert terminated.tolist() == [False, flag] and not info["success"].any()


def test_a_diverged_simulation_ends_the_episode_and_is_flagged() -> None:
    env = embodied.make(INSERT, num_envs=2, seed=0, obs_terms=("proprio", "privileged"))
    env.reset(seed=0)
    env.rig.backend.sim.datas[1].qvel[3] = 1e12  # the wrist's roll: MuJoCo sees a huge acceleration
    obs, _, terminated, _, info = env.step(torch.zeros(2, 6))
    assert info["unstable"].tolist() == [False, True] and terminated.tolist() == [False, True]
    assert not info["success"][1] and torch.isfinite(obs["privileged"]).all()
    _, _, terminated, _, info = env.step(torch.zeros(2, 6))
    assert not info["unstable"].any() and not terminated.any()  # reset, and the flag cleared


def test_observation_layout_and_selectable_terms() -> None:
    env = embodied.make(INSERT, num_envs=2, seed=0)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"proprio", "tactile_image", "force_field", "privileged"}
    assert obs["proprio"].shape == (2, PROPRIO_DIM) and obs["privileged"].shape == (2, PRIVILEGED_DIM)
    assert obs["tactile_image"].shape == (2, 2, 3, 60, 80) and obs["tactile_image"].dtype == torch.uint8
    assert obs["force_field"].shape == (2, 2, 10, 14, 3)
    assert obs["force_field"][..., 2].sum((-1, -2)).min() > 0  # both pads squeeze the peg from the start
    hand = env.rig.backend.hand_state()
    assert torch.allclose(
        _part(obs["proprio"], PROPRIO_LAYOUT, "hand_pos_rel_socket_obs"), hand[:, :3] - env.socket_obs
    )
    assert torch.equal(_part(obs["proprio"], PROPRIO_LAYOUT, "prev_action"), torch.zeros(2, 6))
    action = env.random_action()
    obs, *_ = env.step(action)
    assert torch.equal(_part(obs["proprio"], PROPRIO_LAYOUT, "prev_action"), action)
    peg = env.peg_pose()
    assert torch.allclose(
        _part(obs["privileged"], PRIVILEGED_LAYOUT, "peg_pos_rel_socket"), peg[:, :3] - env.socket_pos
    )
    assert torch.allclose(_part(obs["privileged"], PRIVILEGED_LAYOUT, "keypoint_dist")[:, 0], env.keypoint_distance())

    teacher = embodied.make(INSERT, num_envs=2, seed=0, obs_terms=("proprio", "privileged"))
    obs_t, _ = teacher.reset(seed=0)
    assert set(obs_t) == {"proprio", "privileged"} and set(teacher.single_observation_space.spaces) == set(obs_t)
    obs_r, _ = env.reset(seed=0)
    assert torch.equal(obs_t["privileged"], obs_r["privileged"])  # same state, fewer entries
    with pytest.raises(ValueError, match="obs_terms"):
        embodied.make(INSERT, num_envs=1, obs_terms=("proprio", "depth"))


def test_bad_actions_and_configs_get_clear_errors() -> None:
    env = embodied.make(INSERT, num_envs=2, seed=0)
    env.reset(seed=0)
    bad = torch.zeros(2, 6)
    bad[1, 3] = float("nan")
    with pytest.raises(ValueError, match=r"Tactile/PegInsert-v0.*NaN or inf in envs \[1\]"):
        env.step(bad)
    with pytest.raises(ValueError, match=r"shape \(2, 7\)"):
        env.step(torch.zeros(2, 7))
    strict = embodied.make(INSERT, num_envs=1, seed=0, out_of_bounds_actions="error")
    with pytest.raises(ValueError, match="outside the action space"):
        strict.step(torch.full((1, 6), 1.5))
    with pytest.raises(ConfigError, match="peg_shape"):
        embodied.make(INSERT, num_envs=1, peg_shape="star")
    with pytest.raises(ConfigError, match="clearance"):
        embodied.make(INSERT, num_envs=1, clearance=0.01)
    with pytest.raises(ValueError, match="grasp_rot"):
        embodied.make(INSERT, num_envs=1, dr={"grasp_rot": (-1.0, 1.0)})  # beyond the supported +-0.63


def test_actions_are_bounded_pose_changes() -> None:
    """A full action moves the hand's target 1 cm / 0.05 rad: the hand moves at most that per step."""
    env = embodied.make(INSERT, num_envs=2, seed=0, dr=nominal_dr(), obs_terms=("proprio",))
    env.reset(seed=0)
    before = env.rig.backend.hand_state().clone()
    action = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 1.0], [0.0, -1.0, 1.0, 0.0, 0.0, 0.0]])
    for _ in range(3):
        prev = env.rig.backend.hand_state().clone()
        env.step(action)
        moved = env.rig.backend.hand_state() - prev
        assert moved[:, :3].abs().max() <= 0.01 + 1e-4 and moved[:, 3:6].abs().max() <= 0.05 + 1e-3
    moved = env.rig.backend.hand_state() - before
    assert moved[0, 0] > 0.004 and moved[0, 5] > 0.02 and moved[1, 1] < -0.004 and moved[1, 2] > 0.004


# ---------------------------------------------------------------------------------------- randomisation
def test_default_ranges_are_the_documented_ones_and_supported() -> None:
    dr = PegDR()
    assert dr.socket_noise_x == (-0.005, 0.005) and dr.socket_noise_y == (-0.005, 0.005)
    assert dr.gel_stiffness == (3000.0, 7000.0)  # TacSL's 150-350 at 5000 N/m <-> 250
    assert dr.grasp_rot == (-0.1, 0.1) and PARAM_LIMITS["grasp_rot"][1:] == (-0.63, 0.63)
    assert dr.start_x == (-0.01, 0.01) and dr.start_z == (0.005, 0.02) and dr.grasp_height == (-0.003, 0.003)
    assert dr.gel_damping_ratio == (0.2, 1.0) and dr.gel_friction == (0.7, 1.3)
    for name, (lo, hi) in dataclasses.asdict(dr).items():
        nominal, low, high = PARAM_LIMITS[name]
        assert low <= lo <= hi <= high and low <= nominal <= high, name
    assert set(dataclasses.asdict(dr)) == set(PARAM_LIMITS)
    place = embodied.tasks.registry.load_cfg(PLACE)
    assert place.dr.grasp_slide == (-0.007, 0.007) and place.dr.socket_noise_x == (0.0, 0.0)


def test_randomisation_lands_in_the_engine_within_range() -> None:
    n = 12
    env = embodied.make(INSERT, num_envs=n, seed=3, obs_terms=("proprio", "privileged"))
    obs, _ = env.reset(seed=3)
    dr = dataclasses.asdict(env.cfg.dr)
    for name, values in env.params.items():
        lo, hi = dr[name]
        assert values.min() >= lo - 1e-7 and values.max() <= hi + 1e-7, name
        if hi > lo:
            assert values.std() > 0.15 * (hi - lo), name  # drawn per env, spread over the range
    backend = env.rig.backend
    assert torch.allclose(backend.gel["stiffness"], env.params["gel_stiffness"])
    assert torch.allclose(backend.gel["damping_ratio"], env.params["gel_damping_ratio"])
    assert torch.allclose(backend.gel["friction"], env.params["gel_friction"])
    # MuJoCo: each env's model carries its own gel stiffness (pad pair springs scale with it)
    k = [-backend.sim.models[i].pair_solref[0, 0] for i in range(n)]
    ratio = torch.tensor(k) / env.params["gel_stiffness"].double()
    assert torch.allclose(ratio, ratio[0].expand(n), rtol=1e-5)
    # the socket the policy is told about is off by the drawn noise, the privileged entry says by how much
    noise = torch.stack([env.params[f"socket_noise_{a}"] for a in "xyz"], -1)
    assert torch.allclose(_part(obs["privileged"], PRIVILEGED_LAYOUT, "socket_obs_error"), noise, atol=1e-6)
    # the start pose and the grasp: the hand's yaw, the peg's height in the hand
    assert torch.allclose(backend.hand_state()[:, 5], env.params["start_yaw"], atol=1e-5)
    in_hand = _part(obs["privileged"], PRIVILEGED_LAYOUT, "peg_pos_in_hand")
    expected = env.peg_in_hand(env.all_env_ids)[:, :3]
    assert torch.allclose(in_hand, expected, atol=2e-4)
    # the peg's tilt in the hand is the drawn grasp rotation about the fingers' axis (palm x)
    axis = quat_rotate(env.peg_pose()[:, 3:], EZ.expand(n, 3))
    hand_yaw = env.params["start_yaw"]
    local_y = -axis[:, 0] * torch.sin(hand_yaw) + axis[:, 1] * torch.cos(hand_yaw)
    assert torch.allclose(torch.atan2(-local_y, axis[:, 2]), env.params["grasp_rot"], atol=2e-3)


@pytest.mark.parametrize("corner", [1, 2], ids=["low", "high"])
def test_the_grasp_holds_at_the_corners_of_the_supported_ranges(corner: int) -> None:
    """Every parameter at the low (or high) end of what the task supports, random actions: the peg stays."""
    dr = {name: (limits[corner], limits[corner]) for name, limits in PARAM_LIMITS.items()}
    env = embodied.make(INSERT, num_envs=8, seed=0, dr=dr, obs_terms=("privileged",))
    obs, _ = env.reset(seed=0)
    nominal = env.peg_in_hand(env.all_env_ids)[:, :3]
    lost = 0
    for _ in range(60):
        obs, *_ = env.step(env.random_action())
        assert torch.isfinite(obs["privileged"]).all()
        lost += int(
            ((_part(obs["privileged"], PRIVILEGED_LAYOUT, "peg_pos_in_hand") - nominal).norm(dim=-1) > 0.02).sum()
        )
    assert lost <= 0.02 * 8 * 60


def test_sim2real_randomisation_overrides_the_tasks_own() -> None:
    env = embodied.make(INSERT, num_envs=3, seed=0, obs_terms=("privileged",))
    wrapped = DomainRandomization(env, RandomizeCfg(ranges={"gel_friction": (1.5, 1.5), "grasp_rot": (0.2, 0.2)}))
    wrapped.reset(seed=0)
    assert torch.allclose(env.params["gel_friction"], torch.full((3,), 1.5))
    assert torch.allclose(env.rig.backend.gel["friction"], torch.full((3,), 1.5))
    assert torch.allclose(env.params["grasp_rot"], torch.full((3,), 0.2))
    assert env.params["gel_stiffness"].std() > 0  # the rest keeps the task's own draws
    with pytest.raises(ValueError, match="leaves the range"):
        DomainRandomization(env, RandomizeCfg(ranges={"gel_stiffness": (100.0, 5000.0)}))
    # by hand: a value set before a reset is kept for that reset, then the task draws again
    plain = embodied.make(INSERT, num_envs=2, seed=0, obs_terms=("privileged",))
    assert plain.reset_hooks == []  # the task's own draw is part of its reset, not a hook
    plain.set_params(torch.tensor([0]), {"grasp_rot": torch.tensor([0.3])})
    plain.reset(env_ids=torch.tensor([0]))
    assert plain.params["grasp_rot"][0] == pytest.approx(0.3)
    plain.reset(env_ids=torch.tensor([0]))
    assert abs(plain.params["grasp_rot"][0]) <= 0.1


# ---------------------------------------------------------------------------------------- PegPlace
def test_peg_place_in_hand_pose_shows_only_through_touch() -> None:
    """Two envs differing only in where the peg sits in the hand: same proprio, different touch."""

    def make(slide: float):
        dr = dataclasses.replace(
            embodied.tasks.registry.load_cfg(PLACE).dr, grasp_slide=(slide, slide), grasp_rot=(0.0, 0.0)
        )
        env = embodied.make(PLACE, num_envs=2, seed=5, dr=dr)
        return env, env.reset(seed=5)[0]

    (env_a, a), (env_b, b) = make(0.005), make(-0.005)
    assert torch.equal(a["proprio"], b["proprio"])
    assert not torch.allclose(a["privileged"], b["privileged"])
    assert (a["tactile_image"].float() - b["tactile_image"].float()).abs().mean() > 1.0
    assert not torch.allclose(a["force_field"], b["force_field"], atol=1e-3)
    # the contact stripe sits at the peg's offset across the pad: the normal-force centroid tells it
    for env, obs, slide in ((env_a, a, 0.005), (env_b, b, -0.005)):
        fn = obs["force_field"][..., 2]  # (N, 2, rows, cols)
        x = env.rig.sensor.taxel_positions[..., 0]  # pad x of each taxel
        centroid = (fn * x).sum((-1, -2)) / fn.sum((-1, -2))
        # left pad's +x is the palm's +y, right pad's is -y (tactile_scene docstring)
        assert torch.allclose(centroid[:, 0], torch.full((2,), slide), atol=1e-3), centroid
        assert torch.allclose(centroid[:, 1], torch.full((2,), -slide), atol=1e-3), centroid
    action = torch.tensor([[0.3, -0.2, -0.3, 0.0, 0.0, 0.1]]).repeat(2, 1)
    for _ in range(3):
        a, *_ = env_a.step(action)
        b, *_ = env_b.step(action)
    # The hand moves the same either way, up to the sub-milliradian tilt that the off-centre peg's
    # weight gives the hand's compliant wrist (documented in peg_place.py).
    diff = (a["proprio"] - b["proprio"]).abs()
    assert diff[:, :3].max() < 2e-4 and diff[:, 3:6].max() < 2e-3 and diff[:, 6:].max() < 2e-4, diff
    assert not torch.allclose(a["force_field"], b["force_field"], atol=1e-3)


def test_peg_place_defeats_a_blind_policy_but_not_one_that_knows_the_grasp() -> None:
    n = 16
    env = embodied.make(PLACE, num_envs=n, seed=0, obs_terms=("proprio", "privileged"))
    success, _, _ = run_scripted(env, steps=60)
    assert success.all()
    obs, _ = env.reset(seed=0)
    blind = torch.zeros(n, dtype=torch.bool)
    for _ in range(60):  # centre the hand over the (exactly known) hole and push down
        rel = _part(obs["proprio"], PROPRIO_LAYOUT, "hand_pos_rel_socket_obs")
        a = torch.zeros(n, 6)
        a[:, :2] = -rel[:, :2] / 0.01
        a[:, 2] = torch.where(rel[:, :2].norm(dim=-1) < 5e-4, -0.5, 0.0)
        obs, _, _, _, info = env.step(a.clamp(-1, 1))
        blind |= info["success"]
    assert blind.float().mean() <= 0.3, blind  # 16 % over 64 envs (peg_place.py)


# ---------------------------------------------------------------------------------------- augmentation
def _images(n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 2, 3, 12, 16), generator=g, dtype=torch.uint8)


def test_channel_swap_permutes_channels() -> None:
    images = _images()
    perm = torch.tensor([[2, 0, 1], [0, 1, 2], [1, 2, 0]])
    out = channel_swap(images, perm)
    for n in range(3):
        for c in range(3):
            assert torch.equal(out[n, :, c], images[n, :, perm[n, c]])


def test_colour_jitter_matches_a_direct_computation_and_is_bounded() -> None:
    images = _images()
    ones = torch.ones(3)
    assert torch.equal(colour_jitter(images, torch.zeros(3), ones, ones, torch.ones(3, 3)), images)
    b = torch.tensor([0.1, -0.1, 0.0])
    out = colour_jitter(images, b, ones, ones, torch.ones(3, 3))
    expected = (images.float() + 255 * b.view(3, 1, 1, 1, 1)).clamp(0, 255).round()
    assert torch.equal(out.float(), expected)
    assert ((out.float() - images.float()).abs() <= 255 * 0.1 + 0.5).all()
    gain = torch.tensor([[1.1, 1.0, 0.9]] * 3)
    out = colour_jitter(images, torch.zeros(3), ones, ones, gain)
    assert torch.equal(out.float(), (images.float() * gain[0].view(3, 1, 1)).clamp(0, 255).round())
    grey = colour_jitter(images, torch.zeros(3), ones, torch.zeros(3), torch.ones(3, 3))
    assert (grey.float().amax(2) - grey.float().amin(2)).max() <= 1  # zero saturation: R = G = B
    flat = colour_jitter(images, torch.zeros(3), torch.zeros(3), ones, torch.ones(3, 3))
    assert (flat.float().amax((-3, -2, -1)) - flat.float().amin((-3, -2, -1))).max() <= 1  # zero contrast


def test_crop_keeps_the_shape_and_shift_translates() -> None:
    images = _images()
    zero = torch.zeros(3, 2, dtype=torch.long)
    assert torch.equal(crop_and_shift(images, 0.0, torch.full((3, 2), 0.5), zero), images)
    cropped = crop_and_shift(images, 0.25, torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]]), zero)
    assert cropped.shape == images.shape
    # a crop at the top-left corner shows only the top-left 9 x 12 pixels, stretched
    assert torch.equal(cropped[0, ..., 0, 0], images[0, ..., 0, 0])
    assert set(cropped[0, 0, 0].unique().tolist()) <= set(images[0, 0, 0, :9, :12].unique().tolist())
    assert torch.equal(cropped[1, ..., -1, -1], images[1, ..., -1, -1])
    shifted = crop_and_shift(images, 0.0, torch.full((3, 2), 0.5), torch.tensor([[2, 0], [0, -3], [0, 0]]))
    assert torch.equal(shifted[0, ..., 2:, :], images[0, ..., :-2, :])
    assert torch.equal(shifted[0, ..., 0, :], images[0, ..., 0, :])  # edge repeated
    assert torch.equal(shifted[1, ..., :, :-3], images[1, ..., :, 3:])
    assert torch.equal(shifted[2], images[2])


def test_augmenter_draws_within_its_ranges_per_episode() -> None:
    cfg = full_augmentation()
    aug = ImageAugmenter(cfg, 64)
    g = torch.Generator().manual_seed(0)
    aug.reset(torch.arange(64), g)
    s = aug.state
    assert (torch.sort(s["perm"], -1).values == torch.arange(3)).all() and len(s["perm"].unique(dim=0)) > 3
    assert s["brightness"].abs().max() <= cfg.brightness and s["brightness"].std() > 0
    assert ((s["contrast"] - 1).abs().max() <= cfg.contrast) and ((s["gain"] - 1).abs().max() <= cfg.channel_gain)
    assert s["shift"].abs().max() <= cfg.calibration_shift and s["shift"].abs().max() > 0
    before = {k: v.clone() for k, v in s.items()}
    aug.new_step(g)  # a step moves only the crop window
    assert not torch.equal(s["offset"], before["offset"])
    assert all(torch.equal(s[k], before[k]) for k in s if k != "offset")
    aug.reset(torch.tensor([0]), g)
    assert not torch.equal(s["perm"][0], before["perm"][0]) or not torch.equal(s["shift"][0], before["shift"][0])
    assert torch.equal(s["brightness"][1:], before["brightness"][1:])
    with pytest.raises(ValueError, match="crop"):
        ImageAugmentCfg(crop=0.6)


def test_task_augmentation_and_the_wrapper_change_only_tactile_images() -> None:
    plain = embodied.make(INSERT, num_envs=2, seed=0)
    augmented = embodied.make(INSERT, num_envs=2, seed=0, image_augment=dataclasses.asdict(full_augmentation()))
    a, _ = plain.reset(seed=0)
    b, _ = augmented.reset(seed=0)
    assert (
        not torch.equal(a["tactile_image"], b["tactile_image"]) and a["tactile_image"].shape == b["tactile_image"].shape
    )
    assert torch.equal(a["force_field"], b["force_field"]) and torch.equal(a["proprio"], b["proprio"])
    wrapped = ImageAugmentation(embodied.make(INSERT, num_envs=2, seed=0), full_augmentation(), seed=1)
    c, _ = wrapped.reset(seed=0)
    assert not torch.equal(a["tactile_image"], c["tactile_image"]) and torch.equal(a["privileged"], c["privileged"])
    perm = wrapped.augmenter.state["perm"].clone()
    obs, _, _, _, info = wrapped.step(torch.zeros(2, 6))
    assert torch.equal(wrapped.augmenter.state["perm"], perm)  # per episode, not per step
    assert torch.equal(info["final_obs"]["tactile_image"], obs["tactile_image"])
    # with augmentation on, the task still meets the whole batched contract (partial resets, state)
    check_batched_env(embodied.make(INSERT, num_envs=2, seed=0, image_augment=dataclasses.asdict(full_augmentation())))
    with pytest.raises(ValueError, match="not observation entries"):
        ImageAugmentation(embodied.make(INSERT, num_envs=1, obs_terms=("proprio",)), full_augmentation())


# ---------------------------------------------------------------------------------------- scenes
def test_shipped_peg_scenes_match_their_generator_and_load() -> None:
    import json

    from embodied.sim.physics.tactile_scene import SCENES_DIR, load_scene
    from embodied.tasks.tactile.scene import SHIPPED, peg_scene

    for name, geometry in SHIPPED.items():
        shipped = json.loads((SCENES_DIR / f"{name}.json").read_text(encoding="utf-8"))
        assert shipped == json.loads(json.dumps(peg_scene(geometry, name=name))), (
            f"{name}.json is stale: run python -m embodied.tasks.tactile.scene"
        )
        scene = load_scene(name)
        assert scene.objects[0].name == "peg" and all(g.sensed for g in scene.objects[0].geoms)
        assert not any(g.sensed for g in scene.objects[1].geoms)
    env = embodied.make(INSERT, num_envs=1, seed=0, obs_terms=("proprio",))
    shipped_round = load_scene("peg_insert_round")
    assert dataclasses.replace(shipped_round, name=env.scene.name, description=env.scene.description) == env.scene
