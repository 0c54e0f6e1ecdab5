"""Many MuJoCo simulations of one model, stepped together, with their state gathered into arrays.

:class:`MujocoBatch` holds one ``MjModel`` and ``num_envs`` ``MjData``. Each step sets every
env's ``ctrl``, calls ``mj_step(model, data, nstep=frame_skip)`` and copies ``qpos``, ``qvel``
(and the positions of a few named bodies) into batched float64 arrays, so tasks compute
observations and rewards vectorised. ``mj_step`` releases the GIL, so with ``num_threads > 1``
contiguous slices of envs step in parallel threads; every env only touches its own data, so
the results do not depend on the thread count.

Envs share the model until domain randomisation changes one of its physical parameters; that
env then gets its own copy. Offscreen rendering needs an OpenGL backend: on a machine without
a display this module selects EGL (``MUJOCO_GL=egl``) unless ``MUJOCO_GL`` is already set, or
none at all where libEGL is not installed (physics runs; ``render`` says what to install).
"""

from __future__ import annotations

import copy
import ctypes.util
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def headless_gl_backend(find_library: Callable[[str], str | None] = ctypes.util.find_library) -> str:
    """MUJOCO_GL for a Linux machine without a display: EGL, or "disable" where libEGL is missing.

    ``import mujoco`` with MUJOCO_GL=egl and no libEGL fails inside PyOpenGL (an AttributeError
    that MuJoCo does not catch), which would stop physics that needs no OpenGL at all."""
    return "egl" if find_library("EGL") else "disable"


# MuJoCo picks its OpenGL backend when it is first imported; without a display, GLFW cannot work.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
    os.environ["MUJOCO_GL"] = headless_gl_backend()

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

INTEGRATION_STATE = int(mujoco.mjtState.mjSTATE_INTEGRATION)
"""Everything ``mj_step`` reads (qpos, qvel, act, warm start, ctrl, applied forces, time, ...)."""

RENDER_HELP = (
    "MuJoCo offscreen rendering needs an OpenGL backend. On a headless Linux machine set "
    "MUJOCO_GL=egl before mujoco is first imported (importing embodied.sim.physics.mujoco_batch "
    "first does it) and install the Debian packages libegl1 libegl-mesa0 libgl1-mesa-dri "
    "(or use MUJOCO_GL=osmesa with libosmesa6)."
)


def _scale_gain(model: mujoco.MjModel, base: mujoco.MjModel, scale: float) -> None:
    model.actuator_gainprm[:, 0] = base.actuator_gainprm[:, 0] * scale


def _scale_mass(model: mujoco.MjModel, base: mujoco.MjModel, scale: float) -> None:
    model.body_mass[:] = base.body_mass * scale
    model.body_inertia[:] = base.body_inertia * scale


def _scale_friction(model: mujoco.MjModel, base: mujoco.MjModel, scale: float) -> None:
    model.geom_friction[:] = base.geom_friction * scale


def _scale_damping(model: mujoco.MjModel, base: mujoco.MjModel, scale: float) -> None:
    model.dof_damping[:] = base.dof_damping * scale


PARAM_SETTERS = {
    "actuator_gain_scale": _scale_gain,
    "mass_scale": _scale_mass,
    "friction_scale": _scale_friction,
    "damping_scale": _scale_damping,
}
"""Per-env model parameters, each a multiplier (1.0 = the model as loaded) of some model fields."""


