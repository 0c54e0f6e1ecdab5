"""The live viewer: a viser server showing a :class:`ViewerSession`, with its controls and plots.

One process serves the page; the page needs nothing from the internet (viser's client ships in
its wheel). The server binds 127.0.0.1 unless the caller names another host.

Threads: a play loop steps the session at the chosen speed; widget callbacks run on viser's
threads. Both go through :attr:`ViewerSession.lock`. A callback that fails (a bad checkpoint
path, a policy that cannot act) shows its error on the page and in the log and changes nothing:
the server keeps running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from embodied.sim.viewer.access import TokenGate
from embodied.sim.viewer.plots import Plots
from embodied.sim.viewer.scenes import build_scene
from embodied.sim.viewer.session import ViewerSession

log = logging.getLogger(__name__)

MAX_DRAWS_PER_S = 30.0
"""Scene updates are skipped beyond this rate while playing faster (a browser shows 30-60 frames/s)."""
MAX_LATENCY_STEPS = 10
"""Upper end of the page's action-latency slider (primitive steps; 0 is off)."""
MAX_NOISE_STD = 0.5
"""Upper end of the page's observation-noise slider (standard deviation in observation units; 0 is off)."""
DRAW_BUDGET = 0.15
"""While playing, redraws may take at most this fraction of the wall time, so an expensive scene
(tactile images) slows the simulation by about this much and no more: it is redrawn less often."""


def start_server(host: str, port: int) -> Any:
    """A quiet viser server on ``host:port`` (viser tries the next ports if that one is taken).

    No environment map and no shadows: under software WebGL (a headless server, a laptop
    without a GPU in the browser) they made each frame ~20x slower (a screenshot 1.3 s against
    0.05 s, and a first frame of 11 s), and the default lights show the scene well enough."""
    import viser

    server = viser.ViserServer(host=host, port=port, verbose=False)
    server.scene.configure_environment_map(hdri=None)
    server.scene.configure_default_lights(enabled=True, cast_shadow=False)
    server.gui.configure_theme(show_share_button=False)  # sharing goes through viser's public relay
    return server


def serve(host: str, port: int, token: str | None) -> tuple[Any, TokenGate | None]:
    """The viser server, and with a ``token`` the :class:`TokenGate` in front of it: then viser
    listens on 127.0.0.1 only and the gate on ``host:port``."""
    if token is None:
        return start_server(host, port), None
    server = start_server("127.0.0.1", 0)
    try:
        return server, TokenGate(token, host, port, int(server.get_port()))
    except BaseException:
        server.stop()
        raise


def page_url(host: str, port: int, token: str | None) -> str:
    """The URL to open (with the token, when there is one)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


class ErrorLine:
    """A red line on the page for errors, and :meth:`guard` to route a widget callback's failures to it."""

    def __init__(self, gui: Any, order: float = 0.5) -> None:
        self.handle = gui.add_markdown("", order=order, visible=False)
        self.errors: list[str] = []
        """Every error shown, newest last."""

    def show(self, message: str) -> None:
        """Show ``message`` on the page and log it."""
        log.error("viewer: %s", message)
        self.errors.append(message)
        self.handle.content = f"<span style='color:#c62828'>**Error:** {message}</span>"
        self.handle.visible = True

    def guard(self, fn: Callable[[Any], Any]) -> Callable[[Any], None]:
        """A widget callback that shows any error on the page instead of raising in viser's thread."""

        def callback(event: Any) -> None:
            try:
                fn(event)
                self.handle.visible = False
            except Exception as err:  # noqa: BLE001 - every failure is shown, the server lives on
                self.show(f"{type(err).__name__}: {err}")

        return callback


def block_until_interrupted(stop: threading.Event, close: Callable[[], None]) -> None:
    """Wait until ``stop`` is set or Ctrl-C, then ``close()`` (the CLI's serving loop)."""
    try:
        while not stop.is_set():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        close()


