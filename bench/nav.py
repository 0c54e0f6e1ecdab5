"""Navigation benchmark: env steps per second of Nav/ObjectNav-v0 at 128x128 depth, MiniWorld measured in the same run.

    .venv/bin/python bench/nav.py            # run the missing pieces, print one JSON object
    .venv/bin/python bench/nav.py --force    # re-run every piece
    .venv/bin/python bench/nav.py --device cuda   # on a GPU: 1 to 1024 envs, report in nav_cuda.json

Keys: ``sim.steps_per_s.<n>`` for n = 1, 16, 64 envs: full env steps (Habitat actions through the
agent kernel, one ray-cast launch for all envs' 128x128 depth frames, reward, measures, same-step
autoreset) with random motions (``env.random_action()``: never stop), timed after 20 warm-up steps
for at most ``SECONDS`` and never past the first episode's end (500 steps: every env would reset
at once and build a new house), torch on one thread, Warp's CPU kernels on one thread.
``sim.frames_per_s.<n>``: the ray caster alone (depth only), n frames per launch.
``sim.miniworld_steps_per_s``: MiniWorld 2.1.0's ``MiniWorld-FourRooms-v0`` with 128x128 observations,
random actions, one env (it renders one view per call with OpenGL under Xvfb; bench/.venv-miniworld
from scripts/setup_miniworld.sh). ``sim.speedup_vs_miniworld.<n>`` divides the two. Keys are paths in
the nested JSON object, as in the other benches. With ``--device cuda`` the envs, their agent kernel
and the ray caster run on the GPU (``--envs`` defaults to 1, 16, 64, 256, 1024 there), timed with the
device synchronised; that report, ``bench/results/nav_cuda.json``, divides by the CPU-side MiniWorld
piece measured on this project's 2-core machine.

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
NUM_ENVS_CUDA = (1, 16, 64, 256, 1024)
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


def sync(device: str) -> None:
    """Wait for the GPU's queued work (a rate must include finishing it); nothing on the CPU."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def env_steps(num_envs: int, device: str = "cpu") -> dict[str, Any]:
    env = embodied.make("Nav/ObjectNav-v0", num_envs=num_envs, seed=0, device=device, obs_terms=("depth",))
    env.reset(seed=0)
    for _ in range(20):
        env.step(env.random_action())
    sync(device)
    # every env's episode ends at the same step and the autoreset then builds a new house for each
    # (milliseconds per house, on the CPU): time within the first episode, where nothing resets
    calls_left = env.max_episode_steps - 20 - 1
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS and steps < calls_left:
        env.step(env.random_action())
        steps += 1
    sync(device)
    elapsed = time.perf_counter() - start
    return {"steps_per_s": steps * num_envs / elapsed, "calls": steps, "seconds": elapsed, "machine": machine(device)}


def caster_frames(num_envs: int, device: str = "cpu") -> dict[str, Any]:
    env = embodied.make("Nav/ObjectNav-v0", num_envs=num_envs, seed=0, device=device, obs_terms=("depth",))
    env.reset(seed=0)
    caster, scene, pose = env.caster, env.scene, env.pose
    for _ in range(5):
        caster.render(scene, pose, semantic=False, rgb=False)
    sync(device)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        caster.render(scene, pose, semantic=False, rgb=False)
        calls += 1
    sync(device)
    elapsed = time.perf_counter() - start
    return {"frames_per_s": calls * num_envs / elapsed, "calls": calls, "seconds": elapsed, "machine": machine(device)}


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
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda' ('cuda:1', ...)")
    parser.add_argument("--envs", help="comma-separated env counts (default 1,16,64; on CUDA also 256,1024)")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    out_path = ROOT / "results" / ("nav_cuda.json" if cuda else "nav.json")
    if args.report:
        print(out_path.read_text())
        return
    if cuda and not torch.cuda.is_available():
        raise SystemExit("nav bench: --device cuda asked for, but torch sees no CUDA device")
    envs = [int(n) for n in args.envs.split(",")] if args.envs else NUM_ENVS_CUDA if cuda else NUM_ENVS
    prefix = "cuda_" if cuda else ""  # the CPU pieces keep their names
    torch.set_num_threads(1)
    report: dict[str, Any] = {"code": code_state(*SOURCES), "machine": machine(args.device), "device": args.device}
    # MiniWorld renders with OpenGL on the CPU: its piece is the CPU run's, whatever --device says
    peer = run_piece(RESULTS, "miniworld", miniworld, args.force and not cuda)
    sim_report: dict[str, Any] = {"steps_per_s": {}, "frames_per_s": {}, "speedup_vs_miniworld": {}}
    sim_report["miniworld_steps_per_s"] = peer.get("steps_per_s", peer.get("error"))
    report["sim"] = sim_report
    for n in envs:
        sim = run_piece(RESULTS, f"{prefix}sim_steps_{n}", lambda n=n: env_steps(n, args.device), args.force)
        frames = run_piece(RESULTS, f"{prefix}caster_frames_{n}", lambda n=n: caster_frames(n, args.device), args.force)
        sim_report["steps_per_s"][str(n)] = round(sim["steps_per_s"], 1)
        sim_report["frames_per_s"][str(n)] = round(frames["frames_per_s"], 1)
        if "steps_per_s" in peer:
            sim_report["speedup_vs_miniworld"][str(n)] = round(sim["steps_per_s"] / peer["steps_per_s"], 2)
    # The learning curves and ReLIC's latencies take hours and have their own resumable bench; the
    # combined report carries what it last wrote, under the keys the issue names.
    learning = ROOT / "results" / "nav_learning_best250000.json"
    if learning.exists() and not cuda:
        stored = json.loads(learning.read_text())
        for name in ("relic", "lstm", "random"):
            report[name] = stored.get(name, {})
        report["learning"] = {key: value for key, value in stored.items() if not isinstance(value, dict)}
        report["learning"]["source"] = "bench/nav_learning.py (bench/results/nav_learning_best250000.json)"
    out_path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