def default_num_threads() -> int:
    """One thread per CPU core this process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


class MujocoBatch:
    """``num_envs`` MuJoCo simulations of one model, stepped and read as a batch."""

    min_envs_per_thread = 4
    """Below this many envs per thread, stepping in threads costs more than it saves."""

    def __init__(
        self,
        model_path: str,
        num_envs: int,
        frame_skip: int,
        body_names: Sequence[str] = (),
        num_threads: int = 1,
    ) -> None:
        self.model = mujoco.MjModel.from_xml_path(model_path)
        self.num_envs = int(num_envs)
        self.frame_skip = int(frame_skip)
        self.models: list[mujoco.MjModel] = [self.model] * self.num_envs
        self.datas = [mujoco.MjData(self.model) for _ in range(self.num_envs)]
        self.init_qpos = self.datas[0].qpos.copy()
        self.init_qvel = self.datas[0].qvel.copy()
        m, n = self.model, self.num_envs
        self.body_ids = np.array([m.body(name).id for name in body_names], dtype=np.int64)
        self.ctrl = np.zeros((n, m.nu))
        self.state_vector = np.zeros((n, m.nq + m.nv))
        """qpos and qvel side by side, as Gymnasium's ``state_vector()``; ``qpos`` and ``qvel`` are views of it."""
        self.qpos = self.state_vector[:, : m.nq]
        self.qvel = self.state_vector[:, m.nq :]
        self.xpos = np.zeros((n, len(self.body_ids), 3))
        """World positions of ``body_names``, as MuJoCo last computed them (in the last substep)."""
        self.scales = {name: np.ones(n) for name in PARAM_SETTERS}
        self._state_size = mujoco.mj_stateSize(m, INTEGRATION_STATE)
        self._scratch = mujoco.MjData(m)
        self._renderer: mujoco.Renderer | None = None
        threads = min(max(1, int(num_threads)), n // self.min_envs_per_thread)
        bounds = np.linspace(0, n, max(threads, 1) + 1).astype(int)
        self._chunks = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self._pool = ThreadPoolExecutor(len(self._chunks) - 1, "mujoco") if len(self._chunks) > 1 else None
        for i in range(n):
            self._gather(i)

    # ------------------------------------------------------------------ stepping
    def step(self, ctrl: np.ndarray) -> None:
        """Set ``ctrl`` (num_envs, nu) and advance every env by ``frame_skip`` MuJoCo steps."""
        self.ctrl[:] = ctrl
        if self._pool is None:
            self._step_range(0, self.num_envs)
            return
        # The calling thread steps the first slice itself while the pool steps the others.
        futures = [self._pool.submit(self._step_range, a, b) for a, b in self._chunks[1:]]
        self._step_range(*self._chunks[0])
        for future in futures:
            future.result()

    def _step_range(self, start: int, stop: int) -> None:
        models, datas, ctrl, nstep = self.models, self.datas, self.ctrl, self.frame_skip
        for i in range(start, stop):
            data = datas[i]
            data.ctrl[:] = ctrl[i]
            mujoco.mj_step(models[i], data, nstep=nstep)
            self._gather(i)

    def _gather(self, i: int) -> None:
        data = self.datas[i]
        self.qpos[i] = data.qpos
        self.qvel[i] = data.qvel
        if len(self.body_ids):
            self.xpos[i] = data.xpos[self.body_ids]

    def reset(self, env_ids: Sequence[int], qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Reset envs ``env_ids`` to ``qpos``/``qvel`` as Gymnasium's ``MujocoEnv`` does.

        ``mj_resetData`` (zero controls, forces, warm start and time), then set qpos and qvel,
        then ``mj_forward``.
        """
        for k, i in enumerate(np.asarray(env_ids).tolist()):
            model, data = self.models[i], self.datas[i]
            mujoco.mj_resetData(model, data)
            data.qpos[:] = qpos[k]
            data.qvel[:] = qvel[k]
            mujoco.mj_forward(model, data)
            self._gather(i)

    # ------------------------------------------------------------------ per-env parameters
    def set_scales(self, name: str, env_ids: Sequence[int], values: np.ndarray) -> None:
        """Set parameter ``name`` (a key of :data:`PARAM_SETTERS`) of envs ``env_ids`` to ``values``."""
        setter = PARAM_SETTERS[name]
        for i, value in zip(np.asarray(env_ids).tolist(), np.asarray(values, dtype=np.float64).tolist(), strict=True):
            if self.models[i] is self.model:
                self.models[i] = copy.copy(self.model)
            setter(self.models[i], self.model, value)
            if name == "mass_scale":
                # Recompute the constants derived from masses (e.g. the constraint solver's inverse weights).
                mujoco.mj_setConst(self.models[i], self._scratch)
            self.scales[name][i] = value

    # ------------------------------------------------------------------ checkpoints
    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of everything needed to continue bit-identically: MuJoCo's integration state,
        the gathered arrays and the per-env parameters."""
        physics = np.empty((self.num_envs, self._state_size))
        for i, (model, data) in enumerate(zip(self.models, self.datas, strict=True)):
            mujoco.mj_getState(model, data, physics[i], INTEGRATION_STATE)
        state = {"physics": physics, "state_vector": self.state_vector.copy(), "xpos": self.xpos.copy()}
        state.update({f"scale/{name}": v.copy() for name, v in self.scales.items()})
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` result (of a batch of the same model and size)."""
        physics = np.asarray(state["physics"], dtype=np.float64)
        if physics.shape != (self.num_envs, self._state_size):
            raise ValueError(f"simulator state has shape {physics.shape}, expected {(self.num_envs, self._state_size)}")
        for name in PARAM_SETTERS:
            values = np.asarray(state[f"scale/{name}"], dtype=np.float64)
            changed = np.flatnonzero(values != self.scales[name])
            if len(changed):
                self.set_scales(name, changed, values[changed])
        for i, (model, data) in enumerate(zip(self.models, self.datas, strict=True)):
            mujoco.mj_setState(model, data, physics[i], INTEGRATION_STATE)
        self.state_vector[:] = state["state_vector"]
        self.xpos[:] = state["xpos"]

    # ------------------------------------------------------------------ rendering
    def render(self, env_id: int, width: int, height: int, camera: dict[str, Any] | None = None) -> np.ndarray:
        """An RGB image (height, width, 3) uint8 of env ``env_id`` in its current state.

        ``camera`` sets MuJoCo's free camera: ``track_body`` (a body name to follow),
        ``lookat``, ``distance``, ``elevation``, ``azimuth``; unset ones keep MuJoCo's defaults.
        """
        try:
            renderer = self._get_renderer(width, height)
        except Exception as err:
            loaded = getattr(getattr(mujoco, "GLContext", None), "__module__", "none")
            raise RuntimeError(
                f"{RENDER_HELP} (MUJOCO_GL={os.environ.get('MUJOCO_GL', '<unset>')}, context {loaded}; {err})"
            ) from err
        # Render a copy brought up to date with mj_forward, so the simulation itself is untouched.
        view = self._scratch
        mujoco.mj_copyData(view, self.model, self.datas[env_id])
        mujoco.mj_forward(self.models[env_id], view)
        renderer.update_scene(view, camera=self._camera(camera or {}))
        return renderer.render().copy()

    def _camera(self, settings: dict[str, Any]) -> mujoco.MjvCamera:
        cam = mujoco.MjvCamera()
        mujoco.mjv_defaultFreeCamera(self.model, cam)
        settings = dict(settings)
        if "track_body" in settings:
            cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
            cam.trackbodyid = self.model.body(settings.pop("track_body")).id
        if "lookat" in settings:
            cam.lookat[:] = settings.pop("lookat")
        for key, value in settings.items():
            setattr(cam, key, value)
        return cam

    def _get_renderer(self, width: int, height: int) -> mujoco.Renderer:
        r = self._renderer
        if r is not None and (r.width, r.height) == (width, height):
            return r
        self.close_renderer()
        # The offscreen buffer must be at least as large as the image; this changes no physics.
        vis = self.model.vis.global_
        vis.offwidth, vis.offheight = max(vis.offwidth, width), max(vis.offheight, height)
        self._renderer = mujoco.Renderer(self.model, height=height, width=width)
        return self._renderer

    def close_renderer(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def close(self) -> None:
        """Free the renderer and the stepping threads."""
        self.close_renderer()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
