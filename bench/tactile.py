"""Tactile benchmark: images and force fields per second, with TACTO measured in the same run.

    .venv/bin/python bench/tactile.py                  # run the missing pieces, print one JSON object
    .venv/bin/python bench/tactile.py --force          # re-run every piece
    .venv/bin/python bench/tactile.py --device cuda    # on a GPU, plus TacSL's comparison points

Every measurement (one quantity at one env count on one device, or the TACTO peer) writes its own
file under bench/results/tactile/, so an interrupted run continues where it stopped; the combined
report goes to bench/results/tactile.json (tactile_cuda.json with ``--device cuda``).

The scene: every env is a pinch, two gel pads facing each other with one sphere (radius 6 mm)
between them, pressed 1 mm into each pad, its centre shifted per env by up to +-2 mm along the
pads so the images differ; the sphere slides at 1 cm/s along pad x (shear). Counted per pad:
an image is one pad's RGB frame, a force field one pad's rows x cols x 3 field, so a call for
N envs makes 2N of either. Timed end to end through ``TactileSensor.image`` (into a reused ``out=`` batch) / ``force_field``
(input checks included) after warm-up calls (kernel compile or cache load). Images are rendered
with the imager's default threads (every core; ``render_threads`` in each piece), force fields on
one thread; torch runs on one thread.

Keys: ``images_per_s.<n>`` (160x120), ``images_per_s_policy.<n>`` (the config's policy
resolution, 80x60), ``force_fields_per_s.<n>`` (20x25; velocity shear, TacSL's model) and
``force_fields_per_s_stick_slip.<n>``, for n in 1, 64, 1024; ``tacto_images_per_s`` (TACTO 0.0.3,
pyrender on OSMesa, 160x120, a sphere pressed into its DIGIT gel: bench/tacto_peer.py in
bench/.venv-tacto, made by scripts/setup_tacto.sh) and ``speedup_vs_tacto.<n>`` (and
``speedup_vs_tacto_policy.<n>``): the ratio measured in alternating rounds, suite then TACTO, the
median round kept, because the machine is shared and its load drifts within a run
(``speedup_vs_tacto_unpaired`` divides the two separately measured rates). ``*_per_cpu_s`` and
``speedup_vs_tacto_cpu_time`` count process CPU time instead of the wall clock (TACTO's includes
its renderer's threads): the work per image, steadier when other jobs share the cores. With a CUDA
device also ``images_per_s.512`` and ``force_fields_per_s_10x10.32768`` beside TacSL's published
1,631 images/s and 1,541,043 fields/s (one RTX 3090).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import warp as wp  # noqa: E402

wp.config.quiet = True

from pieces import code_state, machine, run_piece  # noqa: E402  (bench/pieces.py, next to this script)

from embodied.sim.tactile import Sphere, TactileSensorCfg  # noqa: E402
from embodied.sim.tactile.sensor import TactileSensor  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "tactile"
TACTO_PY = ROOT / ".venv-tacto" / "bin" / "python"
ENV_SIZES = (1, 64, 1024)
SENSORS = 2
IMAGE_RES = (120, 160)  # (H, W): TACTO's default DIGIT frame, the comparison size
RADIUS, DEPTH, SPREAD, SLIDE = 0.006, 0.001, 0.002, 0.01  # m, m, m, m/s
TACSL = {"images_per_s_512": 1631.0, "force_fields_10x10_per_s_32768": 1541043.0}  # TacSL paper, RTX 3090


# ---------------------------------------------------------------------------------------------
# the scene and the timer


def pinch_scene(num_envs: int, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Poses and velocities of the pinch: pad 0 at the origin facing +z, pad 1 facing it (turned
    half a turn about x) at ``2 (RADIUS - DEPTH)``, the sphere between them, shifted per env."""
    g = torch.Generator().manual_seed(seed)
    pad = torch.zeros(num_envs, SENSORS, 7)
    pad[:, 0, 3] = 1.0  # identity quaternion (wxyz)
    pad[:, 1, 2] = 2.0 * (RADIUS - DEPTH)
    pad[:, 1, 4] = 1.0  # quaternion (0, 1, 0, 0): pi about x, so its +z (gel normal) points down
    obj = torch.zeros(num_envs, 1, 7)
    obj[:, 0, :2] = (torch.rand(num_envs, 2, generator=g) * 2.0 - 1.0) * SPREAD
    obj[:, 0, 2] = RADIUS - DEPTH
    obj[:, 0, 3] = 1.0
    pad_vel = torch.zeros(num_envs, SENSORS, 6)
    obj_vel = torch.zeros(num_envs, 1, 6)
    obj_vel[:, 0, 0] = SLIDE
    return {k: v.to(device) for k, v in {"pad": pad, "obj": obj, "pad_vel": pad_vel, "obj_vel": obj_vel}.items()}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], items_per_call: int, seconds: float, device: str, rounds: int = 3) -> dict[str, Any]:
    """Items per second of ``fn``: two warm-up calls, then ``rounds`` windows of ``seconds / rounds``
    (at least one call each); the median window is kept, so a load spike on the shared machine
    during one window does not decide the figure. ``per_cpu_s`` counts the process's CPU time
    (all its threads) instead of the wall clock: the work done, much less sensitive to other jobs
    taking turns on the cores (on CUDA it counts only the host's share)."""
    for _ in range(2):
        fn()
    sync(device)
    rates, cpu_rates, calls_total = [], [], 0
    for _ in range(rounds):
        calls, t0, c0 = 0, time.perf_counter(), time.process_time()
        while calls < 1 or time.perf_counter() - t0 < seconds / rounds:
            fn()
            sync(device)  # only on CUDA: the rate must include finishing the work
            calls += 1
        rates.append(calls * items_per_call / (time.perf_counter() - t0))
        cpu_rates.append(calls * items_per_call / max(time.process_time() - c0, 1e-9))
        calls_total += calls
    return {"per_s": statistics.median(rates), "per_cpu_s": statistics.median(cpu_rates), "rounds": rates,
            "cpu_rounds": cpu_rates, "calls": calls_total, "items_per_call": items_per_call}  # fmt: skip


