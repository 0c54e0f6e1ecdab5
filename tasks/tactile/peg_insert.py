"""Tactile/PegInsert-v0: insert a held peg into a tight socket with two gel-padded fingers (TacSL).

Task
    A floating parallel gripper (impedance-controlled hand, 6 Cartesian joints; two fingers with
    a gel pad each, see ``sim/physics/tactile_scene.py``) holds a peg above a socket on the
    floor (``tasks/tactile/scene.py``: round, rectangular or, held out, hexagonal pegs;
    clearance ``cfg.clearance`` per side, 0.5 mm by default). The fingers squeeze all the time.
    Each step the action ``a`` in [-1, 1]^6 moves the hand's target to its current pose plus
    ``(a[:3] * 1 cm, a[3:] * 0.05 rad)`` (x, y, z; rotations about x, y, z), held for one 10 ms
    control period (5 physics steps of 2 ms: 100 Hz). Episodes last 150 steps (1.5 s; TacSL uses
    256 steps at 60 Hz, 4.3 s: ours is shorter to stay cheap on a CPU, and a controller that
    knows the true poses inserts in about 21 steps from any start) and end early on success (not
    when the peg is dropped: with a negative per-step reward, ending there would pay the policy
    to drop it; ``terminate_on_drop`` turns that on for evaluation).

Observation (a dict; ``cfg.obs_terms`` picks the entries, the layout of each is fixed)
    ``proprio`` (N, 13) float32: :data:`PROPRIO_LAYOUT` - hand position minus the socket's
    *observed* (noisy) position (3, m), hand angles rx, ry, rz (3, rad), gripper opening
    between the gels (1, m), previous action (6).
    ``tactile_image`` (N, 2, 3, H, W) uint8: the left and right pads' visuotactile images at
    policy resolution (``cfg.image_size`` = (H, W), default 60 x 80), channels first, after the
    task's image augmentation (``cfg.image_augment``, off by default).
    ``force_field`` (N, 2, rows, cols, 3) float32: both pads' taxel forces (shear x, shear y,
    normal; N) on a ``cfg.taxels`` grid (default 10 x 14).
    ``privileged`` (N, 31) float32: :data:`PRIVILEGED_LAYOUT` - peg position relative to the
    true socket (3), peg orientation wxyz (4), true socket position (3), hand position relative
    to the true socket (3), hand angles (3), hand velocity (linear 3 + angular 3, the pads'
    mean), engine normal contact force on each pad (2, N), peg position in the hand frame
    (3), socket observation error (observed - true, 3), keypoint distance (1, m).
    Critics see ``privileged``; a deployable actor sees ``proprio`` and a tactile entry.

Reward (``info["reward_terms"]``)
    ``keypoint``: ``-w_keypoint * d / 1 cm`` with ``d`` the mean distance between 4 keypoints on
    the peg's axis (bottom to top) and the same keypoints of the fully inserted peg (upright,
    centred, bottom on the hole's floor); ``success``: ``+w_success`` on the step the peg is in;
    ``action``: ``-w_action * |a|^2``.

Randomised (drawn per env at every reset from ``cfg.dr``; each is a declared
:class:`~embodied.sim.env.RandomizedParam`, so the sim-to-real layer's DomainRandomization can
override any of them, within :data:`PARAM_LIMITS`)
    ``start_x``, ``start_y`` (+-10 mm): hand start offset from the socket axis.
    ``start_z`` (5-20 mm): height of the peg's bottom above the socket's top.
    ``start_yaw`` (+-0.05 rad): hand yaw.
    ``grasp_rot`` (+-0.1 rad): peg rotation in the grasp about the fingers' axis (palm x).
        TacSL draws +-0.63 rad. In a 0.5 mm clearance a tilt of up to ~0.1 rad still enters the
        hole deep enough to succeed (a controller told the true poses that lines up the peg's
        bottom but never turns the wrist succeeds in 100 % of 32 envs at +-0.1 rad, 50 % at
        +-0.2), so the default asks for touch to find the hole but not yet for straightening the
        peg; a tilt of 0.63 rad puts the peg's bottom 15 mm off the hand's
        axis and must be sensed and corrected with the wrist before anything enters. The
        supported range keeps +-0.63 (``dr.grasp_rot=[-0.63, 0.63]`` for TacSL's setting; a
        controller told the true poses inserts 100 % of 32 envs there, median 25 steps).
    ``grasp_height`` (+-3 mm): peg position along its axis in the grasp.
    ``grasp_slide`` (0): peg offset along the pads' width (Tactile/PegPlace-v0 uses +-7 mm).
    ``socket_noise_x``, ``socket_noise_y`` (+-5 mm), ``socket_noise_z`` (+-2 mm): error of the
        socket position the policy observes (constant through an episode, as a pose estimate).
    ``gel_stiffness`` (3000-7000 N/m): the gel's contact stiffness per contact point. TacSL
        randomises Isaac Gym's compliance in 150-350; on our scale nominal 250 <-> 5000 N/m, so
        150-350 <-> 3000-7000 N/m.
    ``gel_damping_ratio`` (0.2-1.0): the gel contact's damping (TacSL: 0-1; a ratio of 0 lets the
        grasp ring, so the floor is 0.2). Supported 0.1-1.0: above 1 with a stiff gel (10,000 N/m
        and up) MuJoCo's contact throws the peg out of the grasp.
    ``gel_friction`` (0.7-1.3): friction coefficient of the gel.
    Image augmentation (``cfg.image_augment``, :mod:`embodied.sim2real.image_augment`): colour-
    channel swap per episode, colour jitter, random crop, sensor calibration shift; ranges in
    ``full_augmentation()``.

Success
    ``info["success"]`` (N,) bool: the mean keypoint distance is below 4.5 mm
    (``info["keypoint_dist"]`` holds it, m). With a 0.5 mm clearance that means the peg is in
    the hole, at least 7.5 mm of its 12 mm deep.
    ``info["unstable"]`` (N,) bool: the physics diverged this step (rare; MuJoCo then resets the
    env's state itself), so the episode ends there.

Backends: ``mujoco`` (default), ``pybullet``, ``mujoco_warp`` (``embodied.make(..., backend=)``).
Saving the env state (training checkpoints) needs ``mujoco``.

Speed (MuJoCo, one CPU thread of the 2-core dev machine, random actions, env steps/s):
num_envs 1: 187 with every entry, 304 without ``tactile_image``, 430 with only ``proprio`` and
``privileged``; num_envs 64: 798, 4,861 and 4,959. The images (2 pads x 80 x 60 per env step)
are the cost: leave them out (``obs_terms``) while a privileged teacher trains.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium
import numpy as np
import torch

from embodied.sim.env import BatchedEnv, RandomizedParam, TaskCfg
from embodied.sim.physics.tactile_backend import euler_xyz_to_quat, quat_mul, quat_rotate
from embodied.sim.physics.tactile_rig import TactileRig, sensor_cfg_for
from embodied.sim.physics.tactile_scene import load_scene
from embodied.sim2real._common import derived_seed
from embodied.sim2real.image_augment import ImageAugmentCfg, ImageAugmenter
from embodied.sim2real.randomize import check_ranges
from embodied.tasks.tactile.scene import PegGeometry, pad_centre_z, peg_scene

OBS_TERMS = ("proprio", "tactile_image", "force_field", "privileged")

PROPRIO_LAYOUT: dict[str, tuple[int, int]] = {
    "hand_pos_rel_socket_obs": (0, 3),
    "hand_angles": (3, 6),
    "opening": (6, 7),
    "prev_action": (7, 13),
}
"""Slices (start, stop) of ``obs["proprio"]``."""
PRIVILEGED_LAYOUT: dict[str, tuple[int, int]] = {
    "peg_pos_rel_socket": (0, 3),
    "peg_quat": (3, 7),
    "socket_pos": (7, 10),
    "hand_pos_rel_socket": (10, 13),
    "hand_angles": (13, 16),
    "hand_vel": (16, 22),
    "pad_contact_force": (22, 24),
    "peg_pos_in_hand": (24, 27),
    "socket_obs_error": (27, 30),
    "keypoint_dist": (30, 31),
}
"""Slices (start, stop) of ``obs["privileged"]``."""
PROPRIO_DIM = 13
PRIVILEGED_DIM = 31

PARAM_LIMITS: dict[str, tuple[float, float, float]] = {
    "start_x": (0.0, -0.03, 0.03),
    "start_y": (0.0, -0.03, 0.03),
    "start_z": (0.01, 0.0, 0.05),
    "start_yaw": (0.0, -0.5, 0.5),
    "grasp_rot": (0.0, -0.63, 0.63),
    "grasp_height": (0.0, -0.005, 0.005),
    "grasp_slide": (0.0, -0.008, 0.008),
    "socket_noise_x": (0.0, -0.02, 0.02),
    "socket_noise_y": (0.0, -0.02, 0.02),
    "socket_noise_z": (0.0, -0.01, 0.01),
    "gel_stiffness": (5000.0, 1000.0, 20000.0),
    "gel_damping_ratio": (0.7, 0.1, 1.0),
    "gel_friction": (1.0, 0.3, 2.0),
}
"""name -> (nominal, widest low, widest high) of every randomisable parameter (m, rad, N/m)."""
GEL_PARAMS = {"gel_stiffness": "stiffness", "gel_damping_ratio": "damping_ratio", "gel_friction": "friction"}

HELDOUT_PEGS: dict[str, dict[str, Any]] = {
    "hex": {"peg_shape": "hex", "peg_size": 0.006},
    "round_small": {"peg_shape": "round", "peg_size": 0.0045},
    "round_large": {"peg_shape": "round", "peg_size": 0.0075},
}
"""Pegs to evaluate on and never train on, as config overrides:
``embodied.make("Tactile/PegInsert-v0", **HELDOUT_PEGS["hex"])``. Training pegs: the default round
one (6 mm radius) and ``peg_shape="rect"`` (12 x 16 mm)."""

PEG_DROP = 0.007
"""Nominal peg centre below the pads' centre (m): the peg sticks out 17 mm below the fingertips."""
NUM_KEYPOINTS = 4
SUCCESS_DIST = 0.0045
DROP_DIST = 0.03
"""The peg counts as dropped when its centre is this far (m) from the pads' midpoint."""


