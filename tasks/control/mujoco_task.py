"""The shared base of the MuJoCo control tasks: Gymnasium's v5 models, stepped as a batch.

A task subclass names the bodies it reads, the physical parameters it lets domain
randomisation change and its camera, and implements ``_observe`` and
``_reward_and_termination`` in torch over the batch (``self.qpos``, ``self.qvel``,
``self.xpos``). Reset noise comes from ``self.generator`` only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import gymnasium
import numpy as np
import torch

from embodied.sim.env import BatchedEnv, RandomizedParam, TaskCfg
from embodied.sim.physics.mujoco_batch import MujocoBatch, default_num_threads

GYMNASIUM_ASSETS = Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets"
"""Gymnasium's MuJoCo models; the tasks load them from here so the physics is identical."""


LOCOMOTION_PARAM_RANGES: dict[str, tuple[float, float]] = {
    "friction_scale": (0.5, 1.5),
    "mass_scale": (0.5, 1.5),
    "damping_scale": (0.5, 2.0),
    "actuator_gain_scale": (0.75, 1.25),
}
"""The randomisable parameters of the legged tasks (Hopper, HalfCheetah): ground contact matters."""


class MujocoTaskCfg(Protocol):
    """The config fields every MuJoCo task has (each task's config declares them itself)."""

    xml_file: str
    frame_skip: int
    sim_threads: int


def model_path(xml_file: str) -> str:
    """``xml_file`` if it is a path (absolute, or starting with ``.`` or ``~``), else Gymnasium's model of that name."""
    if xml_file.startswith(("/", ".", "~")):
        path = Path(os.path.expanduser(xml_file))
    else:
        path = GYMNASIUM_ASSETS / xml_file
    if not path.is_file():
        raise FileNotFoundError(f"MuJoCo model {xml_file!r} not found (looked at {path})")
    return str(path)


