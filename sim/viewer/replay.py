"""``embodied view --replay FILE``: a recorded rollout redrawn in the viewer, with a time scrubber.

The scene is the live viewer's (built from a fresh one-env instance of the recorded task, for
its model and lattice); each position of the scrubber draws that step's ``scene/`` snapshot.
The reward, its terms and the family's numbers are plotted over the whole rollout.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from embodied.sim.viewer.app import block_until_interrupted, page_url, serve
from embodied.sim.viewer.plots import _chart
from embodied.sim.viewer.record import Rollout
from embodied.sim.viewer.scenes import build_scene


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
        gui.add_markdown(
            f"**Replay** of {rollout.task_id}: {rollout.steps} steps, policy {rollout.meta.get('policy', '?')}", order=0
        )
        self.playing = False
        self.time = gui.add_slider("Step", min=0, max=rollout.steps, step=1, initial_value=0, order=1)
        self.play_button = gui.add_button("Play", order=2)
        self.pause_button = gui.add_button("Pause", order=3)
        self.time.on_update(lambda _: self.show(int(self.time.value)))
        self.play_button.on_click(lambda _: setattr(self, "playing", True))
        self.pause_button.on_click(lambda _: setattr(self, "playing", False))
        self._plots()
        self.show(0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="viewer-replay", daemon=True)
        self._thread.start()

    def _plots(self) -> None:
        r, gui = self.rollout, self.server.gui
        x = np.arange(1, r.steps + 1, dtype=np.float64)
        terms = r.group("reward_terms")
        with gui.add_folder("Plots", order=20):
            chart = _chart(gui, "Reward and its terms", "step", ["reward", *terms], 1)
            chart.data = (x, r.arrays["rewards"].astype(np.float64), *(v.astype(np.float64) for v in terms.values()))
            for k, (name, values) in enumerate(r.group("metrics").items()):
                c = _chart(gui, name, "step", [name], 2 + k)
                c.data = (x, values.astype(np.float64))

    @property
    def port(self) -> int:
        return self.gate.port if self.gate is not None else int(self.server.get_port())

    @property
    def url(self) -> str:
        return page_url(self.host, self.port, self.token)

    def show(self, t: int) -> None:
        """Draw the scene after ``t`` steps."""
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