class ViewerApp:
    """Serve ``session`` on ``host:port``: scene, controls (play, pause, step, reset, speed,
    policy, env, DR sliders) and plots."""

    def __init__(
        self, session: ViewerSession, host: str = "127.0.0.1", port: int = 8080, token: str | None = None
    ) -> None:
        self.session = session
        self.host = host
        self.token = token
        self.server, self.gate = serve(host, port, token)
        self.playing = False
        self.speed = 30.0
        """Steps per second while playing."""
        self.draws = 0
        """Scene updates sent since start."""
        self._next_draw = 0.0
        self._stop = threading.Event()
        gui = self.server.gui
        with session.lock:
            self.scene = build_scene(self.server, session.env)
        position, look_at = self.scene.camera
        self.server.initial_camera.position = position
        self.server.initial_camera.look_at = look_at
        self.server.scene.set_up_direction("+z")
        self.status = gui.add_markdown(self._status_text(), order=0)
        self.error_line = ErrorLine(gui)
        self._build_controls()
        self.plots = Plots(gui, self.scene.metric_names)
        self.refresh(force=True)
        self._thread = threading.Thread(target=self._loop, name="viewer-play", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ page
    @property
    def errors(self) -> list[str]:
        """Every error shown on the page, newest last."""
        return self.error_line.errors

    @property
    def port(self) -> int:
        return self.gate.port if self.gate is not None else int(self.server.get_port())

    @property
    def url(self) -> str:
        return page_url(self.host, self.port, self.token)

    def _status_text(self) -> str:
        s = self.session
        rec = s.last
        policy = s.policy if s.policy != "checkpoint" else f"checkpoint ({s.checkpoint})"
        return (
            f"**{s.task_id}** env {s.env_id} of {s.num_envs}  \n"
            f"step **{s.steps}** · episode {s.episodes} · return {rec.episode_return:.2f}  \n"
            f"policy: {policy} · {'playing' if self.playing else 'paused'}"
        )

    def _build_controls(self) -> None:
        gui, s = self.server.gui, self.session
        with gui.add_folder("Controls", order=1):
            self.play_button = gui.add_button("Play")
            self.pause_button = gui.add_button("Pause")
            self.step_button = gui.add_button("Step")
            self.reset_button = gui.add_button("Reset")
            self.speed_slider = gui.add_slider("Speed (steps/s)", min=1, max=240, step=1, initial_value=self.speed)
            self.policy_dropdown = gui.add_dropdown("Policy", options=tuple(s.policies()), initial_value=s.policy)
            self.checkpoint_text = gui.add_text("Checkpoint", initial_value=s.checkpoint or "")
            self.load_button = gui.add_button("Load checkpoint")
            self.env_dropdown = gui.add_dropdown(
                "Env", options=tuple(str(i) for i in range(s.num_envs)), initial_value="0", visible=s.num_envs > 1
            )
        self.play_button.on_click(self.error_line.guard(lambda _: self.set_playing(True)))
        self.pause_button.on_click(self.error_line.guard(lambda _: self.set_playing(False)))
        self.step_button.on_click(self.error_line.guard(lambda _: self.step()))
        self.reset_button.on_click(self.error_line.guard(lambda _: self.reset()))
        self.speed_slider.on_update(
            self.error_line.guard(lambda _: setattr(self, "speed", float(self.speed_slider.value)))
        )
        self.policy_dropdown.on_update(self.error_line.guard(lambda _: self._set_policy(self.policy_dropdown.value)))
        self.load_button.on_click(self.error_line.guard(lambda _: self.load_checkpoint(self.checkpoint_text.value)))
        self.env_dropdown.on_update(self.error_line.guard(lambda _: self._set_env(int(self.env_dropdown.value))))
        with gui.add_folder("Sim-to-real adapters (live)", order=1.5, expand_by_default=False):
            self.latency_slider = gui.add_slider(
                "Action latency (steps)",
                min=0,
                max=max(MAX_LATENCY_STEPS, s.latency.cfg.steps),
                step=1,
                initial_value=s.latency.cfg.steps,
            )
            self.latency_slider.on_update(
                self.error_line.guard(lambda _: s.set_latency_steps(int(self.latency_slider.value)))
            )
            self.noise_slider = None
            if s.noise is not None:
                self.noise_slider = gui.add_slider(
                    "Observation noise std",
                    min=0.0,
                    max=max(MAX_NOISE_STD, s.noise.cfg.std),
                    step=0.005,
                    initial_value=s.noise.cfg.std,
                )
                self.noise_slider.on_update(
                    self.error_line.guard(lambda _: s.set_noise_std(float(self.noise_slider.value)))  # type: ignore[union-attr]
                )
        self.dr_sliders: dict[str, Any] = {}
        if s.declared:
            with gui.add_folder("Domain randomisation (next reset)", order=2, expand_by_default=False):
                for name, p in sorted(s.declared.items()):
                    step = (p.high - p.low) / 100 if p.high > p.low else 1.0
                    slider = gui.add_slider(name, min=p.low, max=p.high, step=step, initial_value=p.nominal)
                    slider.on_update(
                        self.error_line.guard(lambda _, n=name, sl=slider: s.pin_param(n, float(sl.value)))
                    )
                    self.dr_sliders[name] = slider

    # ------------------------------------------------------------------ actions
    def set_playing(self, playing: bool) -> None:
        self.playing = playing
        self.status.content = self._status_text()

    def _set_policy(self, name: str) -> None:
        self.session.set_policy(name)
        self.status.content = self._status_text()

    def _set_env(self, env_id: int) -> None:
        self.session.set_env_id(env_id)
        self.refresh(force=True)

    def load_checkpoint(self, path: str) -> None:
        """Load a checkpoint typed in the page; its errors show on the page (see :meth:`ErrorLine.guard`)."""
        if not path.strip():
            raise ValueError("type the path of a checkpoint.pt, a run folder or a shipped policy first")
        self.session.load_checkpoint(path.strip())
        self.policy_dropdown.options = tuple(self.session.policies())
        self.policy_dropdown.value = "checkpoint"
        self.status.content = self._status_text()

    def step(self, force_draw: bool = True) -> None:
        """One step of the session; drawn at once with ``force_draw``, else when a redraw is due
        (at most :data:`MAX_DRAWS_PER_S`, within :data:`DRAW_BUDGET`), as while playing."""
        with self.session.lock:
            rec = self.session.step()
            metrics = self.scene.metrics(self.session.env, self.session.env_id, rec.info)
            self.plots.push(rec, metrics)
            self.refresh(force=force_draw)

    def reset(self) -> None:
        with self.session.lock:
            self.session.reset()
            self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Redraw the scene, the status and, when due, the plots; without ``force`` only when a
        redraw is due. One atomic message group: the browser applies it at once, and viser wakes
        its sending loop once instead of once per message (0.26 ms each here)."""
        start = time.monotonic()
        if not force and start < self._next_draw:
            return
        with self.session.lock, self.server.atomic():
            self.scene.update(self.session.env, self.session.env_id)
            if self.plots.flush(force):
                self.status.content = self._status_text()
        self.draws += 1
        cost = time.monotonic() - start
        self._next_draw = start + max(1.0 / MAX_DRAWS_PER_S, cost / DRAW_BUDGET)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self.playing:
                self._stop.wait(0.05)
                continue
            start = time.monotonic()
            try:
                self.step(force_draw=False)
            except Exception as err:  # noqa: BLE001 - a policy or task error pauses, it does not kill the server
                self.playing = False
                self.error_line.show(f"stepping failed, paused: {type(err).__name__}: {err}")
            self._stop.wait(max(0.0, 1.0 / self.speed - (time.monotonic() - start)))

    def serve_forever(self) -> None:
        """Block until Ctrl-C, then shut down."""
        block_until_interrupted(self._stop, self.close)

    def close(self) -> None:
        """Stop the play loop and the server, and close the env."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self.gate is not None:
            self.gate.stop()
        self.server.stop()
        self.session.close()