def stamp() -> dict[str, Any]:
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_1min": os.getloadavg()[0]}


# ---------------------------------------------------------------------------------------------
# pieces


def image_piece(num_envs: int, device: str, resolution: str, seconds: float) -> dict[str, Any]:
    cfg = TactileSensorCfg(sensor_resolution=IMAGE_RES)
    sensor = TactileSensor(cfg, num_envs=num_envs, num_sensors=SENSORS, shapes=[Sphere(RADIUS)], device=device)
    scene = pinch_scene(num_envs, device)
    first = sensor.image(scene["pad"], scene["obj"], resolution=resolution)  # type: ignore[arg-type]
    # the sphere must show: otherwise we would be timing a copy of the background
    background = sensor._imager.background(resolution)
    changed = (first.int() - background.int()).abs().amax(-1).gt(10).float().mean().item()
    if changed < 0.01:
        raise RuntimeError(f"tactile bench: the pressed sphere changed only {changed:.2%} of the pixels")
    # a render loop reuses one output batch (out=), as a task stepping many times would
    out = torch.empty_like(first)
    result = timed(lambda: sensor.image(scene["pad"], scene["obj"], resolution=resolution, out=out),
                   num_envs * SENSORS, seconds, device)  # fmt: skip
    return {**result, "resolution": list(first.shape[2:4]), "contact_pixels_fraction": changed,
            "render_threads": sensor._imager.threads, **stamp()}  # fmt: skip


def force_piece(num_envs: int, device: str, rows: int, cols: int, shear_model: str, seconds: float) -> dict[str, Any]:
    cfg = TactileSensorCfg(rows=rows, cols=cols, shear_model=shear_model)  # type: ignore[arg-type]
    sensor = TactileSensor(cfg, num_envs=num_envs, num_sensors=SENSORS, shapes=[Sphere(RADIUS)], device=device)
    scene = pinch_scene(num_envs, device)
    args = (scene["pad"], scene["pad_vel"], scene["obj"], scene["obj_vel"])
    forces = sensor.force_field(*args, dt=0.01)
    normal = forces[..., 2].sum(dim=(2, 3))  # (N, S) total normal force per pad, N
    if bool((normal <= 0).any()):
        raise RuntimeError("tactile bench: a pad reads no normal force; the sphere is not pressed in")
    result = timed(lambda: sensor.force_field(*args, dt=0.01), num_envs * SENSORS, seconds, device)
    return {**result, "taxels": [rows, cols], "shear_model": shear_model,
            "mean_pad_normal_force_n": normal.mean().item(), **stamp()}  # fmt: skip