@dataclass
class PegDR:
    """Per-reset ranges (low, high) of each randomised parameter; low == high pins it.
    Names and units are those of :data:`PARAM_LIMITS` (see the module docstring)."""

    start_x: tuple[float, float] = (-0.01, 0.01)
    start_y: tuple[float, float] = (-0.01, 0.01)
    start_z: tuple[float, float] = (0.005, 0.02)
    start_yaw: tuple[float, float] = (-0.05, 0.05)
    grasp_rot: tuple[float, float] = (-0.1, 0.1)
    grasp_height: tuple[float, float] = (-0.003, 0.003)
    grasp_slide: tuple[float, float] = (0.0, 0.0)
    socket_noise_x: tuple[float, float] = (-0.005, 0.005)
    socket_noise_y: tuple[float, float] = (-0.005, 0.005)
    socket_noise_z: tuple[float, float] = (-0.002, 0.002)
    gel_stiffness: tuple[float, float] = (3000.0, 7000.0)
    gel_damping_ratio: tuple[float, float] = (0.2, 1.0)
    gel_friction: tuple[float, float] = (0.7, 1.3)


def nominal_dr() -> PegDR:
    """Every parameter pinned at its nominal value (no randomisation)."""
    return PegDR(**{name: (nominal, nominal) for name, (nominal, _, _) in PARAM_LIMITS.items()})


