"""``embodied view ID --viewer native``: MuJoCo's own viewer window on a machine with a display.

The browser viewer works everywhere; this one is for a desktop where MuJoCo's window (its
mouse controls, contact and frame overlays, and its own UI panels) is what a user knows. It
shows env ``env_id`` of a :class:`ViewerSession`, stepped at real time under the session's
policy, and works for every task whose physics is a MuJoCo model (control and tactile tasks).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from embodied.sim.physics.mujoco_batch import MujocoBatch
from embodied.sim.viewer.session import ViewerSession

CLOSE_TIMEOUT_S = 5.0


def mujoco_sim_of(session: ViewerSession) -> MujocoBatch:
    """The session's MuJoCo batch (a control task's ``sim``, a tactile rig's backend), or a ValueError."""
    base = session.base
    for sim in (getattr(base, "sim", None), getattr(getattr(getattr(base, "rig", None), "backend", None), "sim", None)):
        if isinstance(sim, MujocoBatch):
            return sim
    raise ValueError(
        f"--viewer native shows MuJoCo tasks only, and {session.task_id} has no MuJoCo model on this backend; "
        "the browser viewer (the default) shows every task"
    )


def require_display() -> None:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ValueError(
            "--viewer native opens a window and needs a display (DISPLAY is not set); on a headless machine "
            "use the browser viewer (the default), or run under xvfb-run"
        )


def run_native(session: ViewerSession, speed: float = 1.0, on_open: Any = None) -> int:
    """Show the session in MuJoCo's viewer until its window closes or Ctrl-C/SIGTERM; the steps taken.

    ``speed`` scales real time (2.0 plays twice as fast); ``on_open`` is called once the window is up."""
    import mujoco.viewer

    require_display()
    sim = mujoco_sim_of(session)
    if speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    dt = float(getattr(session.base, "dt", 0.0) or sim.model.opt.timestep) / speed
    window = mujoco.viewer.launch_passive(sim.model, sim.datas[session.env_id])
    steps = 0
    try:
        if on_open is not None:
            on_open()
        while window.is_running() and not stop.is_set():
            start = time.monotonic()
            with window.lock():  # the viewer reads the data on its own thread
                session.step()
            window.sync()
            steps += 1
            time.sleep(max(0.0, dt - (time.monotonic() - start)))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        window.close()
        # Let the viewer's thread tear its GL context down before the interpreter exits (it crashes otherwise).
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        while window.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
    return steps