def tacto_piece(frames: int, rounds: int = 3) -> dict[str, Any]:
    """Runs bench/tacto_peer.py in TACTO's own venv; raises when that venv is missing."""
    if not TACTO_PY.exists():
        raise FileNotFoundError(f"{TACTO_PY} is missing: create it with `bash scripts/setup_tacto.sh`")
    env = {**os.environ, "PYOPENGL_PLATFORM": "osmesa"}
    cmd = [str(TACTO_PY), str(ROOT / "tacto_peer.py"), "--frames", str(frames), "--rounds", str(rounds),
           "--width", str(IMAGE_RES[1]), "--height", str(IMAGE_RES[0])]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"TACTO peer failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["contact"] or result["indented_pixels_fraction"] <= 0:
        raise RuntimeError(f"TACTO peer rendered no indentation: {result}")
    return {**result, **stamp()}


def paired_piece(envs: list[int], device: str, seconds: float, rounds: int, tacto_frames: int) -> dict[str, Any]:
    """Speed-ups over TACTO measured in alternation: each round times the suite's images (sensor and
    policy resolution, every env count) for ``seconds`` each, then TACTO for ``tacto_frames``; the
    ratio is taken within a round and the median round kept. On a shared machine whose load
    changes over a minute this is steadier than dividing rates measured a minute apart."""
    benches = {}
    for n in envs:
        sensor = TactileSensor(TactileSensorCfg(sensor_resolution=IMAGE_RES), num_envs=n, num_sensors=SENSORS,
                               shapes=[Sphere(RADIUS)], device=device)  # fmt: skip
        scene = pinch_scene(n, device)
        for res in ("sensor", "policy"):
            out = sensor.image(scene["pad"], scene["obj"], resolution=res)  # the reused output batch
            benches[(res, n)] = (
                lambda s=sensor, sc=scene, r=res, o=out: s.image(sc["pad"], sc["obj"], resolution=r, out=o),
                n * SENSORS,
            )
    rows: list[dict[str, Any]] = []
    for _ in range(rounds):
        row = {
            f"{res}.{n}": timed(fn, items, seconds, device, rounds=1)["per_s"]
            for (res, n), (fn, items) in benches.items()
        }
        row["tacto"] = tacto_piece(tacto_frames, rounds=1)["tacto_images_per_s"]
        rows.append(row)
    ratios = {key: statistics.median(r[key] / r["tacto"] for r in rows) for key in rows[0] if key != "tacto"}
    return {
        "speedup_vs_tacto": {k.split(".")[1]: v for k, v in ratios.items() if k.startswith("sensor.")},
        "speedup_vs_tacto_policy": {k.split(".")[1]: v for k, v in ratios.items() if k.startswith("policy.")},
        "rounds": rows,
        **stamp(),
    }


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda' ('cuda:1', ...)")
    parser.add_argument("--force", action="store_true", help="re-run pieces that already have results")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    parser.add_argument("--tacto-frames", type=int, default=100, help="frames TACTO renders in its timing")
    parser.add_argument("--paired-rounds", type=int, default=5, help="alternating suite/TACTO rounds")
    parser.add_argument("--envs", default=",".join(map(str, ENV_SIZES)), help="comma-separated env counts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("tactile bench: --device cuda asked for, but torch sees no CUDA device")
    dev = "cuda" if device.startswith("cuda") else "cpu"
    envs = [int(n) for n in args.envs.split(",")]

    def piece(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return run_piece(RESULTS, f"{dev}_{name}", fn, args.force)

    report: dict[str, Any] = {"device": device if dev == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})"}
    report["images_per_s"], report["images_per_s_policy"] = {}, {}
    report["force_fields_per_s"], report["force_fields_per_s_stick_slip"] = {}, {}
    cpu: dict[str, dict[str, float]] = {"images": {}, "images_policy": {}, "force_fields": {}}
    for n in envs:
        images = piece(f"images_{n}", lambda n=n: image_piece(n, device, "sensor", args.seconds))
        policy = piece(f"policy_images_{n}", lambda n=n: image_piece(n, device, "policy", args.seconds))
        forces = piece(f"force_20x25_{n}", lambda n=n: force_piece(n, device, 20, 25, "velocity", args.seconds))
        stick = piece(
            f"force_20x25_stick_slip_{n}", lambda n=n: force_piece(n, device, 20, 25, "stick_slip", args.seconds)
        )
        report["images_per_s"][str(n)] = images["per_s"]
        report["images_per_s_policy"][str(n)] = policy["per_s"]
        report["force_fields_per_s"][str(n)] = forces["per_s"]
        report["force_fields_per_s_stick_slip"][str(n)] = stick["per_s"]
        for key, result in (("images", images), ("images_policy", policy), ("force_fields", forces)):
            if "per_cpu_s" in result:  # pieces written before CPU time was recorded lack it
                cpu[key][str(n)] = result["per_cpu_s"]
    report["images_per_cpu_s"] = cpu["images"]
    report["images_per_cpu_s_policy"] = cpu["images_policy"]
    report["force_fields_per_cpu_s"] = cpu["force_fields"]
    if dev == "cuda":  # TacSL's published comparison points
        report["images_per_s"]["512"] = piece("images_512", lambda: image_piece(512, device, "sensor", args.seconds))[
            "per_s"
        ]
        report["force_fields_per_s_10x10"] = {
            "32768": piece("force_10x10_32768", lambda: force_piece(32768, device, 10, 10, "velocity", args.seconds))[
                "per_s"
            ]
        }
        report["tacsl_published"] = TACSL

    # TACTO runs on the CPU whatever --device says; its piece is shared by CPU and CUDA reports.
    try:
        tacto = run_piece(RESULTS, "tacto", lambda: tacto_piece(args.tacto_frames), args.force)
        report["tacto_images_per_s"] = tacto["tacto_images_per_s"]
        report["tacto"] = tacto
        # the headline ratio is measured in alternation (paired_piece); the plain quotient of the
        # rates above, measured up to a minute apart, is kept beside it
        report["speedup_vs_tacto_unpaired"] = {
            n: v / tacto["tacto_images_per_s"] for n, v in report["images_per_s"].items()
        }
        paired = piece(
            "tacto_paired",
            lambda: paired_piece(envs, device, args.seconds / 3, args.paired_rounds, args.tacto_frames // 3),
        )
        report["speedup_vs_tacto"] = paired["speedup_vs_tacto"]
        report["speedup_vs_tacto_policy"] = paired["speedup_vs_tacto_policy"]
        report["tacto_paired_rounds"] = paired["rounds"]
        # per CPU-second on both sides (TACTO's count includes llvmpipe's threads): the work each
        # image costs, steadier than wall-clock rates while other jobs share the cores
        if tacto.get("tacto_images_per_cpu_s"):
            report["tacto_images_per_cpu_s"] = tacto["tacto_images_per_cpu_s"]
            report["speedup_vs_tacto_cpu_time"] = {
                n: v / tacto["tacto_images_per_cpu_s"] for n, v in report["images_per_cpu_s"].items()
            }
    except FileNotFoundError as err:
        report["tacto_images_per_s"], report["speedup_vs_tacto"] = None, None
        report["tacto_note"] = str(err)

    report["setup"] = {
        "sensors_per_env": SENSORS,
        "image_resolution": list(IMAGE_RES),
        "policy_resolution": list(TactileSensorCfg().policy_resolution),
        "taxels": [20, 25],
        "profile": TactileSensorCfg().profile,
        "scene": f"sphere r={RADIUS * 1e3:g} mm pressed {DEPTH * 1e3:g} mm into both pads of a pinch, "
        f"+-{SPREAD * 1e3:g} mm shift per env, sliding {SLIDE * 1e2:g} cm/s",
        "seconds_per_measurement": args.seconds,
    }
    report["versions"] = {
        "warp": wp.config.version,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    report["machine"] = machine(device)
    report["code"] = code_state("sim/tactile", "assets/tactile")
    out = ROOT / "results" / ("tactile.json" if dev == "cpu" else "tactile_cuda.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