@dataclass
class PegCfg(TaskCfg):
    """Config of the peg tasks (Tactile/PegInsert-v0, Tactile/PegPlace-v0)."""

    peg_shape: Literal["round", "rect", "hex"] = "round"
    """round and rect train; hex is held out for evaluation."""
    peg_size: float = 0.006
    """Half-width across the gripped faces (m): the round peg's radius."""
    peg_size_y: float = 0.008
    """rect: half-width along the pads' width (m)."""
    peg_half_length: float = 0.025
    clearance: float = 0.0005
    """Gap between peg and hole per side (m)."""
    socket_height: float = 0.012
    """Depth of the hole (m)."""
    dr: PegDR = field(default_factory=PegDR)
    image_augment: ImageAugmentCfg = field(default_factory=ImageAugmentCfg)
    """Augmentation of ``tactile_image`` (off; ``full_augmentation()`` gives the documented ranges).
    Its ``keys`` field is the wrapper's; the task augments ``tactile_image`` only."""
    obs_terms: tuple[str, ...] = OBS_TERMS
    """Observation entries to compute; drop the tactile ones when only a privileged teacher trains."""
    image_size: tuple[int, int] = (60, 80)
    """Tactile image (H, W) at policy resolution."""
    taxels: tuple[int, int] = (10, 14)
    """Force-field grid (rows along the pad's length, cols along its width)."""
    pos_action_scale: float = 0.01
    """Largest hand translation target per step (m)."""
    rot_action_scale: float = 0.05
    """Largest hand rotation target per step (rad)."""
    w_keypoint: float = 1.0
    w_success: float = 10.0
    w_action: float = 0.01
    success_dist: float = SUCCESS_DIST
    """Mean keypoint distance (m) below which the peg counts as inserted."""
    terminate_on_success: bool = True
    terminate_on_drop: bool = False
    """End an episode when the peg leaves the hand; off by default (see the module docstring)."""
    sim_threads: int = 1
    """MuJoCo: threads stepping the envs (0: one per core, at most 8); results do not depend on it."""
    noslip_iterations: int = 0
    """MuJoCo: no-slip friction passes (0 keeps the gel depth right; see tactile_mujoco.FRICTION_DAMPING)."""


