"""Navigation benchmark: env steps per second of Nav/ObjectNav-v0 at 128x128 depth, MiniWorld measured in the same run.

    .venv/bin/python bench/nav.py            # run the missing pieces, print one JSON object
    .venv/bin/python bench/nav.py --force    # re-run every piece

Keys: ``sim.steps_per_s.<n>`` for n = 1, 16, 64 envs: full env steps (Habitat actions through the
agent kernel, one ray-cast launch for all envs' 128x128 depth frames, reward, measures, same-step
autoreset) with random motions (``env.random_action()``: never stop, so houses are not rebuilt while
timing), timed after 20 warm-up steps, torch on one thread, Warp's CPU kernels on one thread.
``sim.frames_per_s.<n>``: the ray caster alone (depth only), n frames per launch.
``sim.miniworld_steps_per_s``: MiniWorld 2.1.0's ``MiniWorld-FourRooms-v0`` with 128x128 observations,
random actions, one env (it renders one view per call with OpenGL under Xvfb; bench/.venv-miniworld
from scripts/setup_miniworld.sh). ``sim.speedup_vs_miniworld.<n>`` divides the two. Keys are paths in
the nested JSON object, as in the other benches.

Each piece is written to bench/results/nav/<piece>.json as soon as it is measured (bench/pieces.py),
the combined report to bench/results/nav.json; ``--report`` prints it. That report also carries
``relic.*``, ``lstm.*`` and ``random.*`` from ``bench/nav_learning.py``'s last report: ReLIC's
step latency with the KV cache and with recomputation per context length (``relic.step_ms.<n>``,
``relic.step_ms_recompute.<n>``) and the in-context learning curves on held-out Darkroom trials
(``<policy>.success_by_episode`` ...), which take hours of training and run there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from pieces import code_state, machine, run_piece  # noqa: E402  (bench/pieces.py, next to this script)

import embodied  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "nav"
NUM_ENVS = (1, 16, 64)
SECONDS = 4.0
MINIWORLD_PY = ROOT / ".venv-miniworld" / "bin" / "python"
SOURCES = ("sim/nav", "tasks/nav", "bench/nav.py")

MINIWORLD_PEER = """
import json, time
import gymnasium as gym
import miniworld  # noqa: F401  (registers the MiniWorld-* ids)
env = gym.make("MiniWorld-FourRooms-v0", obs_width=128, obs_height=128)
env.reset(seed=0)
for _ in range(20):
    env.step(env.action_space.sample())
steps, start = 0, time.perf_counter()
while time.perf_counter() - start < SECONDS:
    _, _, terminated, truncated, _ = env.step(env.action_space.sample())
    steps += 1
    if terminated or truncated:
        env.reset()
elapsed = time.perf_counter() - start
print(json.dumps({"steps_per_s": steps / elapsed, "steps": steps, "seconds": elapsed,
                  "miniworld": miniworld.__version__ if hasattr(miniworld, "__version__") else "2.1.0"}))
"""


def env_steps(num_envs: int) -> dict[str, Any]:
    env = embodied.make("Nav/ObjectNav-v0", num_envs=num_envs, seed=0, obs_terms=("depth",))
    env.reset(seed=0)
    for _ in range(20):
        env.step(env.random_action())
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        env.step(env.random_action())
        steps += 1
    elapsed = time.perf_counter() - start
    return {"steps_per_s": steps * num_envs / elapsed, "calls": steps, "seconds": elapsed, "machine": machine()}


def caster_frames(num_envs: int) -> dict[str, Any]:
    env = embodied.make("Nav/ObjectNav-v0", num_envs=num_envs, seed=0, obs_terms=("depth",))
    env.reset(seed=0)
    caster, scene, pose = env.caster, env.scene, env.pose
    for _ in range(5):
        caster.render(scene, pose, semantic=False, rgb=False)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        caster.render(scene, pose, semantic=False, rgb=False)
        calls += 1
    elapsed = time.perf_counter() - start
    return {"frames_per_s": calls * num_envs / elapsed, "calls": calls, "seconds": elapsed, "machine": machine()}


def miniworld() -> dict[str, Any]:
    xvfb = shutil.which("xvfb-run")
    if not MINIWORLD_PY.exists() or xvfb is None:
        return {"error": "MiniWorld not set up: run `bash scripts/setup_miniworld.sh` (needs xvfb)"}
    code = MINIWORLD_PEER.replace("SECONDS", repr(SECONDS))
    out = subprocess.run(
        [xvfb, "-a", "-s", "-screen 0 1024x768x24", str(MINIWORLD_PY), "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"error": f"MiniWorld run failed (exit {out.returncode}): {out.stderr[-500:]}"}
    return {**json.loads(lines[-1]), "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="re-run every piece")
    parser.add_argument("--report", action="store_true", help="print the stored bench/results/nav.json and exit")
    args = parser.parse_args()
    if args.report:
        print((ROOT / "results" / "nav.json").read_text())
        return
    torch.set_num_threads(1)
    report: dict[str, Any] = {"code": code_state(*SOURCES), "machine": machine()}
    peer = run_piece(RESULTS, "miniworld", miniworld, args.force)
    sim_report: dict[str, Any] = {"steps_per_s": {}, "frames_per_s": {}, "speedup_vs_miniworld": {}}
    sim_report["miniworld_steps_per_s"] = peer.get("steps_per_s", peer.get("error"))
    report["sim"] = sim_report
    for n in NUM_ENVS:
        sim = run_piece(RESULTS, f"sim_steps_{n}", lambda n=n: env_steps(n), args.force)
        frames = run_piece(RESULTS, f"caster_frames_{n}", lambda n=n: caster_frames(n), args.force)
        sim_report["steps_per_s"][str(n)] = round(sim["steps_per_s"], 1)
        sim_report["frames_per_s"][str(n)] = round(frames["frames_per_s"], 1)
        if "steps_per_s" in peer:
            sim_report["speedup_vs_miniworld"][str(n)] = round(sim["steps_per_s"] / peer["steps_per_s"], 2)
    # The learning curves and ReLIC's latencies take hours and have their own resumable bench; the
    # combined report carries what it last wrote, under the keys the issue names.
    learning = ROOT / "results" / "nav_learning.json"
    if learning.exists():
        stored = json.loads(learning.read_text())
        for name in ("relic", "lstm", "random"):
            report[name] = stored.get(name, {})
        report["learning"] = {key: value for key, value in stored.items() if not isinstance(value, dict)}
        report["learning"]["source"] = "bench/nav_learning.py (bench/results/nav_learning.json)"
    (ROOT / "results" / "nav.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
