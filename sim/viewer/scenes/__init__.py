"""Scene builders, one module per task family, found by the family's name.

``build_scene(server, env)`` imports ``embodied.sim.viewer.scenes.<family in lower case>`` and
calls its ``make_scene(server, env)``, which returns a :class:`Scene`. A new family (navigation,
for ``Nav/*`` tasks) is one new module here with a ``make_scene``; nothing else changes. A
family without a module gets :class:`ImageScene`, the env's own ``render()`` in the panel.

A scene splits drawing in two so live viewing and replay share it: :meth:`Scene.snapshot`
reads what one env looks like now as a dict of NumPy arrays (what a recording stores per
step), and :meth:`Scene.draw` puts such a dict on the page.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from embodied.sim.env import BatchedEnv


class Scene:
    """What the viewer draws for one env of a task, and the family's numbers worth plotting."""

    metric_names: tuple[str, ...] = ()
    """Names of :meth:`metrics`, each plotted against the step."""
    camera: tuple[tuple[float, float, float], tuple[float, float, float]] = ((2.0, -2.0, 1.5), (0.0, 0.0, 0.3))
    """Initial camera position and look-at point (m)."""

    def snapshot(self, env: BatchedEnv, env_id: int) -> dict[str, np.ndarray]:
        """What env ``env_id`` looks like now (arrays only, so it can be saved and drawn later)."""
        raise NotImplementedError

    def draw(self, snap: dict[str, np.ndarray]) -> None:
        """Show a :meth:`snapshot` (live or from a recording)."""
        raise NotImplementedError

    def draw_recorded(self, rows: dict[str, np.ndarray], t: int) -> None:
        """Show row ``t`` of a recording's ``scene/`` arrays; all rows are given, for scenes that
        draw what came before (navigation's path)."""
        self.draw({k: v[t] for k, v in rows.items()})

    def metrics(self, env: BatchedEnv, env_id: int, info: dict[str, Any]) -> dict[str, float]:
        """The family's numbers of the last step of env ``env_id`` (``info`` is the step's)."""
        return {}

    def update(self, env: BatchedEnv, env_id: int) -> dict[str, np.ndarray]:
        """Draw env ``env_id`` as it is now; returns the snapshot drawn."""
        snap = self.snapshot(env, env_id)
        self.draw(snap)
        return snap


class ImageScene(Scene):
    """The env's own ``render()`` frame in the panel: any task that renders can be watched."""

    def __init__(self, server: Any, env: BatchedEnv, size: tuple[int, int] = (320, 240)) -> None:
        self.size = size
        self.handle = server.gui.add_image(np.zeros((size[1], size[0], 3), np.uint8), label="render()", order=3)
        server.scene.add_grid("/grid", width=4.0, height=4.0)

    def snapshot(self, env: BatchedEnv, env_id: int) -> dict[str, np.ndarray]:
        return {"frame": env.render(env_id, *self.size)}

    def draw(self, snap: dict[str, np.ndarray]) -> None:
        self.handle.image = snap["frame"]


def scene_module_name(family: str) -> str:
    return f"{__name__}.{family.lower()}"


def build_scene(server: Any, env: BatchedEnv) -> Scene:
    """The family's scene for ``env`` (by its task id's family), else an :class:`ImageScene`."""
    family = env.unwrapped.task_id.split("/", 1)[0]
    name = scene_module_name(family)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise
        return ImageScene(server, env)
    return module.make_scene(server, env)