class PegInsertEnv(BatchedEnv):
    """Batched peg insertion with tactile fingers (see the module docstring)."""

    default_max_episode_steps = 150

    def __init__(self, cfg: PegCfg, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        self.backend = self.backend or "mujoco"
        unknown = [t for t in cfg.obs_terms if t not in OBS_TERMS]
        if unknown or not cfg.obs_terms:
            raise ValueError(
                f"{self.task_id}: obs_terms {list(cfg.obs_terms)} must be a non-empty subset of {OBS_TERMS}"
            )
        self.geometry = PegGeometry(
            shape=cfg.peg_shape,
            size=cfg.peg_size,
            size_y=cfg.peg_size_y,
            half_length=cfg.peg_half_length,
            clearance=cfg.clearance,
            socket_height=cfg.socket_height,
        )
        scene_map = peg_scene(self.geometry)
        scene = load_scene(scene_map)
        rows, cols = cfg.taxels
        # Keep the pad's overall stiffness of the sensor's default 20x25 grid whatever the grid.
        sensor_cfg = sensor_cfg_for(
            scene, rows=rows, cols=cols, kn=20.0 * 500 / (rows * cols), policy_resolution=tuple(cfg.image_size)
        )
        backend_kwargs: dict[str, Any] = {}
        if self.backend == "mujoco":
            backend_kwargs = {"num_threads": cfg.sim_threads, "noslip_iterations": cfg.noslip_iterations}
        self.rig = TactileRig(scene, self.backend, self.num_envs, sensor_cfg, device=self.device, **backend_kwargs)
        self.scene = scene
        self.dt = scene.dt
        self._pad_z = pad_centre_z(scene_map["gripper"])
        g = scene.gripper
        # Fingers squeeze with kp (half the peg's width - depth) = K depth: start at that depth.
        self._finger_kp = g.gains.finger[0]
        dev = self.device
        self.params = {
            name: torch.full((self.num_envs,), nom, device=dev) for name, (nom, _, _) in PARAM_LIMITS.items()
        }
        """Current value of every randomisable parameter per env (name -> (N,))."""
        self._dr_ranges = {k: tuple(v) for k, v in dataclasses.asdict(cfg.dr).items()}
        check_ranges(self._dr_ranges, self.randomizable_params(), self.task_id)
        self._dr_names = sorted(n for n, (lo, hi) in self._dr_ranges.items())
        self._external = {name: torch.zeros(self.num_envs, dtype=torch.bool, device=dev) for name in PARAM_LIMITS}
        """Per parameter, the envs whose value :meth:`set_params` set since their last reset."""
        self.socket_pos = torch.tensor([0.0, 0.0, cfg.socket_height], device=dev)
        self.socket_obs = self.socket_pos.repeat(self.num_envs, 1)
        """(N, 3) the socket position the policy is told (true + this episode's noise)."""
        self.prev_action = torch.zeros(self.num_envs, 6, device=dev)
        z = torch.linspace(-cfg.peg_half_length, cfg.peg_half_length, NUM_KEYPOINTS, device=dev)
        self._kp_local = torch.stack([torch.zeros_like(z), torch.zeros_like(z), z], -1)  # (K, 3)
        self._kp_target = self._kp_local + torch.tensor([0.0, 0.0, cfg.peg_half_length], device=dev)
        self.augmenter = ImageAugmenter(cfg.image_augment, self.num_envs, dev)
        # Its own stream (seeded from the env's), so drawing e.g. random actions from the env's
        # generator never changes the images' augmentation, and vice versa.
        self.aug_generator = torch.Generator(device=dev)
        self.aug_generator.manual_seed(derived_seed(int(self.generator.initial_seed()), "image_augment"))
        self._success = torch.zeros(self.num_envs, dtype=torch.bool, device=dev)
        self._kp_dist = torch.zeros(self.num_envs, device=dev)
        self._unstable = torch.zeros(self.num_envs, dtype=torch.bool, device=dev)
        try:
            self.rig.backend.pad_contact_force()
            self._engine_forces = True
        except NotImplementedError:  # e.g. MuJoCo Warp: use the force field's normal totals instead
            self._engine_forces = False
        h, w = cfg.image_size
        spaces: dict[str, gymnasium.Space] = {}
        if "proprio" in cfg.obs_terms:
            spaces["proprio"] = gymnasium.spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32)
        if "tactile_image" in cfg.obs_terms:
            spaces["tactile_image"] = gymnasium.spaces.Box(0, 255, (2, 3, h, w), np.uint8)
        if "force_field" in cfg.obs_terms:
            spaces["force_field"] = gymnasium.spaces.Box(-np.inf, np.inf, (2, rows, cols, 3), np.float32)
        if "privileged" in cfg.obs_terms:
            spaces["privileged"] = gymnasium.spaces.Box(-np.inf, np.inf, (PRIVILEGED_DIM,), np.float32)
        self._set_spaces(gymnasium.spaces.Dict(spaces), gymnasium.spaces.Box(-1.0, 1.0, (6,), np.float32))
        self._reset_ids(self.all_env_ids)

    # ------------------------------------------------------------------ domain randomisation
    def randomizable_params(self) -> dict[str, RandomizedParam]:
        return {n: RandomizedParam(n, nom, lo, hi) for n, (nom, lo, hi) in PARAM_LIMITS.items()}

    def set_params(self, env_ids: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        """Set parameters of envs ``env_ids`` (name -> (k,)). Values set this way (by the sim-to-real
        DomainRandomization hook, or by hand) win over the task's own draw at the next reset."""
        ids = torch.as_tensor(env_ids, device=self.device).long()
        self._apply_params(ids, values)
        for name in values:
            self._external[name][ids] = True

    def _apply_params(self, ids: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        gel: dict[str, torch.Tensor] = {}
        for name, value in values.items():
            if name not in PARAM_LIMITS:
                raise KeyError(f"{self.task_id}: unknown parameter {name!r}; randomisable: {sorted(PARAM_LIMITS)}")
            v = torch.as_tensor(value, dtype=torch.float32, device=self.device).reshape(len(ids))
            self.params[name][ids] = v
            if name in GEL_PARAMS:
                gel[GEL_PARAMS[name]] = v
        if gel:
            self.rig.backend.set_gel(ids, **gel)

    def _draw_task_dr(self, env_ids: torch.Tensor) -> None:
        """The task's own randomisation (``cfg.dr``), drawn per env in sorted name order, except
        where :meth:`set_params` has set a value since the env's last reset."""
        names = self._dr_names
        u = torch.rand((len(names), len(env_ids)), generator=self.generator, device=self.device)
        for k, name in enumerate(names):
            lo, hi = self._dr_ranges[name]
            keep = ~self._external[name][env_ids]
            if keep.any():
                self._apply_params(env_ids[keep], {name: (lo + u[k] * (hi - lo))[keep]})
            self._external[name][env_ids] = False

    # ------------------------------------------------------------------ BatchedEnv hooks
    def peg_in_hand(self, env_ids: torch.Tensor) -> torch.Tensor:
        """(k, 7) the peg's pose in the hand frame from the grasp parameters of ``env_ids``."""
        p = {n: self.params[n][env_ids] for n in ("grasp_rot", "grasp_height", "grasp_slide")}
        zero = torch.zeros_like(p["grasp_rot"])
        pos = torch.stack([zero, p["grasp_slide"], self._pad_z - PEG_DROP + p["grasp_height"] + zero], -1)
        quat = euler_xyz_to_quat(torch.stack([p["grasp_rot"], zero, zero], -1))
        return torch.cat([pos, quat], -1)

    def _reset_envs(self, env_ids: torch.Tensor) -> None:
        self._draw_task_dr(env_ids)
        c, p = self.cfg, {n: v[env_ids] for n, v in self.params.items()}
        k = len(env_ids)
        local = self.peg_in_hand(env_ids)
        zero = torch.zeros(k, device=self.device)
        # Hand height: the peg's bottom (untilted) start_z above the socket's top.
        hand_z = c.socket_height + p["start_z"] + c.peg_half_length - local[:, 2]
        angles = torch.stack([zero, zero, p["start_yaw"]], -1)
        grip = self.geometry.grip_width
        depth = self._finger_kp * grip / 2 / (self._finger_kp + p["gel_stiffness"])
        hand = torch.cat(
            [torch.stack([p["start_x"], p["start_y"], hand_z], -1), angles, (grip - 2 * depth)[:, None]], -1
        )
        q = euler_xyz_to_quat(angles)
        peg = torch.cat([hand[:, :3] + quat_rotate(q, local[:, :3]), quat_mul(q, local[:, 3:])], -1)
        self.rig.reset(env_ids, hand, peg[:, None])
        noise = torch.stack([p["socket_noise_x"], p["socket_noise_y"], p["socket_noise_z"]], -1)
        self.socket_obs[env_ids] = self.socket_pos + noise
        self.prev_action[env_ids] = 0.0
        self.augmenter.reset(env_ids, self.aug_generator)

    def _apply_action(self, action: torch.Tensor) -> None:
        c = self.cfg
        self.prev_action = action.clone()
        target = self.rig.backend.hand_state().clone()
        target[:, :3] += action[:, :3] * c.pos_action_scale
        target[:, 3:6] += action[:, 3:6] * c.rot_action_scale
        target[:, 6] = 0.0  # keep squeezing
        self.rig.backend.step(target)
        self.augmenter.new_step(self.aug_generator)

    def peg_pose(self) -> torch.Tensor:
        """(N, 7) the peg's body pose (centre, wxyz)."""
        return self.rig.backend.body_pose()[:, 2]

    def keypoint_distance(self) -> torch.Tensor:
        """(N,) mean distance (m) of the peg's axis keypoints from their fully inserted places."""
        peg = self.peg_pose()
        kp = peg[:, None, :3] + quat_rotate(
            peg[:, None, 3:].expand(-1, NUM_KEYPOINTS, 4), self._kp_local.expand(len(peg), -1, -1)
        )
        return (kp - self._kp_target).norm(dim=-1).mean(-1)

    def _observe(self) -> dict[str, torch.Tensor]:
        terms, b = self.cfg.obs_terms, self.rig.backend
        out: dict[str, torch.Tensor] = {}
        hand = b.hand_state()
        forces = self.rig.read(self.dt) if ("force_field" in terms or not self._engine_forces) else None
        if "proprio" in terms:
            out["proprio"] = torch.cat([hand[:, :3] - self.socket_obs, hand[:, 3:7], self.prev_action], -1)
        if "tactile_image" in terms:
            images = self.rig.images("policy").permute(0, 1, 4, 2, 3)
            out["tactile_image"] = self.augmenter(images).contiguous()
        if forces is not None and "force_field" in terms:
            out["force_field"] = forces.clone()
        if "privileged" in terms:
            peg = self.peg_pose()
            vel = b.pad_vel().mean(1)
            contact = b.pad_contact_force() if self._engine_forces else forces[..., 2].sum((-1, -2))  # type: ignore[index]
            hand_q = euler_xyz_to_quat(hand[:, 3:6])
            inv = torch.cat([hand_q[:, :1], -hand_q[:, 1:]], -1)
            in_hand = quat_rotate(inv, peg[:, :3] - hand[:, :3])
            n = self.num_envs
            out["privileged"] = torch.cat(
                [
                    peg[:, :3] - self.socket_pos,
                    peg[:, 3:],
                    self.socket_pos.expand(n, 3),
                    hand[:, :3] - self.socket_pos,
                    hand[:, 3:6],
                    vel,
                    contact,
                    in_hand,
                    self.socket_obs - self.socket_pos,
                    self.keypoint_distance()[:, None],
                ],
                -1,
            )
        return {k: (v.float() if v.is_floating_point() else v) for k, v in out.items()}

    def _reward_and_termination(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        c = self.cfg
        dist = self.keypoint_distance()
        success = dist < c.success_dist
        pads = self.rig.backend.pad_pose()[..., :3].mean(1)
        dropped = (self.peg_pose()[:, :3] - pads).norm(dim=-1) > DROP_DIST
        unstable = self._blown_up()
        self._success, self._kp_dist, self._unstable = success & ~unstable, dist, unstable
        terms = {
            "keypoint": -c.w_keypoint * dist / 0.01,
            "success": c.w_success * self._success.float(),
            "action": -c.w_action * action.square().sum(-1),
        }
        terminated = (success & c.terminate_on_success) | (dropped & c.terminate_on_drop) | unstable
        return terms, terminated

    def _blown_up(self) -> torch.Tensor:
        """(N,) bool: envs whose physics diverged this step. MuJoCo notices (a huge or non-finite
        position, velocity or acceleration; seen rarely while training, at the wrist's roll) and puts the env back
        at the model's default state; the episode is void from there, so it ends (terminated) and
        ``info["unstable"]`` flags it. Other engines: a non-finite peg pose."""
        bad = ~torch.isfinite(self.peg_pose()).all(-1)
        datas = getattr(getattr(self.rig.backend, "sim", None), "datas", None)
        if self.backend == "mujoco" and datas is not None:
            import mujoco

            kinds = [
                mujoco.mjtWarning.mjWARN_BADQACC,
                mujoco.mjtWarning.mjWARN_BADQVEL,
                mujoco.mjtWarning.mjWARN_BADQPOS,
            ]
            flags = []
            for data in datas:
                flags.append(any(data.warning[k].number > 0 for k in kinds))
                for k in kinds:
                    data.warning[k].number = 0
            bad |= torch.tensor(flags, device=self.device)
        return bad

    def reset(
        self,
        *,
        seed: int | None = None,
        options: dict[str, Any] | None = None,
        env_ids: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """As :meth:`BatchedEnv.reset`; ``seed`` also reseeds the image augmentation's stream."""
        if seed is not None:
            self.aug_generator.manual_seed(derived_seed(seed, "image_augment"))
        return super().reset(seed=seed, options=options, env_ids=env_ids)  # type: ignore[return-value]

    def step(
        self, actions: torch.Tensor | np.ndarray
    ) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """As :meth:`BatchedEnv.step`, plus ``info["success"]``, ``info["keypoint_dist"]`` (of the
        state the step ended in, before any autoreset) and ``info["unstable"]`` (see :meth:`_blown_up`)."""
        obs, reward, terminated, truncated, info = super().step(actions)
        info["success"] = self._success.clone()
        info["keypoint_dist"] = self._kp_dist.clone()
        info["unstable"] = self._unstable.clone()
        return obs, reward, terminated, truncated, info

    # ------------------------------------------------------------------ checkpoints and rendering
    def _sim_state(self) -> dict[str, Any]:
        b = self.rig.backend
        if self.backend != "mujoco":
            raise NotImplementedError(f"{self.task_id}: saving the simulator state needs the mujoco backend")
        return {
            "physics": {k: torch.from_numpy(v) for k, v in b.sim.get_state().items()},  # type: ignore[attr-defined]
            "params": {k: v.clone() for k, v in self.params.items()},
            "external": {k: v.clone() for k, v in self._external.items()},
            "socket_obs": self.socket_obs.clone(),
            "prev_action": self.prev_action.clone(),
            "augment": self.augmenter.state_dict(),
            "aug_generator": self.aug_generator.get_state(),
        }

    def _load_sim_state(self, state: dict[str, Any]) -> None:
        b = self.rig.backend
        if self.backend != "mujoco":
            raise NotImplementedError(f"{self.task_id}: loading a simulator state needs the mujoco backend")
        self._apply_params(self.all_env_ids, {k: torch.as_tensor(v) for k, v in state["params"].items()})
        self._external = {k: torch.as_tensor(v).clone().to(self.device) for k, v in state["external"].items()}
        b.sim.set_state({k: torch.as_tensor(v).numpy() for k, v in state["physics"].items()})  # type: ignore[attr-defined]
        for i in range(self.num_envs):
            b.sim._gather(i)  # type: ignore[attr-defined]  # refresh the readouts of the restored state
        b._frames = None
        self.socket_obs = torch.as_tensor(state["socket_obs"]).clone().to(self.device)
        self.prev_action = torch.as_tensor(state["prev_action"]).clone().to(self.device)
        self.augmenter.load_state_dict(state["augment"])
        self.aug_generator.set_state(state["aug_generator"])

    def _render_env(self, env_id: int, width: int, height: int) -> np.ndarray:
        b = self.rig.backend
        if self.backend == "mujoco":
            camera = {"lookat": [0.0, 0.0, 0.035], "distance": 0.2, "elevation": -20.0, "azimuth": 60.0}
            return b.sim.render(env_id, width, height, camera=camera)  # type: ignore[attr-defined]
        # Other engines: the two tactile images side by side, scaled to the frame.
        images = self.rig.images("policy")[env_id].permute(0, 3, 1, 2).float()  # (2, 3, H, W)
        frame = torch.cat(list(images), -1)[None]
        frame = torch.nn.functional.interpolate(frame, size=(height, width), mode="nearest")[0]
        return frame.permute(1, 2, 0).round().to(torch.uint8).cpu().numpy()

    def close(self, **kwargs: Any) -> None:
        self.rig.close()
