"""The one task registry.

A task id is ``Family/Name-vN``. That string is also its Gymnasium id (the family is
Gymnasium's namespace), so ``gymnasium.make("embodied:Control/Pendulum-v0")`` works with no
prior import. Entry points are ``"module:attr"`` strings: importing the registry imports no
simulator; modules load when a task is made.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium

from embodied.config import ConfigError, apply_overrides, check_json_serialisable

if TYPE_CHECKING:
    from embodied.sim.env import BatchedEnv

ID_PATTERN = re.compile(r"^(?P<family>[A-Z][A-Za-z0-9]*)/(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)-v(?P<version>\d+)$")

# Physics backends a task may declare, and the module that must import for each.
BACKEND_MODULES: dict[str, str] = {
    "torch": "torch",
    "mujoco": "mujoco",
    "mujoco_warp": "mujoco_warp",
    "pybullet": "pybullet",
    "isaacgym": "isaacgym",
    "habitat": "habitat_sim",
    "cheetah": "cheetah",
}
# What to tell users whose backend is missing.
BACKEND_HINTS: dict[str, str] = {
    "mujoco_warp": "pip install 'embodied-suite[gpu]' (mujoco-warp)",
    "isaacgym": "install Isaac Gym Preview 4 from NVIDIA (isaacgym-stubs only provides type stubs)",
    "habitat": "install habitat-sim from conda or source (it is not on PyPI)",
    "cheetah": "pip install cheetah-accelerator",
}


@dataclass(frozen=True)
class TaskSpec:
    """Everything the suite knows about a task before making it."""

    id: str
    vector_entry_point: str
    """``"module:Class"`` of the natively batched env (a :class:`~embodied.sim.env.BatchedEnv`)."""
    cfg_entry_point: str
    """``"module:Class"`` of the task's config dataclass (its defaults are the task's defaults)."""
    max_episode_steps: int
    obs_kinds: tuple[str, ...] = ("state",)
    backends: tuple[str, ...] = ("mujoco",)
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Config overrides baked into this id (JSON-serialisable)."""
    description: str = ""

    @property
    def family(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def default_backend(self) -> str:
        return self.backends[0]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["family"] = self.family
        return out


_REGISTRY: dict[str, TaskSpec] = {}


def register(
    id: str,
    *,
    vector_entry_point: str,
    cfg_entry_point: str,
    max_episode_steps: int,
    obs_kinds: tuple[str, ...] = ("state",),
    backends: tuple[str, ...] = ("mujoco",),
    kwargs: dict[str, Any] | None = None,
    description: str = "",
) -> TaskSpec:
    """Add a task to the registry and to Gymnasium's, under the same id."""
    if not ID_PATTERN.match(id):
        raise ValueError(f"task id {id!r} must look like 'Family/Name-vN' (e.g. 'Control/Pendulum-v0')")
    if id in _REGISTRY:
        raise ValueError(f"task id {id!r} is already registered")
    unknown = [b for b in backends if b not in BACKEND_MODULES]
    if unknown or not backends:
        raise ValueError(f"{id}: unknown backends {unknown}; known: {sorted(BACKEND_MODULES)}")
    kwargs = dict(kwargs or {})
    check_json_serialisable(kwargs, id)
    spec = TaskSpec(
        id=id,
        vector_entry_point=vector_entry_point,
        cfg_entry_point=cfg_entry_point,
        max_episode_steps=max_episode_steps,
        obs_kinds=tuple(obs_kinds),
        backends=tuple(backends),
        kwargs=kwargs,
        description=description,
    )
    _REGISTRY[id] = spec
    gymnasium.register(
        id=id,
        entry_point="embodied.sim.gym_api:SingleEnv",
        vector_entry_point="embodied.sim.gym_api:make_vector_env",
        max_episode_steps=max_episode_steps,
        kwargs={"task_id": id},
    )
    return spec


def unregister(id: str) -> None:
    """Remove a task (used by tests that register temporary tasks)."""
    _REGISTRY.pop(id, None)
    gymnasium.registry.pop(id, None)


def list_tasks(family: str | None = None) -> list[str]:
    """Registered task ids, sorted, optionally of one family."""
    return sorted(i for i, s in _REGISTRY.items() if family is None or s.family == family)


def spec(id: str) -> TaskSpec:
    """The spec of a registered task; an unknown id lists the closest registered ones."""
    if id in _REGISTRY:
        return _REGISTRY[id]
    close = difflib.get_close_matches(id, list(_REGISTRY), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise KeyError(f"unknown task id {id!r}.{hint} Run `embodied list` to see all tasks.")


def load(entry_point: str) -> Any:
    """Import ``"module:attr"`` and return the attribute."""
    module_name, _, attr = entry_point.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def load_cfg(id: str, **overrides: Any) -> Any:
    """A fresh config object for task ``id``: its defaults, its spec kwargs, then ``overrides``."""
    task = spec(id)
    cfg_cls = load(task.cfg_entry_point)
    try:
        cfg = apply_overrides(cfg_cls(), task.kwargs)
        return apply_overrides(cfg, overrides)
    except ConfigError as err:
        raise ConfigError(f"{id}: {err}") from None


def check_backend(id: str, backend: str | None) -> str:
    """Return the backend to use for ``id``; raise a clear error if it is unsupported or missing."""
    task = spec(id)
    backend = backend or task.default_backend
    if backend not in task.backends:
        raise ValueError(f"{id} supports backends {list(task.backends)}, not {backend!r}")
    module = BACKEND_MODULES[backend]
    if importlib.util.find_spec(module) is None:
        hint = BACKEND_HINTS.get(backend, f"pip install {module}")
        raise ModuleNotFoundError(
            f"{id}: backend {backend!r} needs the Python module {module!r}, which is not installed."
            f" To use it: {hint}. Supported backends: {list(task.backends)}."
        )
    return backend


def make(
    id: str,
    num_envs: int = 1,
    device: str = "cpu",
    backend: str | None = None,
    seed: int | None = None,
    **overrides: Any,
) -> BatchedEnv:
    """Build the batched env of task ``id``: ``num_envs`` environments on ``device``."""
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"{id}: num_envs must be a positive int, got {num_envs!r}")
    backend = check_backend(id, backend)
    cfg = load_cfg(id, **overrides)
    env_cls = load(spec(id).vector_entry_point)
    return env_cls(cfg=cfg, num_envs=num_envs, device=device, backend=backend, task_id=id, seed=seed)