class MujocoTask(BatchedEnv):
    """A batched MuJoCo task with Gymnasium ``MujocoEnv``'s reset and step semantics."""

    body_names: tuple[str, ...] = ()
    """Bodies whose world positions the task reads (``self.xpos[:, k]`` is body ``k``)."""
    param_ranges: dict[str, tuple[float, float]] = {}
    """Per-env parameter multipliers domain randomisation may draw from (name -> widest range)."""
    """Randomisable parameters (keys of ``mujoco_batch.PARAM_SETTERS``, nominal 1.0) and their widest range."""
    camera: dict[str, Any] = {}
    """Render camera settings (see ``MujocoBatch.render``)."""

    def __init__(self, cfg: TaskCfg, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        c: MujocoTaskCfg = cfg  # type: ignore[assignment]
        threads = c.sim_threads if c.sim_threads > 0 else default_num_threads()
        self.sim = MujocoBatch(model_path(c.xml_file), self.num_envs, c.frame_skip, self.body_names, threads)
        model = self.sim.model
        self.dt = model.opt.timestep * c.frame_skip
        """Seconds of simulated time per ``step``."""
        self.init_qpos = torch.as_tensor(self.sim.init_qpos, device=self.device)
        self.init_qvel = torch.as_tensor(self.sim.init_qvel, device=self.device)
        # CPU tensors sharing memory with the simulator's gathered arrays (updated in place).
        self._state_vector = torch.from_numpy(self.sim.state_vector)
        self._qpos = torch.from_numpy(self.sim.qpos)
        self._qvel = torch.from_numpy(self.sim.qvel)
        self._xpos = torch.from_numpy(self.sim.xpos)
        self.qpos_before = self.qpos.clone()
        """qpos at the start of the last step (for velocities by finite difference, as Gymnasium's rewards)."""
        low, high = model.actuator_ctrlrange.astype(np.float32).T
        obs_dim = self._observe().shape[-1]
        self._set_spaces(
            gymnasium.spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32),
            gymnasium.spaces.Box(low, high, dtype=np.float32),
        )

    # ------------------------------------------------------------------ state the tasks read
    @property
    def state_vector(self) -> torch.Tensor:
        """qpos and qvel side by side (num_envs, nq + nv), float64. On CPU a live view: clone it to keep it."""
        return self._state_vector.to(self.device)

    @property
    def qpos(self) -> torch.Tensor:
        """Joint positions (num_envs, nq), float64. On CPU a live view: clone it to keep it."""
        return self._qpos.to(self.device)

    @property
    def qvel(self) -> torch.Tensor:
        """Joint velocities (num_envs, nv), float64. On CPU a live view: clone it to keep it."""
        return self._qvel.to(self.device)

    @property
    def xpos(self) -> torch.Tensor:
        """World positions of ``body_names`` (num_envs, len(body_names), 3), float64."""
        return self._xpos.to(self.device)

    def _uniform(self, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
        """Uniform float64 noise in [low, high) from ``self.generator``."""
        u = torch.rand(shape, generator=self.generator, dtype=torch.float64, device=self.device)
        return low + (high - low) * u

    # ------------------------------------------------------------------ BatchedEnv hooks
    def _initial_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial (qpos, qvel) of ``n`` envs: the model's, plus uniform noise of ``cfg.reset_noise_scale``."""
        scale = self.cfg.reset_noise_scale  # type: ignore[attr-defined]
        qpos = self.init_qpos + self._uniform((n, self.sim.model.nq), -scale, scale)
        qvel = self.init_qvel + self._uniform((n, self.sim.model.nv), -scale, scale)
        return qpos, qvel

    def _reset_envs(self, env_ids: torch.Tensor) -> None:
        qpos, qvel = self._initial_state(len(env_ids))
        self.set_joint_state(env_ids, qpos, qvel)

    def set_joint_state(self, env_ids: torch.Tensor, qpos: torch.Tensor | np.ndarray, qvel: torch.Tensor | np.ndarray) -> None:
        """Put envs ``env_ids`` at ``qpos``/``qvel`` exactly as Gymnasium's reset does (``mj_resetData``,
        set qpos and qvel, ``mj_forward``); episode counters are left alone."""
        ids = torch.as_tensor(env_ids).cpu().numpy()
        qpos = torch.as_tensor(qpos, dtype=torch.float64).cpu().numpy().reshape(len(ids), -1)
        qvel = torch.as_tensor(qvel, dtype=torch.float64).cpu().numpy().reshape(len(ids), -1)
        self.sim.reset(ids, qpos, qvel)

    def _apply_action(self, action: torch.Tensor) -> None:
        self.qpos_before.copy_(self.qpos)
        self.sim.step(action.detach().cpu().numpy())

    def _ctrl_square(self, action: torch.Tensor) -> torch.Tensor:
        """Sum of squared actions per env (float32, as Gymnasium computes it from float32 actions)."""
        return action.square().sum(-1)

    # ------------------------------------------------------------------ domain randomisation
    def randomizable_params(self) -> dict[str, RandomizedParam]:
        return {name: RandomizedParam(name, 1.0, low, high) for name, (low, high) in self.param_ranges.items()}

    def set_params(self, env_ids: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        ids = torch.as_tensor(env_ids).cpu().numpy()
        for name, value in values.items():
            if name not in self.param_ranges:
                raise KeyError(f"{self.task_id}: unknown parameter {name!r}; randomisable: {sorted(self.param_ranges)}")
            self.sim.set_scales(name, ids, torch.as_tensor(value, dtype=torch.float64).cpu().numpy().reshape(len(ids)))

    # ------------------------------------------------------------------ checkpoints and rendering
    def _sim_state(self) -> dict[str, Any]:
        return {name: torch.from_numpy(value) for name, value in self.sim.get_state().items()}

    def _load_sim_state(self, state: dict[str, Any]) -> None:
        self.sim.set_state({name: torch.as_tensor(value).cpu().numpy() for name, value in state.items()})

    def _render_env(self, env_id: int, width: int, height: int) -> np.ndarray:
        return self.sim.render(env_id, width, height, camera=self.camera)

    def close(self, **kwargs: Any) -> None:
        self.sim.close()
