"""The browser viewer (``embodied view``), tested in a real browser: Debian's chromium driven by
Playwright (never ``playwright install``; flags from /work/shared/design/viewer.md).

One test per family drives one page through everything a user does: connect, see a non-blank
3D canvas, step, move a domain-randomisation slider and reset, turn on action latency and
observation noise, switch policy; the page must
contact no host but 127.0.0.1. Bad input (unknown task, missing or incompatible checkpoint,
corrupt rollout file) is checked on the terminal and, where the server is up, on the page.
Set ``EMBODIED_VIEWER_FIGURES=docs/figures`` to save each family's screenshot there.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embodied.cli import main
from embodied.sim.viewer.record import load_rollout, record_rollout
from embodied.sim.viewer.scenes.beam import MM_TO_SCENE
from embodied.sim.viewer.session import ViewerSession

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
POLICIES = Path(__file__).resolve().parent.parent / "assets" / "policies"
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (apt-get install -y chromium; .ci/run does it)"
)

# family -> (task id, checkpoint or None, DR parameter to move, value, how to read what the task applied);
# navigation declares no physical parameters: its page is shown with two envs and switches between them.
FAMILIES: dict[str, tuple[str, Path | None, str | None, float, Any]] = {
    "control": (
        "Control/InvertedPendulum-v0",
        POLICIES / "control_inverted_pendulum_ppo.pt",
        "mass_scale",
        1.7,
        lambda base, name: float(base.sim.scales[name][0]),
    ),
    "tactile": (
        "Tactile/PegInsert-v0",
        None,
        "gel_stiffness",
        6500.0,
        lambda base, name: float(base.params[name][0]),
    ),
    "beam": (
        "Beam/OrbitCorrection-CM1-v0",
        POLICIES / "beam_cm1_tbsac.pt",
        "solenoid_offset_mm",
        1.0,
        lambda base, name: float(base.machine.magnitudes[name][0]),
    ),
    "nav": ("Nav/ObjectNav-v0", None, None, 0.0, None),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def screenshot(page: Any) -> bytes:
    """A PNG of the page through CDP: Playwright's own screenshot waits for quiet frames, which under
    software WebGL on a loaded machine took 10 s."""
    import base64

    cdp = page.context.new_cdp_session(page)
    try:
        return base64.b64decode(cdp.send("Page.captureScreenshot", {"format": "png"})["data"])
    finally:
        cdp.detach()


def open_page(context: Any, url: str, hosts: set[str]) -> Any:
    page = context.new_page()
    page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
    page.goto(url)
    page.get_by_text("Connected").wait_for(timeout=30_000)
    return page


def canvas_variance(png: bytes) -> float:
    """Pixel variance of the 3D area (left of the panel) of a 960 x 600 screenshot."""
    import cv2

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    return float(img[150:550, 50:600].astype(np.float64).var())


def field(page: Any, label: str, selector: str) -> Any:
    """The input ``selector`` in the panel row labelled exactly ``label`` (viser's labels are not always
    tied to the input a test wants, e.g. a slider's number box)."""
    exact = re.compile(f"^{re.escape(label)}$")
    return (
        page.locator("div.mantine-Flex-root")
        .filter(has=page.locator("label", has_text=exact))
        .last.locator(selector)
        .first
    )


def wait_for(condition: Any, page: Any, timeout_ms: int = 10_000) -> bool:
    for _ in range(timeout_ms // 100):
        if condition():
            return True
        page.wait_for_timeout(100)
    return bool(condition())


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium per test worker (launching costs ~3 s); each test gets a fresh context (profile)."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (apt-get install -y chromium; .ci/run does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def app_for(request: Any) -> Iterator[Any]:
    """Builds a ViewerApp on a free port and closes it (server, play thread, env) after the test."""
    from embodied.sim.viewer.app import ViewerApp

    apps: list[Any] = []

    def build(task_id: str, checkpoint: Path | None = None, num_envs: int = 1) -> Any:
        app = ViewerApp(ViewerSession(task_id, num_envs=num_envs, checkpoint=checkpoint), port=free_port())
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close()


@needs_chromium
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_viewer_page(family: str, browser: Any, app_for: Any, tmp_path: Path) -> None:
    task_id, checkpoint, param, value, applied = FAMILIES[family]
    app = app_for(task_id, checkpoint, num_envs=1 if param else 2)
    s = app.session
    hosts: set[str] = set()
    context = browser.new_context(viewport={"width": 960, "height": 600})
    try:
        page = open_page(context, app.url, hosts)
        page.get_by_text(task_id).first.wait_for()
        page.get_by_role("button").filter(has=page.locator(".mantine-Notification-closeButton")).or_(
            page.locator("button.mantine-Notification-closeButton")
        ).first.click()  # the software-WebGL notice
        page.wait_for_timeout(1000)  # software WebGL draws the first frames
        png = screenshot(page)
        assert canvas_variance(png) > 10.0, "the 3D canvas looks blank"
        figures = os.environ.get("EMBODIED_VIEWER_FIGURES")
        if figures:
            Path(figures).mkdir(parents=True, exist_ok=True)
            (Path(figures) / f"viewer_{family}.png").write_bytes(png)

        # Step: the counter on the Python side advances, once per click.
        before = s.steps
        page.get_by_role("button", name="Step", exact=True).click()
        assert wait_for(lambda: s.steps == before + 1, page)
        page.get_by_role("button", name="Step", exact=True).click()
        assert wait_for(lambda: s.steps == before + 2, page)

        if param is not None:
            # A DR slider pins the parameter; the next reset applies it.
            page.get_by_text("Domain randomisation (next reset)").click()
            box = field(page, param, "input.mantine-NumberInput-input")
            box.fill(str(value))
            box.press("Enter")
            assert wait_for(lambda: s.pinned.get(param) == pytest.approx(value), page), s.pinned
            assert applied(s.base, param) != pytest.approx(value)
            page.get_by_role("button", name="Reset", exact=True).click()
            assert wait_for(lambda: applied(s.base, param) == pytest.approx(value), page)
        else:
            # The env dropdown shows another env of the batch (its own house and goal).
            page.get_by_label("Env").click()
            page.get_by_role("option", name="1", exact=True).click()
            assert wait_for(lambda: s.env_id == 1, page)
            env1 = (int(s.base.house_seed[1]), int(s.base.goal[1]))
            assert wait_for(lambda: app.scene.shown == env1, page), (app.scene.shown, env1)

        # Sim-to-real adapters, live: action latency and observation noise (off at first).
        assert s.latency.cfg.steps == 0 and (s.noise is None or s.noise.cfg.std == 0.0)
        page.get_by_text("Sim-to-real adapters (live)").click()
        settings = [("Action latency (steps)", "3", lambda: s.latency.cfg.steps == 3)]
        if s.noise is not None:
            settings.append(("Observation noise std", "0.1", lambda: s.noise.cfg.std == pytest.approx(0.1)))
        for label, text, applied_now in settings:
            box = field(page, label, "input.mantine-NumberInput-input")
            box.fill(text)
            box.press("Enter")
            assert wait_for(applied_now, page), label

        # Another policy.
        assert s.policy == ("checkpoint" if checkpoint else "random")
        page.get_by_label("Policy").click()
        page.get_by_role("option", name="zero").click()
        assert wait_for(lambda: s.policy == "zero", page)
        page.get_by_role("button", name="Step", exact=True).click()
        assert wait_for(lambda: s.steps == before + 3, page)

        if family == "control":
            # A missing and an incompatible checkpoint: an error on the page, the policy unchanged.
            for path, words in (
                (tmp_path / "missing.pt", "no checkpoint"),
                (POLICIES / "beam_cm1_tbsac.pt", "trained on"),
            ):
                field(page, "Checkpoint", "input").fill(str(path))
                page.get_by_role("button", name="Load checkpoint").click()
                page.get_by_text(words).first.wait_for(timeout=10_000)
                assert s.policy == "zero"
            # Streaming, a second browser joins and the first disconnects mid-stream: the server lives on.
            page.get_by_role("button", name="Play", exact=True).click()
            assert wait_for(lambda: s.steps > before + 10, page)
            second = open_page(context, app.url, hosts)
            page.close()
            running = s.steps
            assert wait_for(lambda: s.steps > running + 10, second)
            assert second.get_by_text("Connected").is_visible()
            second.get_by_role("button", name="Pause", exact=True).click()
            assert wait_for(lambda: not app.playing, second)
        assert not app.errors or family == "control", app.errors
    finally:
        context.close()
    assert hosts == {f"127.0.0.1:{app.port}"}, f"the page contacted {hosts}"


def test_view_bad_input_on_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    cases = [
        (["view", "Control/Hoper-v0"], "Did you mean 'Control/Hopper-v0'"),
        (["view", "Control/InvertedPendulum-v0", "--checkpoint", str(tmp_path / "none.pt")], "no checkpoint at"),
        (["view", "Control/InvertedPendulum-v0", "--checkpoint", str(POLICIES / "beam_cm1_tbsac.pt")], "trained on"),
        (["view", "--replay", str(corrupt)], "not a rollout file"),
        (["view", "--replay", str(tmp_path / "missing.npz")], "no rollout file"),
        (["view"], "give a task id"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        assert words in capsys.readouterr().err, argv


def test_record_and_replay(tmp_path: Path) -> None:
    """eval --record writes a rollout file that the replay viewer redraws step by step; a truncated one is refused."""
    from embodied.sim.viewer.replay import ReplayApp

    path = tmp_path / "beam.npz"
    assert (
        main(
            [
                "eval",
                "Beam/OrbitCorrection-CM1-v0",
                "--checkpoint",
                str(POLICIES / "beam_cm1_tbsac.pt"),
                "--episodes",
                "1",
                "--record",
                str(path),
            ]
        )
        == 0
    )
    rollout = load_rollout(path)
    assert rollout.task_id == "Beam/OrbitCorrection-CM1-v0" and rollout.steps > 0
    assert rollout.group("scene")["readings"].shape == (rollout.steps + 1, 10)
    assert set(rollout.group("metrics")) >= {"orbit_rms_mm", "machine_evaluations"}
    app = ReplayApp(rollout, port=free_port())
    try:
        app.show(rollout.steps)
        drawn = app.scene.centroids.batched_positions
        assert np.allclose(
            drawn[:, 1], rollout.group("scene")["readings"][-1].reshape(-1, 2)[:, 0] * MM_TO_SCENE, atol=1e-6
        )
    finally:
        app.close()
    arrays = dict(np.load(path, allow_pickle=False))
    arrays["rewards"] = arrays["rewards"][:-1]
    broken = tmp_path / "truncated.npz"
    np.savez(broken, **arrays)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_rollout(broken)


def test_video(tmp_path: Path) -> None:
    """--video writes an mp4 of the env's render() (MuJoCo offscreen) through imageio-ffmpeg."""
    if shutil.which("ffmpeg") is None:
        pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "reacher.mp4"
    summary = record_rollout("Control/Reacher-v0", None, None, episodes=1, video=out, video_size=(160, 120))
    assert summary["steps"] == 50 and out.stat().st_size > 1000
    import imageio_ffmpeg

    frames = list(imageio_ffmpeg.read_frames(str(out)))
    assert len(frames) - 1 == 51  # the meta dict, then the reset frame and one per step


def test_nav_replay_redraws_the_house_and_the_path(tmp_path: Path) -> None:
    """A navigation rollout stores the house by its seed: the replay rebuilds the same house, and
    scrubbing back shortens the path drawn."""
    from embodied.sim.viewer.replay import ReplayApp

    path = tmp_path / "nav.npz"
    summary = record_rollout("Nav/ObjectNav-v0", None, path, episodes=1, max_steps=12)
    rollout = load_rollout(path)
    assert summary["steps"] == rollout.steps == 12
    scene = rollout.group("scene")
    assert scene["rgb"].shape[0] == 13 and scene["rgb"].std() > 1.0, "the agent's camera frames are blank"
    assert set(rollout.group("metrics")) == {"distance_to_goal_m", "success", "spl", "episode_in_trial"}
    app = ReplayApp(rollout, port=free_port())
    try:
        app.show(rollout.steps)
        seed, goal = int(scene["house_seed"][-1]), int(scene["goal"][-1])
        assert app.scene.shown == (seed, goal)
        assert len(app.scene.path) == rollout.steps + 1
        app.show(3)
        assert len(app.scene.path) == 4
        assert np.allclose(app.scene.agent.position[:2], scene["pose"][3][:2])
    finally:
        app.close()


@needs_chromium
def test_access_token_gates_page_and_websocket(browser: Any) -> None:
    """With a token, viser listens on loopback only and the gate refuses every request without
    the token (page and WebSocket); the URL printed opens the page, which then works as usual."""
    import urllib.error
    import urllib.request

    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from embodied.sim.viewer.app import ViewerApp

    app = ViewerApp(ViewerSession("Control/Pendulum-v0"), port=free_port(), token="s3cret-token")
    try:
        assert app.url == f"http://127.0.0.1:{app.port}/?token=s3cret-token"
        assert app.port != app.server.get_port()
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # whatever http_proxy says
        for url in (f"http://127.0.0.1:{app.port}/", f"http://127.0.0.1:{app.port}/?token=wrong"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                direct.open(url, timeout=10)
            assert refused.value.code == 403 and b"access token" in refused.value.read()
        with pytest.raises(InvalidStatus, match="403"):
            connect(f"ws://127.0.0.1:{app.port}/", subprotocols=["viser-v1"], open_timeout=10, proxy=None)  # type: ignore[list-item]
        hosts: set[str] = set()
        context = browser.new_context(viewport={"width": 960, "height": 600})
        try:
            page = open_page(context, app.url, hosts)  # through the gate: page, then WebSocket with the cookie
            before = app.session.steps
            page.get_by_role("button", name="Step", exact=True).click()
            assert wait_for(lambda: app.session.steps == before + 1, page)
            again = open_page(context, f"http://127.0.0.1:{app.port}/", hosts)  # the cookie alone is enough now
            assert again.get_by_text("Connected").is_visible()
        finally:
            context.close()
        assert hosts == {f"127.0.0.1:{app.port}"}
        assert app.gate is not None and app.gate.refused == 3
    finally:
        app.close()


def test_view_on_another_host_gets_a_random_token() -> None:
    """`embodied view --host H` (not loopback's name) prints a warning and a URL with a fresh token."""
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    port = free_port()
    cmd = [sys.executable, "-m", "embodied.cli", "view", "Control/Pendulum-v0", "--host", "127.0.0.2", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "open http" not in line:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line or proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
        url = re.search(r"(http://\S+)", line).group(1)  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.2:") and re.search(r"\?token=[\w-]{20,}$", url), url
        # No proxies: a test process that imported Ray has http_proxy pointing at a dead port (scale-out's
        # network settings), and no_proxy lists 127.0.0.1 but not 127.0.0.2.
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(url, timeout=10) as page:
            assert page.status == 200
        with pytest.raises(urllib.error.HTTPError, match="403"):
            direct.open(url.split("?")[0], timeout=10)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "warning: serving on 127.0.0.2" in err and "access token" in err


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run for a display (apt-get install xvfb xauth)")
@pytest.mark.parametrize("task_id", ["Control/InvertedPendulum-v0", "Tactile/PegInsert-v0"])
def test_native_viewer_under_a_real_x_display(task_id: str) -> None:
    """--viewer native opens MuJoCo's own window on an X display (Xvfb), steps the task under the
    policy until SIGTERM, and stops cleanly (exit 0, the steps it took reported)."""
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1024x768x24", sys.executable, "-m", "embodied.cli", "view", task_id,
           "--viewer", "native"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "MuJoCo's viewer is open" in line, (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        time.sleep(2.0)
        # xvfb-run runs the viewer as its child: signal the viewer itself (the session's python process).
        pattern = "^" + re.escape(f"{sys.executable} -m embodied.cli view")
        subprocess.run(["pkill", "-TERM", "-s", str(proc.pid), "-f", pattern], check=True)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    steps = int(re.search(r"stopped after (\d+) steps", out).group(1))  # type: ignore[union-attr]
    assert steps > 10, out


def test_native_viewer_needs_a_display_and_a_mujoco_task(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["view", "Control/InvertedPendulum-v0", "--viewer", "native"]) == 2
    assert "needs a display" in capsys.readouterr().err
    monkeypatch.setenv("DISPLAY", ":12345")
    assert main(["view", "Beam/OrbitCorrection-CM1-v0", "--viewer", "native"]) == 2
    assert "MuJoCo tasks only" in capsys.readouterr().err


@needs_chromium
def test_replay_page_scrubs_and_reports_a_corrupt_file_on_the_page(browser: Any, tmp_path: Path) -> None:
    """The replay page: the step box moves the scene; a corrupt file opened from the page shows an
    error there and leaves the replay as it was; another rollout of the task opens."""
    from embodied.sim.viewer.replay import ReplayApp

    first, second, corrupt = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "corrupt.npz"
    record_rollout("Control/Reacher-v0", None, first, episodes=1, seed=1)
    record_rollout("Control/Reacher-v0", None, second, episodes=1, seed=2, max_steps=20)
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    app = ReplayApp(load_rollout(first), port=free_port())
    hosts: set[str] = set()
    context = browser.new_context(viewport={"width": 960, "height": 600})
    try:
        page = open_page(context, app.url, hosts)
        page.get_by_text("Replay of Control/Reacher-v0: 50 steps").wait_for()
        box = field(page, "Step", "input.mantine-NumberInput-input")
        box.fill("30")
        box.press("Enter")
        assert wait_for(lambda: int(app.time.value) == 30, page)
        for path, words in ((corrupt, "not a rollout file"), (tmp_path / "missing.npz", "no rollout file")):
            field(page, "Rollout file", "input").fill(str(path))
            page.get_by_role("button", name="Open rollout").click()
            page.get_by_text(words).first.wait_for(timeout=10_000)
            assert app.rollout.steps == 50 and int(app.time.value) == 30
        field(page, "Rollout file", "input").fill(str(second))
        page.get_by_role("button", name="Open rollout").click()
        page.get_by_text("Replay of Control/Reacher-v0: 20 steps").wait_for(timeout=10_000)
        assert app.rollout.steps == 20 and int(app.time.value) == 0
        assert len(app.error_line.errors) == 2
    finally:
        context.close()
        app.close()
    assert hosts == {f"127.0.0.1:{app.port}"}


def test_rfq_page_plots_transmission() -> None:
    """RFQ tasks measure transmission, not an orbit: that is what their page plots."""
    from embodied.sim.viewer.app import ViewerApp

    app = ViewerApp(ViewerSession("Beam/RFQTransmission-LPI-v0"), port=free_port())
    try:
        for _ in range(3):
            app.step()
        values = app.plots.metric_values
        assert set(values) == {"transmission", "machine_evaluations"} and len(values["transmission"]) == 3
        assert all(0.0 <= v <= 1.0 for v in values["transmission"]) and not app.errors
    finally:
        app.close()


def test_replay_of_a_rollout_converted_from_a_bag_plots_actions_and_observations(tmp_path: Path) -> None:
    """A bag converted to a rollout has no scene rows and no rewards: its replay page opens and plots
    the observations and commands it holds."""
    from embodied.sim.viewer.replay import ReplayApp
    from embodied.sim2real.ros.bags import save_pairs_as_rollout

    observations = [np.full(4, k, np.float32) for k in range(30)]
    actions = [np.array([np.sin(k / 5)], np.float32) for k in range(30)]
    path = save_pairs_as_rollout(tmp_path / "bag.npz", "Control/InvertedPendulum-v0", "robot.bag", observations, actions)
    rollout = load_rollout(path)
    assert not rollout.has_scene and rollout.steps == 30
    app = ReplayApp(rollout, port=free_port())
    try:
        app.show(12)
        assert "no scene recorded" in app.title.content
    finally:
        app.close()
