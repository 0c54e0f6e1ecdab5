"""Nav/ObjectNav-v0: find an object of a named category in a procedurally generated house (Habitat ObjectNav).

Task
    Each episode puts the agent (a cylinder, radius 0.1 m, camera at 0.88 m) at a random free spot
    of a house (``sim/nav/house.py``; a new house every episode, drawn from the ``cfg.split`` seed
    range: "train" or the held-out "val") facing a random way, and names a goal category
    (``objectgoal``, an index into :data:`~embodied.sim.nav.house.GOAL_CATEGORIES`). The start is
    at least 1 m (geodesic) from the goal region. Actions are Habitat's: 0 stop, 1 move forward
    0.25 m (sliding along walls), 2 turn left 30 deg, 3 turn right 30 deg. The action space is a
    Box of 4 scores in [-1, 1] and the env takes their argmax, so continuous-action learners
    work unchanged and a discrete policy sends a one-hot (or its logits). Episodes end when the
    agent calls stop, or after 500 steps.

Observation (a dict; ``cfg.obs_terms`` picks the entries, Habitat's keys)
    ``depth`` (N, H, W, 1) float32: metres, clipped to [min_depth, max_depth]; [0, 1] with
    ``camera.normalize_depth``. ``rgb`` (N, H, W, 3) uint8. ``semantic`` (N, H, W, 1) int32:
    class ids (:data:`~embodied.sim.nav.house.SEMANTIC_CLASSES`), or instance ids with
    ``semantic="instance"``. ``gps`` (N, 2) float32: the agent's position in the episode's start
    frame (metres forward, metres left). ``compass`` (N, 1) float32: heading relative to the
    start heading, rad in [-pi, pi). ``objectgoal`` (N, 1) int64.

Reward (ReLIC's; ``info["reward_terms"]``)
    ``distance``: ``w_distance * (previous - current distance to goal)``; ``success``:
    ``w_success`` on a successful stop; ``slack``: ``slack`` every step.

Randomised
    The house (seed drawn from the split's range), the goal category (from ``cfg.goal_categories``),
    the start position and heading. No physical parameters are declared.

Success
    Stop called with the agent's centre within ``success_distance`` (1 m) geodesic of an instance
    of the goal category. The distance to goal is the geodesic distance (``sim/nav/geodesic.py``)
    to that 1 m region. Where an episode ends (``info["nav_episode_done"]``), ``info`` holds
    ``success``, ``spl`` (success x shortest / max(shortest, taken path)), ``soft_spl`` (the same
    with success replaced by progress 1 - d_end / d_start) and ``distance_to_goal``, as Habitat
    reports them.

Backends: ``torch`` (the embedded Warp simulator); ``habitat`` is detected and explained in
``sim/nav/habitat.py``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium
import numpy as np
import torch

from embodied.sim.env import BatchedEnv, TaskCfg
from embodied.sim.nav.agent import ACTION_NAMES, STOP, AgentCfg, AgentMover
from embodied.sim.nav.geodesic import RESOLUTION, OccupancyGrid
from embodied.sim.nav.habitat import require_habitat
from embodied.sim.nav.house import GOAL_CATEGORIES, SEMANTIC_CLASSES, House, generate_house, house_seeds
from embodied.sim.nav.raycast import CameraCfg, RayCaster
from embodied.sim.nav.scene import FIRST_INSTANCE_ID, MAX_PRIMS, SceneBatch
from embodied.sim.nav.topdown import top_down_map

OBS_TERMS = ("depth", "rgb", "semantic", "gps", "compass", "objectgoal")
FIELD_SHAPE = (128, 128)
"""Padded (rows, cols) of the distance fields on the device (houses are at most 12 x 10 m at 0.1 m)."""
MIN_START_DISTANCE = 1.0
"""Metres (geodesic) from the start to the goal region, at least."""
HOUSE_CACHE_SIZE = 256
GPS_RANGE = 20.0
"""Metres: bounds of ``gps`` (houses are at most 12 x 10 m)."""


@dataclass
class ObjectNavCfg(TaskCfg):
    """Config of the ObjectNav tasks (Nav/ObjectNav-v0, Nav/ExtObjNav-v0)."""

    split: Literal["train", "val"] = "train"
    """House seed range: "train" or the held-out "val" (``sim/nav/house.py``: HOUSE_SPLITS)."""
    goal_categories: tuple[str, ...] = GOAL_CATEGORIES
    """Categories goals are drawn from (a subset of GOAL_CATEGORIES)."""
    obs_terms: tuple[str, ...] = ("depth", "rgb", "gps", "compass", "objectgoal")
    """Observation entries to compute (any of OBS_TERMS)."""
    camera: CameraCfg = field(default_factory=CameraCfg)
    agent: AgentCfg = field(default_factory=AgentCfg)
    semantic: Literal["category", "instance"] = "category"
    success_distance: float = 1.0
    w_distance: float = 1.0
    w_success: float = 2.0
    slack: float = -0.001
    episode_steps: int = 500
    """Steps per episode within a trial (Nav/ExtObjNav-v0; ObjectNav's episodes are the registry's 500)."""


_HOUSES: OrderedDict[int, House] = OrderedDict()


def cached_house(seed: int) -> House:
    """The house of ``seed``, generated once per process (least recently used of HOUSE_CACHE_SIZE dropped)."""
    if seed in _HOUSES:
        _HOUSES.move_to_end(seed)
        return _HOUSES[seed]
    house = generate_house(seed)
    _HOUSES[seed] = house
    if len(_HOUSES) > HOUSE_CACHE_SIZE:
        _HOUSES.popitem(last=False)
    return house


class ObjectNavEnv(BatchedEnv):
    """Batched ObjectNav in procedural houses (see the module docstring)."""

    default_max_episode_steps = 500

    def __init__(self, cfg: ObjectNavCfg, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        self.backend = self.backend or "torch"
        if self.backend == "habitat":
            require_habitat(self.task_id)
        check_cfg(cfg, self.task_id)
        n, dev = self.num_envs, self.device
        self.goal_ids = torch.tensor([GOAL_CATEGORIES.index(c) for c in cfg.goal_categories], device=dev)
        self.seeds = house_seeds(cfg.split)
        self.scene = SceneBatch(n, dev, semantic=cfg.semantic)
        self.caster = RayCaster(cfg.camera, n, dev)
        self.mover = AgentMover(cfg.agent, n, dev)
        self.pose = torch.zeros(n, 3, device=dev)
        self.start_pose = torch.zeros(n, 3, device=dev)
        self.goal = torch.zeros(n, dtype=torch.long, device=dev)
        self.house_seed = torch.full((n,), -1, dtype=torch.long, device=dev)
        self.fields = torch.full((n, *FIELD_SHAPE), math.inf, device=dev)
        """(N, rows, cols) geodesic distance (m) from each cell to the current goal's instances."""
        self.start_distance = torch.zeros(n, device=dev)
        self.prev_distance = torch.zeros(n, device=dev)
        self.path_length = torch.zeros(n, device=dev)
        self.nav_steps = torch.zeros(n, dtype=torch.long, device=dev)
        self.episode_index = torch.zeros(n, dtype=torch.long, device=dev)
        self._step_info: dict[str, torch.Tensor] = {}
        self._set_spaces(observation_space(cfg), gymnasium.spaces.Box(-1.0, 1.0, (len(ACTION_NAMES),), np.float32))

    # ------------------------------------------------------------------ episodes
    def _reset_envs(self, env_ids: torch.Tensor) -> None:
        self.episode_index[env_ids] = 0
        self._start_episodes(env_ids, new_house=True)

    def _start_episodes(self, env_ids: torch.Tensor, new_house: bool) -> None:
        """New goal and start pose for ``env_ids`` (and a new house if ``new_house``), from ``self.generator``."""
        k, dev, g = len(env_ids), self.device, self.generator
        seeds = self.seeds[0] + torch.randint(len(self.seeds), (k,), generator=g, device=dev)
        goals = self.goal_ids[torch.randint(len(self.goal_ids), (k,), generator=g, device=dev)]
        start_seeds = torch.randint(2**31 - 1, (k,), generator=g, device=dev)
        for env, seed, goal, start_seed in zip(
            env_ids.tolist(), seeds.tolist(), goals.tolist(), start_seeds.tolist(), strict=True
        ):
            if new_house or self.scene.houses[env] is None:
                self.house_seed[env] = seed
                self.scene.set_house(env, cached_house(seed))
            house = self.scene.houses[env]
            grid = OccupancyGrid.of(house, self.cfg.agent.radius, self.cfg.agent.height)
            dist = grid.distance_field(house, goal)
            rows, cols = dist.shape
            self.fields[env] = math.inf
            self.fields[env, :rows, :cols] = torch.as_tensor(dist, device=dev)
            rng = np.random.default_rng(start_seed)
            cells = start_cells(dist, self.cfg.success_distance)
            r, c = cells[rng.integers(len(cells))]
            res = grid.resolution
            self.start_pose[env] = torch.tensor([(c + 0.5) * res, (r + 0.5) * res, rng.uniform(-math.pi, math.pi)])
            self.goal[env] = goal
        self.pose[env_ids] = self.start_pose[env_ids]
        d = self.distance_to_goal()[env_ids]
        self.start_distance[env_ids] = d
        self.prev_distance[env_ids] = d
        self.path_length[env_ids] = 0.0
        self.nav_steps[env_ids] = 0

    # ------------------------------------------------------------------ stepping
    def _apply_action(self, action: torch.Tensor) -> None:
        self._discrete = action.argmax(dim=1)
        before = self.pose[:, :2].clone()
        self.mover.step(self.scene, self.pose, self._discrete)
        self.path_length += (self.pose[:, :2] - before).norm(dim=1)
        self.nav_steps += 1

    def _reward_and_termination(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        cfg = self.cfg
        d = self.distance_to_goal()
        stop = self._discrete == STOP
        success = stop & (d <= 0.0)
        terms = {
            "distance": cfg.w_distance * (self.prev_distance - d),
            "success": cfg.w_success * success.float(),
            "slack": torch.full_like(d, cfg.slack),
        }
        self.prev_distance = d.clone()  # info keeps d: a reset of some envs must not change it
        done = stop | self._episode_out_of_time()
        shortest = self.start_distance
        efficiency = shortest / torch.maximum(shortest, self.path_length).clamp_min(1e-6)
        progress = (1.0 - d / shortest.clamp_min(1e-6)).clamp(0.0, 1.0)
        self._step_info = {
            "nav_episode_done": done,
            "episode_index": self.episode_index.clone(),
            "success": success,
            "spl": success.float() * efficiency,
            "soft_spl": progress * efficiency,
            "distance_to_goal": d,
            "collided": self.mover.collided.bool().clone(),
        }
        return terms, self._end_episodes(done, stop)

    def _episode_out_of_time(self) -> torch.Tensor:
        """Envs whose episode reaches its step limit this step (ObjectNav: the registry's, via episode_length)."""
        return self.episode_length + 1 >= self.max_episode_steps

    def _end_episodes(self, done: torch.Tensor, stop: torch.Tensor) -> torch.Tensor:
        """``terminated``: ObjectNav ends the env's episode on stop (a truncation is the base class's)."""
        return stop

    def random_action(self) -> torch.Tensor:
        """Uniform scores with stop's score at -1: a random walk over the three motions that never stops.

        Habitat's random baseline (habitat-baselines' RandomAgent) likewise moves at random and stops
        only by an oracle; a uniform choice would stop within four steps on average."""
        action = super().random_action()
        action[:, STOP] = -1.0
        return action

    def step(self, actions: torch.Tensor | np.ndarray):
        obs, reward, terminated, truncated, info = super().step(actions)
        info.update(self._step_info)  # computed before the autoreset: it describes the finished step
        return obs, reward, terminated, truncated, info

    # ------------------------------------------------------------------ measurements
    def distance_to_goal(self) -> torch.Tensor:
        """(N,) geodesic metres from each agent to its goal region (0 inside it)."""
        to_instance = geodesic_at(self.fields, self.pose[:, :2], RESOLUTION)
        return (to_instance - self.cfg.success_distance).clamp_min(0.0)

    def _observe(self) -> dict[str, torch.Tensor]:
        terms = self.cfg.obs_terms
        out: dict[str, torch.Tensor] = {}
        if {"depth", "rgb", "semantic"} & set(terms):
            frames = self.caster.render(self.scene, self.pose, semantic="semantic" in terms, rgb="rgb" in terms)
            if "depth" in terms:
                out["depth"] = frames.depth.unsqueeze(-1)
            if "rgb" in terms:
                out["rgb"] = frames.rgb
            if "semantic" in terms:
                out["semantic"] = frames.semantic.unsqueeze(-1)
        if "gps" in terms:
            delta = self.pose[:, :2] - self.start_pose[:, :2]
            c, s = torch.cos(self.start_pose[:, 2]), torch.sin(self.start_pose[:, 2])
            out["gps"] = torch.stack([c * delta[:, 0] + s * delta[:, 1], -s * delta[:, 0] + c * delta[:, 1]], dim=1)
        if "compass" in terms:
            rel = self.pose[:, 2] - self.start_pose[:, 2]
            out["compass"] = (torch.remainder(rel + math.pi, 2 * math.pi) - math.pi).unsqueeze(-1)
        if "objectgoal" in terms:
            out["objectgoal"] = self.goal.unsqueeze(-1).clone()
        return {k: out[k] for k in OBS_TERMS if k in out}

    def _render_env(self, env_id: int, width: int, height: int) -> np.ndarray:
        """The agent's camera on the left half, the house's top-down map (goal objects lit up) on the right."""
        left = max(width // 2, 1)
        camera = CameraCfg(**{**vars(self.cfg.camera), "width": left, "height": height})
        frames = RayCaster(camera, 1, self.device).render(
            self.scene, self.pose[env_id : env_id + 1], semantic=False, first_env=env_id
        )
        frame = np.full((height, width, 3), 255, np.uint8)
        frame[:, :left] = frames.rgb[0].cpu().numpy()
        if width - left > 0:
            house, pose = self.scene.houses[env_id], self.pose[env_id].cpu().numpy()
            plan = top_down_map(house, int(self.goal[env_id]), np.zeros((0, 2)), pose, width - left)
            plan = plan[:height]  # a deep house is cut at the bottom rather than squeezed
            top = (height - len(plan)) // 2
            frame[top : top + len(plan), left:] = plan
        return frame

    # ------------------------------------------------------------------ checkpoints
    _STATE = (
        "pose",
        "start_pose",
        "goal",
        "house_seed",
        "fields",
        "start_distance",
        "prev_distance",
        "path_length",
        "nav_steps",
        "episode_index",
    )

    def _sim_state(self) -> dict[str, Any]:
        return {name: getattr(self, name).clone() for name in self._STATE}

    def _load_sim_state(self, state: dict[str, Any]) -> None:
        for name in self._STATE:
            getattr(self, name).copy_(state[name])
        for env, seed in enumerate(self.house_seed.tolist()):
            if seed >= 0 and (self.scene.houses[env] is None or self.scene.houses[env].seed != seed):
                self.scene.set_house(env, cached_house(seed))


def start_cells(dist: np.ndarray, success_distance: float) -> np.ndarray:
    """(K, 2) (row, col) of free cells at least MIN_START_DISTANCE from the goal region (Habitat's episodes
    keep such a margin); in a house too small for that, the cells outside the region, else any free cell."""
    reachable = np.isfinite(dist)
    for margin in (MIN_START_DISTANCE, 0.0):
        cells = np.argwhere(reachable & (dist > success_distance + margin))
        if len(cells):
            return cells
    return np.argwhere(reachable)


def geodesic_at(fields: torch.Tensor, xy: torch.Tensor, resolution: float) -> torch.Tensor:
    """(N,) distance at continuous points ``xy`` (N, 2): min over the 4 x 4 nearest cells of field + straight hop.

    Between cell centres this is continuous and never below the true grid distance by more than a hop."""
    n, rows, cols = fields.shape
    base = torch.floor(xy / resolution - 0.5).long() - 1  # (N, 2) cell (x, y) one below the nearest lower one
    offsets = torch.arange(4, device=xy.device)
    cx = (base[:, 0:1] + offsets).clamp(0, cols - 1)  # (N, 4)
    cy = (base[:, 1:2] + offsets).clamp(0, rows - 1)
    idx = cy[:, :, None] * cols + cx[:, None, :]  # (N, 4, 4)
    values = fields.reshape(n, -1).gather(1, idx.reshape(n, -1)).reshape(n, 4, 4)
    centre_x = (cx.float() + 0.5) * resolution
    centre_y = (cy.float() + 0.5) * resolution
    hop = torch.hypot(centre_x[:, None, :] - xy[:, 0:1, None], centre_y[:, :, None] - xy[:, 1:2, None])
    return (values + hop).reshape(n, -1).min(dim=1).values


def observation_space(cfg: ObjectNavCfg) -> gymnasium.spaces.Dict:
    """The single-env observation space of the ``cfg.obs_terms`` entries (see the module docstring)."""
    cam = cfg.camera
    h, w = cam.height, cam.width
    top = 1.0 if cam.normalize_depth else cam.max_depth
    low = 0.0 if cam.normalize_depth else cam.min_depth
    max_sem = len(SEMANTIC_CLASSES) - 1 if cfg.semantic == "category" else FIRST_INSTANCE_ID + MAX_PRIMS - 1
    spaces = {
        "depth": gymnasium.spaces.Box(low, top, (h, w, 1), np.float32),
        "rgb": gymnasium.spaces.Box(0, 255, (h, w, 3), np.uint8),
        "semantic": gymnasium.spaces.Box(0, max_sem, (h, w, 1), np.int32),
        "gps": gymnasium.spaces.Box(-GPS_RANGE, GPS_RANGE, (2,), np.float32),
        "compass": gymnasium.spaces.Box(-np.pi, np.pi, (1,), np.float32),
        "objectgoal": gymnasium.spaces.Box(0, len(GOAL_CATEGORIES) - 1, (1,), np.int64),
    }
    return gymnasium.spaces.Dict({k: spaces[k] for k in OBS_TERMS if k in cfg.obs_terms})


def check_cfg(cfg: ObjectNavCfg, task_id: str) -> None:
    """Raise ValueError naming the field when the config asks for something the task cannot do."""
    unknown = [c for c in cfg.goal_categories if c not in GOAL_CATEGORIES]
    if unknown or not cfg.goal_categories:
        raise ValueError(
            f"{task_id}: unknown goal categories {unknown or '(none given)'}; goal_categories must be a"
            f" non-empty subset of {list(GOAL_CATEGORIES)}"
        )
    bad_terms = [t for t in cfg.obs_terms if t not in OBS_TERMS]
    if bad_terms or not cfg.obs_terms:
        raise ValueError(f"{task_id}: obs_terms {list(cfg.obs_terms)} must be a non-empty subset of {list(OBS_TERMS)}")
    if cfg.success_distance <= 0 or cfg.episode_steps < 1:
        raise ValueError(
            f"{task_id}: success_distance must be > 0 and episode_steps >= 1, got {cfg.success_distance},"
            f" {cfg.episode_steps}"
        )
