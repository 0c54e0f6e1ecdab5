"""The embedded navigation simulator: houses, exact depth, collisions, geodesic distances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from embodied.sim.nav.agent import MOVE_FORWARD, AgentCfg, AgentMover
from embodied.sim.nav.geodesic import OccupancyGrid
from embodied.sim.nav.house import (
    BOX,
    CEILING_HEIGHT,
    CYLINDER,
    GOAL_CATEGORIES,
    SEMANTIC_CLASSES,
    WALL_THICKNESS,
    House,
    generate_house,
    house_seeds,
)
from embodied.sim.nav.raycast import CameraCfg, RayCaster
from embodied.sim.nav.scene import SceneBatch

WALL = SEMANTIC_CLASSES.index("wall")


def room(width: float, depth: float, extra: list | None = None) -> House:
    """A closed rectangular room [0, width] x [0, depth] (inner faces exactly there), plus ``extra`` prims."""
    t = WALL_THICKNESS
    walls = [
        (BOX, (-t, -t, width + t, 0.0), (0.0, CEILING_HEIGHT), WALL),
        (BOX, (-t, depth, width + t, depth + t), (0.0, CEILING_HEIGHT), WALL),
        (BOX, (-t, -t, 0.0, depth + t), (0.0, CEILING_HEIGHT), WALL),
        (BOX, (width, -t, width + t, depth + t), (0.0, CEILING_HEIGHT), WALL),
    ]
    prims = walls + (extra or [])
    return House(
        seed=-1,
        size=(width, depth),
        rooms=[(0.0, 0.0, width, depth)],
        doors=[],
        kind=np.array([p[0] for p in prims], np.int32),
        geom=np.array([p[1] for p in prims], np.float32),
        z=np.array([p[2] for p in prims], np.float32),
        category=np.array([p[3] for p in prims], np.int32),
    )


def render(house: House, pose: tuple[float, float, float], camera: CameraCfg) -> tuple[np.ndarray, np.ndarray]:
    scene = SceneBatch(1)
    scene.set_house(0, house)
    frames = RayCaster(camera, 1).render(scene, torch.tensor([pose], dtype=torch.float32))
    return frames.depth[0].numpy().copy(), frames.semantic[0].numpy().copy()


def expected_room_depth(width, depth, pose, camera: CameraCfg) -> np.ndarray:
    """Closed form: z-buffer depth of every pixel in an empty box room (walls, floor, ceiling)."""
    x, y, heading = pose
    f = camera.focal
    out = np.zeros((camera.height, camera.width))
    for c in range(camera.width):
        xc = (c + 0.5 - camera.width / 2) / f
        dx = math.cos(heading) + xc * math.sin(heading)
        dy = math.sin(heading) - xc * math.cos(heading)
        # forward depth to the wall: the ray's point at forward depth s is (x + s dx, y + s dy)
        s_wall = min(
            (width - x) / dx if dx > 0 else (-x / dx if dx < 0 else math.inf),
            (depth - y) / dy if dy > 0 else (-y / dy if dy < 0 else math.inf),
        )
        for r in range(camera.height):
            yr = (camera.height / 2 - r - 0.5) / f  # rise per metre of forward depth
            s = s_wall
            if yr < 0:
                s = min(s, camera.camera_height / -yr)
            elif yr > 0:
                s = min(s, (CEILING_HEIGHT - camera.camera_height) / yr)
            out[r, c] = min(s, camera.max_depth)
    return out


@pytest.mark.parametrize("heading", [0.0, 0.4, math.pi / 2, -2.5])
def test_depth_is_exact_in_a_box_room_seen_from_its_centre(heading):
    camera = CameraCfg(width=64, height=48, max_depth=20.0)
    pose = (3.0, 2.0, heading)
    depth, semantic = render(room(6.0, 4.0), pose, camera)
    expected = expected_room_depth(6.0, 4.0, pose, camera)
    np.testing.assert_allclose(depth, expected, rtol=2e-5, atol=2e-5)
    seen = set(np.unique(semantic).tolist())
    assert (
        {SEMANTIC_CLASSES.index("floor"), WALL}
        <= seen
        <= {SEMANTIC_CLASSES.index(n) for n in ("floor", "ceiling", "wall")}
    )


def test_frames_rendered_on_several_threads_equal_one_thread():
    """Chunks of envs on a thread pool (each from its own first env) give the one-thread frames."""
    scene = SceneBatch(5)
    for e in range(5):
        scene.set_house(e, generate_house(e))
    g = torch.Generator().manual_seed(0)
    pose = torch.cat([torch.rand(5, 2, generator=g) * 2.0 + 1.0, torch.rand(5, 1, generator=g) * 6.0], 1)
    camera = CameraCfg(width=32, height=24)
    one = RayCaster(camera, 5, threads=1).render(scene, pose)
    for threads in (2, 3):
        many = RayCaster(camera, 5, threads=threads)
        for first in (0, 1):  # the first env offset composes with each chunk's own offset
            frames, expected = many.render(scene, pose[first:], first_env=first), one
            assert torch.equal(frames.depth, expected.depth[first:])
            assert torch.equal(frames.semantic, expected.semantic[first:])
            assert torch.equal(frames.rgb, expected.rgb[first:])


def test_depth_of_a_box_top_and_a_cylinder_side_is_closed_form():
    """A low box in front shows its top face; a cylinder straight ahead its near side."""
    camera = CameraCfg(width=33, height=33, max_depth=20.0)
    table = SEMANTIC_CLASSES.index("table")
    plant = SEMANTIC_CLASSES.index("plant")
    # Box: front face at x = 2 from the camera at x = 1 (1 m away), top at z = 0.5, 1 m deep.
    house = room(8.0, 4.0, [(BOX, (2.0, 1.0, 3.0, 3.0), (0.0, 0.5), table)])
    depth, semantic = render(house, (1.0, 2.0, 0.0), camera)
    f = camera.focal
    centre = camera.width // 2  # x_c = 0: the optical axis
    for r in range(camera.height):
        yr = (camera.height / 2 - r - 0.5) / f
        z_front = camera.camera_height + yr * 1.0
        if 0.0 <= z_front <= 0.5:
            assert depth[r, centre] == pytest.approx(1.0, abs=1e-5) and semantic[r, centre] == table
        elif z_front > 0.5 and yr < 0 and (0.5 - camera.camera_height) / yr <= 2.0:
            assert depth[r, centre] == pytest.approx((0.5 - camera.camera_height) / yr, rel=1e-5)
            assert semantic[r, centre] == table
    # Cylinder: radius 0.5 centred 3 m ahead: its near side is 2.5 m away on the axis.
    house = room(8.0, 4.0, [(CYLINDER, (4.0, 2.0, 0.5, 0.5), (0.0, 2.0), plant)])
    depth, semantic = render(house, (1.0, 2.0, 0.0), camera)
    assert depth[camera.height // 2, centre] == pytest.approx(2.5, abs=1e-5)
    assert semantic[camera.height // 2, centre] == plant


def test_depth_normalisation_follows_habitat():
    raw = CameraCfg(width=16, height=16, min_depth=0.5, max_depth=5.0)
    norm = CameraCfg(width=16, height=16, min_depth=0.5, max_depth=5.0, normalize_depth=True)
    d_raw, _ = render(room(6.0, 4.0), (3.0, 2.0, 0.0), raw)
    d_norm, _ = render(room(6.0, 4.0), (3.0, 2.0, 0.0), norm)
    np.testing.assert_allclose(d_norm, (d_raw - 0.5) / 4.5, atol=1e-6)
    assert d_norm.min() >= 0.0 and d_norm.max() <= 1.0


def test_houses_are_deterministic_per_seed_and_differ_across_seeds():
    a, b, c = generate_house(5), generate_house(5), generate_house(6)
    for name in ("kind", "geom", "z", "category"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.size != c.size or not np.array_equal(a.geom, c.geom)
    assert len(a.rooms) >= 2 and a.doors


def test_every_house_holds_each_goal_category_reachable():
    for seed in (0, 1, 2, 100_000):
        house = generate_house(seed)
        grid = OccupancyGrid.of(house)
        for goal in range(len(GOAL_CATEGORIES)):
            assert len(house.instances_of(goal)) >= 1
            field = grid.distance_field(house, goal)
            assert np.isfinite(field[grid.free]).all(), f"house {seed}: goal {goal} cut off from some free cell"


def test_train_and_held_out_splits_do_not_overlap():
    train, val = house_seeds("train"), house_seeds("val")
    assert not set(train) & set(val)
    with pytest.raises(ValueError, match="unknown house split 'test'"):
        house_seeds("test")


def test_geodesic_distance_goes_around_a_wall():
    """A wall splits a room but for a gap at its far end: the path must go round it."""
    chair = SEMANTIC_CLASSES.index("chair")
    house = room(
        6.0,
        4.0,
        [
            (BOX, (2.95, 0.0, 3.05, 3.0), (0.0, CEILING_HEIGHT), WALL),
            (BOX, (4.5, 1.0, 5.0, 1.5), (0.0, 0.9), chair),
        ],
    )
    grid = OccupancyGrid.of(house)
    field = grid.distance_field(house, GOAL_CATEGORIES.index("chair"))
    start = (int(1.0 / grid.resolution), int(1.0 / grid.resolution))  # (row y = 1.05, col x = 1.05)
    # Round the wall's end, keeping the agent's radius: (1.05, 1.05) -> (2.85, 3.15) -> (3.15, 3.15) ->
    # the chair's corner (4.5, 1.5); 8-connected grid paths are at most ~8 % longer than straight ones.
    around = math.hypot(1.8, 2.1) + 0.3 + math.hypot(1.35, 1.65)
    assert around - 0.05 <= field[start] <= around * 1.09
    assert np.isinf(field[~grid.free]).all()


def _inside_any(house: House, xy: np.ndarray, radius: float) -> bool:
    blocking = np.flatnonzero(house.z[:, 0] < AgentCfg().height)
    return bool((house.footprint_distance(xy[None], blocking) < radius - 1e-5).any())


@settings(max_examples=25, deadline=None)
@given(actions=st.lists(st.sampled_from([1, 1, 1, 2, 3]), min_size=10, max_size=80), seed=st.integers(0, 799))
def test_the_agent_never_enters_or_passes_an_obstacle(actions, seed):
    house = generate_house(seed % 8)  # a few houses: generation is not what is tested here
    scene = SceneBatch(1)
    scene.set_house(0, house)
    grid = OccupancyGrid.of(house)
    rng = np.random.default_rng(seed)
    free = np.argwhere(grid.free)
    r, c = free[rng.integers(len(free))]
    pose = torch.tensor(
        [[(c + 0.5) * grid.resolution, (r + 0.5) * grid.resolution, rng.uniform(-3, 3)]], dtype=torch.float32
    )
    mover = AgentMover(AgentCfg(), 1)
    cfg = mover.cfg
    for a in actions:
        before = pose[0, :2].numpy().astype(np.float64).copy()
        mover.step(scene, pose, torch.tensor([a]))
        after = pose[0, :2].numpy().astype(np.float64)
        assert not _inside_any(house, after, cfg.radius), f"agent inside an obstacle at {after}"
        # nothing was jumped over: the centre's straight path never enters a footprint (a slide round a
        # corner is two legs, whose chord passes the corner at >= radius - 0.088 m)
        for s in np.linspace(0, 1, 11):
            assert not _inside_any(house, before + s * (after - before), 0.01)
        assert np.linalg.norm(after - before) <= cfg.forward_step + 1e-5


def test_forward_slides_along_a_wall_and_turns_are_30_degrees():
    house = room(4.0, 4.0)
    scene = SceneBatch(1)
    scene.set_house(0, house)
    mover = AgentMover(AgentCfg(), 1)
    # Facing the wall at x = 4 at 45 degrees, 0.15 m from it: x is blocked, y slides.
    pose = torch.tensor([[3.85, 1.0, math.pi / 4]])
    collided = mover.step(scene, pose, torch.tensor([MOVE_FORWARD]))
    assert bool(collided[0])
    assert pose[0, 0].item() <= 3.9 + 1e-5 and pose[0, 1].item() > 1.0 + 0.1
    pose = torch.tensor([[2.0, 2.0, 0.0]])
    mover.step(scene, pose, torch.tensor([2]))
    assert pose[0, 2].item() == pytest.approx(math.radians(30), abs=1e-6)
    mover.step(scene, pose, torch.tensor([3]))
    mover.step(scene, pose, torch.tensor([3]))
    assert pose[0, 2].item() == pytest.approx(-math.radians(30), abs=1e-6)


def test_bad_camera_and_agent_configs_are_clear_errors():
    with pytest.raises(ValueError, match="hfov"):
        RayCaster(CameraCfg(hfov=180.0), 1)
    with pytest.raises(ValueError, match="min_depth"):
        RayCaster(CameraCfg(min_depth=5.0, max_depth=1.0), 1)
    with pytest.raises(ValueError, match="substeps"):
        AgentMover(AgentCfg(substeps=1), 1)
    with pytest.raises(ValueError, match="semantic"):
        SceneBatch(1, semantic="colour")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_frames_and_moves_match_cpu():
    """The same houses, poses and actions on CUDA give the CPU's frames and poses (one batched launch each)."""
    n, camera = 6, CameraCfg(width=64, height=48)
    g = torch.Generator().manual_seed(1)
    start = torch.cat([torch.rand(n, 2, generator=g) * 2.0 + 1.0, torch.rand(n, 1, generator=g) * 6.0], 1)
    actions = torch.randint(1, 4, (40, n), generator=g)
    results = {}
    for dev in ("cpu", "cuda"):
        scene = SceneBatch(n, device=dev)
        for e in range(n):
            scene.set_house(e, generate_house(e))
        pose, mover = start.clone().to(dev), AgentMover(AgentCfg(), n, dev)
        for step_actions in actions:
            mover.step(scene, pose, step_actions.to(dev))
        frames = RayCaster(camera, n, dev).render(scene, pose)
        assert frames.depth.device.type == dev
        results[dev] = [t.cpu() for t in (pose, frames.depth, frames.semantic, frames.rgb)]
    (pose_cpu, depth_cpu, sem_cpu, rgb_cpu), (pose_gpu, depth_gpu, sem_gpu, rgb_gpu) = results["cpu"], results["cuda"]
    torch.testing.assert_close(pose_gpu, pose_cpu, rtol=0, atol=1e-4)
    # fused multiply-adds round differently on the GPU: a ray grazing an edge may hit the other prim
    close = (depth_gpu - depth_cpu).abs() < 1e-3
    assert close.float().mean() > 0.999, f"{(~close).sum()} of {close.numel()} depth pixels differ"
    assert (sem_gpu == sem_cpu).float().mean() > 0.999
    assert ((rgb_gpu.int() - rgb_cpu.int()).abs() <= 2).float().mean() > 0.999
