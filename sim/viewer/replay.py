"""``embodied view --replay FILE``: a recorded rollout redrawn in the viewer, with a time scrubber.

The scene is the live viewer's (built from a fresh one-env instance of the recorded task, for
its model and lattice); each position of the scrubber draws that step's ``scene/`` snapshot.
The reward, its terms and the family's numbers are plotted over the whole rollout.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from embodied.sim.viewer.app import ErrorLine, block_until_interrupted, page_url, serve
from embodied.sim.viewer.plots import _chart
from embodied.sim.viewer.record import Rollout, load_rollout
from embodied.sim.viewer.scenes import build_scene

MAX_SERIES = 8
"""Entries of the actions and of the observations plotted (the first ones)."""


class ReplayApp:
    """Serve ``rollout`` on ``host:port`` with play/pause and a step slider."""

    def __init__(self, rollout: Rollout, host: str = "127.0.0.1", port: int = 8080, token: str | None = None) -> None:
        from embodied.tasks import registry

        self.rollout = rollout
        self.host = host
        self.env = registry.make(rollout.task_id, num_envs=1, seed=0, **rollout.meta.get("task_overrides", {}))
        self.token = token
        self.server, self.gate = serve(host, port, token)
        self.scene = build_scene(self.server, self.env)
        self.scene_rows = rollout.group("scene")
        self.server.initial_camera.position, self.server.initial_camera.look_at = self.scene.camera
        self.server.scene.set_up_direction("+z")
        gui = self.server.gui
        self.title = gui.add_markdown(self._title(), order=0)
        self.error_line = ErrorLine(gui)
        guard = self.error_line.guard
        self.playing = False
        self.time = gui.add_slider("Step", min=0, max=rollout.steps, step=1, initial_value=0, order=1)
        self.play_button = gui.add_button("Play", order=2)
        self.pause_button = gui.add_button("Pause", order=3)
        self.file_text = gui.add_text("Rollout file", initial_value="", order=4)
        self.open_button = gui.add_button("Open rollout", order=5)
        self.time.on_update(guard(lambda _: self.show(int(self.time.value))))
        self.play_button.on_click(guard(lambda _: setattr(self, "playing", True)))
        self.pause_button.on_click(guard(lambda _: setattr(self, "playing", False)))
        self.open_button.on_click(guard(lambda _: self.open(self.file_text.value)))
        self.plots_folder: Any = None
        self._plots()
        self.show(0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="viewer-replay", daemon=True)
        self._thread.start()

    def _title(self) -> str:
        r = self.rollout
        title = f"**Replay** of {r.task_id}: {r.steps} steps, policy {r.meta.get('policy', '?')}"
        if not r.has_scene:
            title += "  \nno scene recorded (a ROS bag holds sensor messages, not the simulator's state): plots only"
        return title

    def open(self, path: str) -> None:
        """Show another rollout of the same task (typed in the page); a bad file leaves the page as it was."""
        if not path.strip():
            raise ValueError("type the path of a rollout file (.npz) first")
        rollout = load_rollout(path.strip())
        if rollout.task_id != self.rollout.task_id:
            raise ValueError(
                f"{path} records {rollout.task_id}, and this page shows {self.rollout.task_id}: "
                f"open it with `embodied view --replay {path}`"
            )
        self.playing = False
        self.rollout, self.scene_rows = rollout, rollout.group("scene")
        self.title.content = self._title()
        self._plots()
        self.time.max = rollout.steps
        self.time.value = 0
        self.show(0)

    def _plots(self) -> None:
        r, gui = self.rollout, self.server.gui
        x = np.arange(1, r.steps + 1, dtype=np.float64)
        terms = r.group("reward_terms")
        if self.plots_folder is not None:
            self.plots_folder.remove()
        self.plots_folder = gui.add_folder("Plots", order=20)
        with self.plots_folder:
            chart = _chart(gui, "Reward and its terms", "step", ["reward", *terms], 1)
            chart.data = (x, r.arrays["rewards"].astype(np.float64), *(v.astype(np.float64) for v in terms.values()))
            for k, (name, values) in enumerate(r.group("metrics").items()):
                c = _chart(gui, name, "step", [name], 2 + k)
                c.data = (x, values.astype(np.float64))
            # What the policy saw and sent, entry by entry (the first MAX_SERIES of each).
            series = {"actions": r.arrays["actions"]}
            if "obs" in r.arrays:
                series["observations"] = r.arrays["obs"]
            for k, (name, values) in enumerate(series.items()):
                flat = values.reshape(r.steps, -1)[:, :MAX_SERIES].astype(np.float64)
                c = _chart(gui, name, "step", [f"{name[:3]}[{i}]" for i in range(flat.shape[1])], 50 + k)
                c.data = (x, *flat.T)

    @property
    def port(self) -> int:
        return self.gate.port if self.gate is not None else int(self.server.get_port())

    @property
    def url(self) -> str:
        return page_url(self.host, self.port, self.token)

    def show(self, t: int) -> None:
        """Draw the scene after ``t`` steps (a rollout without scene rows keeps the task's start)."""
        if self.rollout.has_scene:
            self.scene.draw_recorded(self.scene_rows, max(0, min(t, self.rollout.steps)))

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.playing:
                t = int(self.time.value)
                self.time.value = 0 if t >= self.rollout.steps else t + 1  # on_update draws it
            self._stop.wait(1 / 30)

    def serve_forever(self) -> None:
        block_until_interrupted(self._stop, self.close)

    def close(self, *args: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.gate is not None:
            self.gate.stop()
        self.server.stop()
        self.env.close()
