"""The tactile scene in MuJoCo Warp: all envs as ``nworld`` worlds of one Warp data, on CPU or CUDA.

The model is the same calibrated MJCF as the MuJoCo backend (:func:`.tactile_mujoco.scene_mjcf`).
Body poses and velocities are read as torch views of MuJoCo Warp's own arrays (``wp.to_torch``,
zero-copy: ``xpos``, ``xquat``, ``cvel``, ``subtree_com``), the pad and object frames are computed
from them by torch on the same device, and the tactile sensor takes those tensors zero-copy too
(``wp.from_torch``): physics, frames and tactile kernels never leave the device.

On CUDA the substeps of one :meth:`step` run inside a captured CUDA graph (captured on the second
call, once every kernel is compiled). On CPU, MuJoCo Warp works but is slower than plain MuJoCo
and compiles its kernels for 30-45 s the first time (Warp's kernel cache makes later runs fast);
it needs the optional extra ``pip install 'embodied-suite[gpu]'`` (``mujoco-warp``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import torch

from embodied.sim.physics.tactile_backend import TactileBackend
from embodied.sim.physics.tactile_mujoco import FINGER_NAMES, pair_object_friction, scene_mjcf
from embodied.sim.physics.tactile_scene import TactileScene

INSTALL_HINT = "MuJoCo Warp is not installed: pip install 'embodied-suite[gpu]' (or pip install mujoco-warp)"


def _wp_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return "cpu"


class MjwarpTactileBackend(TactileBackend):
    """The scene in MuJoCo Warp, ``num_envs`` worlds stepped by one call per physics step."""

    name = "mujoco_warp"

    def __init__(
        self,
        scene: TactileScene | str | Path,
        num_envs: int,
        device: str | torch.device = "cpu",
        use_graph: bool = True,
        noslip_iterations: int = 0,
    ) -> None:
        super().__init__(scene, num_envs, device)
        try:
            import mujoco_warp as mjw
            import warp as wp
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(f"{INSTALL_HINT} ({err})") from None
        wp.config.quiet = True
        if hasattr(wp, "LOG_WARNING"):  # Warp 1.19 reads log_level: keep compile messages out of logs
            wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)
        self.wp, self.mjw = wp, mjw
        self.wp_device = _wp_device(self.device)
        self.mjcf = scene_mjcf(self.scene, noslip_iterations=noslip_iterations)
        self.mjm = mujoco.MjModel.from_xml_string(self.mjcf)
        with wp.ScopedDevice(self.wp_device):
            self.m = mjw.put_model(self.mjm)
            self.d = mjw.make_data(self.mjm, nworld=num_envs, nconmax=32, njmax=256)
        d = self.d
        # Zero-copy torch views of MuJoCo Warp's arrays (shapes (nworld, ...)).
        self._ctrl = wp.to_torch(d.ctrl)
        self._qpos = wp.to_torch(d.qpos)
        self._qvel = wp.to_torch(d.qvel)
        self._xpos = wp.to_torch(d.xpos)
        self._xquat = wp.to_torch(d.xquat)
        self._cvel = wp.to_torch(d.cvel)
        self._subtree_com = wp.to_torch(d.subtree_com)
        names = list(FINGER_NAMES) + self.object_names
        ids = [self.mjm.body(n).id for n in names]
        self._body_ids = torch.tensor(ids, device=self.device)
        self._root_ids = torch.tensor(self.mjm.body_rootid[ids], device=self.device)
        self._free_qpos = [
            int(self.mjm.jnt_qposadr[self.mjm.joint(self.object_names[i]).id]) for i in self.free_objects
        ]
        self._qpos0 = torch.as_tensor(self.mjm.qpos0, dtype=torch.float32, device=self.device)
        self._pair_k0 = torch.as_tensor(-self.mjm.pair_solref[:, 0], dtype=torch.float32, device=self.device)
        self._pair_mu_obj = torch.as_tensor(pair_object_friction(self.scene), dtype=torch.float32, device=self.device)
        self._pair_views: tuple[torch.Tensor, torch.Tensor] | None = None
        self._use_graph = use_graph and self.device.type == "cuda"
        self._graph: Any = None
        self._steps = 0
        self.reset()

    def _stream(self) -> Any:
        """Run Warp on torch's current CUDA stream so torch reads see finished results."""
        wp = self.wp
        if self.device.type == "cuda":
            return wp.ScopedStream(wp.stream_from_torch(torch.cuda.current_stream(self.device)))
        return wp.ScopedDevice(self.wp_device)

    def _refresh(self) -> None:
        # Derived quantities only (the next step recomputes them): readouts of the post-step state.
        self.mjw.kinematics(self.m, self.d)
        self.mjw.com_pos(self.m, self.d)
        self.mjw.com_vel(self.m, self.d)

    def _substeps(self) -> None:
        for _ in range(self.scene.substeps):
            self.mjw.step(self.m, self.d)
        self._refresh()

    def _step_targets(self, targets: torch.Tensor) -> None:
        self._ctrl.copy_(targets.to(self._ctrl.dtype))
        wp = self.wp
        with self._stream():
            if self._graph is not None:
                wp.capture_launch(self._graph)
            elif self._use_graph and self._steps >= 1:  # kernels compiled by the first call: capture
                with wp.ScopedCapture(device=self.wp_device, stream=wp.get_stream(self.wp_device)) as capture:
                    self._substeps()
                self._graph = capture.graph
                wp.capture_launch(self._graph)
            else:
                self._substeps()
        self._steps += 1

    def _reset_envs(self, env_ids: torch.Tensor, joints: torch.Tensor, objects: torch.Tensor) -> None:
        wp = self.wp
        mask = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        mask[env_ids] = True
        with self._stream():
            self.mjw.reset_data(self.m, self.d, reset=wp.from_torch(mask))
        qpos = self._qpos0.expand(len(env_ids), -1).clone()
        qpos[:, :8] = joints
        for f, adr in enumerate(self._free_qpos):
            qpos[:, adr : adr + 7] = objects[:, f]
        self._qpos[env_ids] = qpos.to(self._qpos.dtype)
        self._qvel[env_ids] = 0.0
        with self._stream():
            self._refresh()

    def _set_gel(self, env_ids: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        wp, m = self.wp, self.m
        if self._pair_views is None:
            # MuJoCo Warp indexes model arrays with worldid % shape[0]: give the pad pairs one row
            # per world, then write them in place (zero-copy torch views).
            for name in ("pair_solref", "pair_friction"):
                rows = wp.to_torch(getattr(m, name))[:1].repeat(self.num_envs, 1, 1)
                setattr(m, name, wp.from_torch(rows.contiguous(), dtype=getattr(m, name).dtype))
            self._pair_views = (wp.to_torch(m.pair_solref), wp.to_torch(m.pair_friction))
            self._graph = None  # the captured graph points at the old arrays
        solref, friction = self._pair_views
        gel = self.scene.gripper.gel
        k = self._pair_k0[None] * (params["stiffness"][:, None] / gel.stiffness)
        solref[env_ids, :, 0] = (-k).to(solref.dtype)
        solref[env_ids, :, 1] = (-2.0 * params["damping_ratio"][:, None] * k.sqrt()).to(solref.dtype)
        mu = params["friction"][:, None] * self._pair_mu_obj[None]
        friction[env_ids, :, 0] = mu.to(friction.dtype)
        friction[env_ids, :, 1] = mu.to(friction.dtype)

    def _body_states(self) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self._body_ids
        xpos = self._xpos[:, ids]
        cvel = self._cvel[:, ids]  # [angular, linear at the subtree centre of mass], world axes
        r = xpos - self._subtree_com[:, self._root_ids]
        lin = cvel[..., 3:] + torch.linalg.cross(cvel[..., :3], r, dim=-1)
        pose = torch.cat([xpos, self._xquat[:, ids]], -1).float()
        return pose, torch.cat([lin, cvel[..., :3]], -1).float()

    def joint_pos(self) -> torch.Tensor:
        return self._qpos[:, :8].float().clone()

    def host_arrays(self) -> dict[str, np.ndarray]:
        """Copies of qpos and qvel on the host (for debugging and checkpoints)."""
        return {"qpos": self._qpos.cpu().numpy(), "qvel": self._qvel.cpu().numpy()}
