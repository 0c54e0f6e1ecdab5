"""The tactile scene in Isaac Gym (PhysX), when ``isaacgym`` imports; written against ``isaacgym-stubs``.

Isaac Gym is not on PyPI and has never been run by this suite's CI: this binding is typed
against the ``isaacgym-stubs`` package (it passed mypy against those stubs once, by hand, with
the stubs' own syntax errors patched and ``gymtorch``'s two functions stubbed) and the tests
check only the message it gives when Isaac Gym is absent. It loads the same generated URDF as PyBullet (:func:`.tactile_pybullet.write_urdfs`),
drives the eight gripper joints with PhysX's position drives (the scene's gains; the hand asset
has gravity disabled, PhysX's equivalent of gravity compensation) and reads the rigid-body state
tensor through ``gymtorch`` (on the GPU pipeline it stays on the device).

Limits, honestly stated: public Isaac Gym has no calibrated compliant contact (TacSL's build
with it is not public), so the pads get ``RigidShapeProperties.compliance = 1 / gel.stiffness``
and PhysX's contact offsets; gel penetration will not match the MuJoCo and PyBullet backends
quantitatively. Rigid-body velocities are PhysX's (of the body frame for the gripper links,
whose centre of mass is at the link origin).

Isaac Gym must be imported before torch in a program (its own rule); construct this backend
from a script that did ``import isaacgym`` first.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

import torch

from embodied.sim.physics.tactile_backend import TactileBackend
from embodied.sim.physics.tactile_pybullet import write_urdfs
from embodied.sim.physics.tactile_scene import JOINT_NAMES, TactileScene


def isaacgym_available() -> bool:
    """Whether the ``isaacgym`` package can be imported here."""
    return importlib.util.find_spec("isaacgym") is not None


class IsaacGymTactileBackend(TactileBackend):
    """The scene in Isaac Gym: one PhysX sim with ``num_envs`` envs, position-driven gripper."""

    name = "isaacgym"

    def __init__(self, scene: TactileScene | str | Path, num_envs: int, device: str | torch.device = "cuda:0") -> None:
        if not isaacgym_available():
            from embodied.sim.physics.tactile_rig import available_backends

            raise ModuleNotFoundError(
                "the 'isaacgym' tactile backend needs Isaac Gym, which is not installed (it is not on PyPI: "
                "install NVIDIA's Isaac Gym Preview 4 into this environment, then `import isaacgym` before torch); "
                f"available tactile backends here: {', '.join(available_backends())}"
            )
        super().__init__(scene, num_envs, device)
        from isaacgym import gymapi, gymtorch  # type: ignore[import-not-found]

        self.gymapi, self.gymtorch = gymapi, gymtorch
        s, g = self.scene, self.scene.gripper
        gym = gymapi.acquire_gym()
        self.gym = gym
        gpu = self.device.type == "cuda"
        params = gymapi.SimParams()
        params.dt = s.timestep
        params.substeps = 1
        params.up_axis = gymapi.UP_AXIS_Z
        params.gravity = gymapi.Vec3(*s.gravity)
        params.use_gpu_pipeline = gpu
        params.physx.use_gpu = gpu
        params.physx.solver_type = 1
        params.physx.num_position_iterations = 16
        params.physx.num_velocity_iterations = 1
        params.physx.contact_offset = 0.002
        params.physx.rest_offset = 0.0
        index = (self.device.index or 0) if gpu else 0
        self.sim: Any = gym.create_sim(index, -1, gymapi.SIM_PHYSX, params)
        if self.sim is None:
            raise RuntimeError("Isaac Gym could not create a PhysX sim (gym.create_sim returned None)")
        if s.floor:
            plane = gymapi.PlaneParams()
            plane.normal = gymapi.Vec3(0.0, 0.0, 1.0)
            gym.add_ground(self.sim, plane)
        with tempfile.TemporaryDirectory(prefix="tactile_urdf_") as tmp:
            paths = write_urdfs(s, tmp)
            hand_opts = gymapi.AssetOptions()
            hand_opts.fix_base_link = True
            hand_opts.disable_gravity = True
            hand_opts.collapse_fixed_joints = False  # the pads stay their own bodies (own shape properties)
            hand_opts.default_dof_drive_mode = int(gymapi.DOF_MODE_POS)
            hand_opts.linear_damping = hand_opts.angular_damping = 0.0
            hand_asset = gym.load_asset(self.sim, tmp, paths["gripper"].name, hand_opts)
            obj_assets = []
            for obj in s.objects:
                opts = gymapi.AssetOptions()
                opts.fix_base_link = obj.fixed
                opts.linear_damping = opts.angular_damping = 0.0
                obj_assets.append(gym.load_asset(self.sim, tmp, paths[obj.name].name, opts))
        pad_bodies = [gym.find_asset_rigid_body_index(hand_asset, n) for n in ("pad_left", "pad_right")]
        shape_ranges = gym.get_asset_rigid_body_shape_indices(hand_asset)
        pad_shapes = {shape_ranges[b].start + k for b in pad_bodies for k in range(shape_ranges[b].count)}
        kp = [g.gains.position[0]] * 3 + [g.gains.rotation[0]] * 3 + [g.gains.finger[0]] * 2
        kd = [g.gains.position[1]] * 3 + [g.gains.rotation[1]] * 3 + [g.gains.finger[1]] * 2
        spacing = 0.5
        lower, upper = gymapi.Vec3(-spacing, -spacing, 0.0), gymapi.Vec3(spacing, spacing, spacing)
        per_row = max(1, int(num_envs**0.5))
        self.envs, hand_actors, obj_actors = [], [], []
        self._hand_handles: list[int] = []
        self._pad_shapes = sorted(pad_shapes)
        body_ids: list[list[int]] = []
        for i in range(num_envs):
            env = gym.create_env(self.sim, lower, upper, per_row)
            hand = gym.create_actor(env, hand_asset, gymapi.Transform(), "gripper", i, 0)
            self._hand_handles.append(hand)
            dof = gym.get_actor_dof_properties(env, hand)
            dof["driveMode"][:] = int(gymapi.DOF_MODE_POS)
            dof["stiffness"][:] = kp
            dof["damping"][:] = kd
            dof["effort"][6:] = g.finger_force_limit
            gym.set_actor_dof_properties(env, hand, dof)
            shape_props = gym.get_actor_rigid_shape_properties(env, hand)
            for k, prop in enumerate(shape_props):
                if k in pad_shapes:
                    prop.friction = g.gel.friction
                    prop.torsion_friction = g.gel.torsional_friction
                    prop.compliance = 1.0 / g.gel.stiffness
            gym.set_actor_rigid_shape_properties(env, hand, shape_props)
            objs = []
            for obj, asset in zip(s.objects, obj_assets, strict=True):
                pose = gymapi.Transform(
                    gymapi.Vec3(*obj.pos), gymapi.Quat(obj.quat[1], obj.quat[2], obj.quat[3], obj.quat[0])
                )
                actor = gym.create_actor(env, asset, pose, obj.name, i, 0)
                props = gym.get_actor_rigid_shape_properties(env, actor)
                for prop in props:
                    prop.friction = obj.friction
                gym.set_actor_rigid_shape_properties(env, actor, props)
                objs.append(actor)
            dom = gymapi.DOMAIN_SIM
            body_ids.append(
                [gym.find_actor_rigid_body_index(env, hand, n, dom) for n in ("finger_left", "finger_right")]
                + [gym.find_actor_rigid_body_index(env, a, o.name, dom) for a, o in zip(objs, s.objects, strict=True)]
            )
            hand_actors.append(gym.get_actor_index(env, hand, dom))
            obj_actors.append([gym.get_actor_index(env, a, dom) for a in objs])
            self.envs.append(env)
        gym.prepare_sim(self.sim)
        dev = self.device
        self._root = gymtorch.wrap_tensor(gym.acquire_actor_root_state_tensor(self.sim))  # (actors, 13)
        self._dof = gymtorch.wrap_tensor(gym.acquire_dof_state_tensor(self.sim)).view(num_envs, len(JOINT_NAMES), 2)
        self._bodies = gymtorch.wrap_tensor(gym.acquire_rigid_body_state_tensor(self.sim))  # (bodies, 13)
        self._body_ids = torch.tensor(body_ids, device=dev)
        self._hand_actors = torch.tensor(hand_actors, dtype=torch.int32, device=dev)
        self._obj_actors = torch.tensor(obj_actors, dtype=torch.long, device=dev).view(num_envs, len(s.objects))
        self._targets = torch.zeros(num_envs, len(JOINT_NAMES), device=dev)
        self.reset()

    def _refresh(self) -> None:
        self.gym.refresh_actor_root_state_tensor(self.sim)
        self.gym.refresh_dof_state_tensor(self.sim)
        self.gym.refresh_rigid_body_state_tensor(self.sim)

    def _step_targets(self, targets: torch.Tensor) -> None:
        self._targets.copy_(targets)
        self.gym.set_dof_position_target_tensor(self.sim, self.gymtorch.unwrap_tensor(self._targets))
        for _ in range(self.scene.substeps):
            self.gym.simulate(self.sim)
            self.gym.fetch_results(self.sim, True)
        self._refresh()

    def _reset_envs(self, env_ids: torch.Tensor, joints: torch.Tensor, objects: torch.Tensor) -> None:
        unwrap = self.gymtorch.unwrap_tensor
        self._dof[env_ids, :, 0] = joints
        self._dof[env_ids, :, 1] = 0.0
        self._targets[env_ids] = joints
        hands = self._hand_actors[env_ids].contiguous()
        self.gym.set_dof_state_tensor_indexed(self.sim, unwrap(self._dof), unwrap(hands), len(hands))
        self.gym.set_dof_position_target_tensor(self.sim, unwrap(self._targets))
        if self.free_objects:
            actors = self._obj_actors[env_ids][:, self.free_objects]
            root = self._root[actors]
            root[..., :3] = objects[..., :3]
            root[..., 3:7] = objects[..., [4, 5, 6, 3]]  # PhysX quaternions are xyzw
            root[..., 7:] = 0.0
            self._root[actors] = root
            ids = actors.flatten().to(torch.int32).contiguous()
            self.gym.set_actor_root_state_tensor_indexed(self.sim, unwrap(self._root), unwrap(ids), len(ids))
        self._refresh()

    def _set_gel(self, env_ids: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        # PhysX has no per-pair damping here: stiffness goes to the pads' compliance, friction as is.
        for j, i in enumerate(env_ids.tolist()):
            env, hand = self.envs[i], self._hand_handles[i]
            props = self.gym.get_actor_rigid_shape_properties(env, hand)
            for k in self._pad_shapes:
                props[k].compliance = 1.0 / float(params["stiffness"][j])
                props[k].friction = float(params["friction"][j])
            self.gym.set_actor_rigid_shape_properties(env, hand, props)

    def _body_states(self) -> tuple[torch.Tensor, torch.Tensor]:
        b = self._bodies[self._body_ids]  # (N, B, 13): pos, quat xyzw, linear, angular
        pose = torch.cat([b[..., :3], b[..., 6:7], b[..., 3:6]], -1)
        return pose.float(), b[..., 7:13].float()

    def joint_pos(self) -> torch.Tensor:
        return self._dof[..., 0].float().clone()

    def close(self) -> None:
        sim: Any = getattr(self, "sim", None)
        if sim is not None:
            self.gym.destroy_sim(sim)
            self.sim = None
