"""Beam benchmark: TBSAC and the physicists' baselines, zero-shot on the 'real machine' twins.

    .venv/bin/python bench/beam.py               # run the missing pieces, print one JSON object
    .venv/bin/python bench/beam.py --force       # re-run every piece
    .venv/bin/python bench/beam.py --report      # print the combined report without running anything

Every (task, controller) pair and every speed measurement writes its own file under
bench/results/beam/, so an interrupted run continues where it stopped; the combined report goes
to bench/results/beam.json.

Protocol. Each twin task (``Beam/OrbitCorrection-CM{1,2,3}-Twin-v0``,
``Beam/RFQTransmission-LPI-Twin-v0``) is built with ``--draws`` envs (200) and reset once with a
fixed seed: 200 error draws of the twin, none ever trained on ("zero-shot"). Each controller
runs one episode per draw (at most the task's 50 steps). Every controller uses the twin's
operator calibration (polarity table, current scale) the same way: model-based ones put it in
their model, the trained policy's increments are divided by it (``CalibratedPolicy``); the
response-matrix baseline measures the machine and needs none. All go through the sim2real
safety layer. Machine evaluations are the task's own count (``info["machine_evaluations"]``),
the reset's reading and probe step (2) included, and, for the response-matrix baseline, its
probing.

Keys:

- ``orbit.<CM>.<controller>.success``: fraction of draws whose orbit RMS as read is below 1 mm at
  the episode's end (the task itself terminates at 0.5 mm, its success threshold);
  ``median_evals``: median over those draws of the machine evaluations spent when the RMS first
  read below 1 mm; ``final_rms_mm``: median final RMS as read (``final_true_rms_mm``: of the
  beam itself, without BPM offsets and noise).
- ``rfq.<controller>.success``: fraction of draws where the task reported success (read
  transmission >= 85 %) within 30 machine evaluations; ``median_evals`` over those;
  ``final_transmission``: median true transmission at the episode's end.
- ``steps_per_s.<n>``: env steps per second of ``Beam/OrbitCorrection-CM1-v0`` at ``num_envs``
  n (random actions, one CPU thread), summed over envs, wall clock; ``steps_per_cpu_s.<n>``: the
  same per CPU second of the bench process (the machine is shared; ``load_avg_1min`` is recorded).

Controllers: ``tbsac`` (the shipped ``assets/policies/beam_<task>_tbsac.pt``; ``tbsac_uncalibrated``:
the same without the operators' calibration, to show what it is worth), ``svd``
(response-matrix measurement + Tikhonov SVD), ``gradient`` (cheetah model fit + L-BFGS),
``coordinate`` (RFQ: BPM centring + greedy coordinate search), ``model`` (RFQ: fit the errors of
an envelope model on cheetah to every reading, move to the fitted model's best transmission).

Run one family's missing pieces with ``--only rfq`` (or ``orbit``, ``speed``): the other
families' pieces are read from their files, and the combined report is rewritten.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from pieces import code_state, machine, run_piece  # noqa: E402  (bench/pieces.py, next to this script)

import embodied  # noqa: E402
from embodied.assets import asset_path  # noqa: E402
from embodied.policies.beam_baselines import (  # noqa: E402
    CalibratedPolicy,
    ModelGradient,
    ResponseMatrixSVD,
    RFQCoordinateSearch,
    RFQModelFit,
)
from embodied.policies.train import load_policy  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "beam"
CMS = ("CM1", "CM2", "CM3")
ORBIT_SUCCESS_MM = 1.0
RFQ_EVAL_BUDGET = 30
SEED = 2026
RFQ_TWIN = "Beam/RFQTransmission-LPI-Twin-v0"


def shipped_policy(name: str) -> Path:
    return Path(asset_path("policies")) / f"beam_{name}_tbsac.pt"


def orbit_controllers(cm: str) -> dict[str, Callable[[Any], Any]]:
    def tbsac(env: Any) -> Any:
        learner, _ = load_policy(shipped_policy(cm.lower()))
        return CalibratedPolicy(learner, env)

    def tbsac_uncalibrated(env: Any) -> Any:  # what the calibration is worth
        learner, _ = load_policy(shipped_policy(cm.lower()))
        return CalibratedPolicy(learner, env, calibrate=False)

    return {
        "tbsac": tbsac,
        "svd": ResponseMatrixSVD,
        "gradient": ModelGradient,
        "tbsac_uncalibrated": tbsac_uncalibrated,
    }


def rfq_controllers() -> dict[str, Callable[[Any], Any]]:
    def tbsac(env: Any) -> Any:
        learner, _ = load_policy(shipped_policy("rfq"))
        return CalibratedPolicy(learner, env)

    return {"tbsac": tbsac, "coordinate": RFQCoordinateSearch, "model": RFQModelFit}


def run_episodes(task_id: str, make_controller: Callable[[Any], Any], draws: int, seed: int) -> dict[str, torch.Tensor]:
    """One episode on each of ``draws`` twin draws (one batched env); per-draw results."""
    env = embodied.make(task_id, num_envs=draws, seed=seed)
    obs, _ = env.reset(seed=seed)
    controller = make_controller(env)
    orbit = "Orbit" in task_id
    done = torch.zeros(draws, dtype=torch.bool)
    first = torch.full((draws,), -1, dtype=torch.long)
    final = torch.zeros(draws)
    final_true = torch.zeros(draws)
    final_evals = torch.zeros(draws, dtype=torch.long)
    success = torch.zeros(draws, dtype=torch.bool)
    while not bool(done.all()):
        with torch.no_grad():
            action = controller.act(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(action)
        ended = terminated | truncated
        evals = info["machine_evaluations"]
        if orbit:
            reached = info["orbit_rms_mm"] < ORBIT_SUCCESS_MM
        else:
            reached = info["success"] & (evals <= RFQ_EVAL_BUDGET)
        hit = ~done & (first < 0) & reached
        first[hit] = evals[hit]
        new = ~done & ended
        if orbit:
            final[new] = info["orbit_rms_mm"][new]
            final_true[new] = info["true_orbit_rms_mm"][new]
            success[new] = info["orbit_rms_mm"][new] < ORBIT_SUCCESS_MM
        else:
            final[new] = info["transmission"][new]
            final_true[new] = info["transmission"][new]
            success[new] = first[new] >= 0
        final_evals[new] = evals[new]
        done |= new
        controller.episodes_ended(ended)
    env.close()
    return {"success": success, "first": first, "final": final, "final_true": final_true, "evals": final_evals}


def summarise(result: dict[str, torch.Tensor], orbit: bool) -> dict[str, Any]:
    ok = result["success"]
    evals = result["first"][ok & (result["first"] >= 0)].float()
    out: dict[str, Any] = {
        "draws": int(ok.numel()),
        "success": round(float(ok.float().mean()), 4),
        "median_evals": float(evals.median()) if evals.numel() else None,
        "p90_evals": float(evals.quantile(0.9)) if evals.numel() else None,
        "median_episode_evals": float(result["evals"].float().median()),
    }
    if orbit:
        out["final_rms_mm"] = round(float(result["final"].median()), 4)
        out["final_rms_mm_p90"] = round(float(result["final"].quantile(0.9)), 4)
        out["final_true_rms_mm"] = round(float(result["final_true"].median()), 4)
    else:
        out["final_transmission"] = round(float(result["final"].median()), 4)
        out["final_transmission_p10"] = round(float(result["final"].quantile(0.1)), 4)
    return out


def control_piece(task_id: str, make_controller: Callable[[Any], Any], draws: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = run_episodes(task_id, make_controller, draws, SEED)
    out = summarise(result, "Orbit" in task_id)
    out.update({"task_id": task_id, "seed": SEED, "seconds": round(time.perf_counter() - t0, 1), **stamp()})
    return out


def speed_piece(num_envs: int, seconds: float) -> dict[str, Any]:
    env = embodied.make("Beam/OrbitCorrection-CM1-v0", num_envs=num_envs, seed=0)
    env.reset(seed=0)
    actions = [env.random_action() for _ in range(8)]
    for a in actions[:3]:
        env.step(a)  # warm-up
    steps, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        env.step(actions[steps % len(actions)])
        steps += 1
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    # Per CPU second of this process too: on a shared machine the wall-clock rate mostly measures the load.
    return {
        "num_envs": num_envs,
        "steps_per_s": round(steps * num_envs / elapsed, 1),
        "steps_per_cpu_s": round(steps * num_envs / cpu, 1),
        "calls": steps,
        **stamp(),
    }


def stamp() -> dict[str, Any]:
    return {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(), **code_state()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="re-run pieces that already have results")
    parser.add_argument("--report", action="store_true", help="print bench/results/beam.json and exit")
    parser.add_argument("--draws", type=int, default=200, help="twin error draws per task")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window of each speed measurement")
    parser.add_argument("--only", default="", help="comma-separated subset of: orbit, rfq, speed")
    args = parser.parse_args()
    combined = ROOT / "results" / "beam.json"
    if args.report:
        if not combined.exists():
            raise SystemExit(f"beam bench: no report yet at {combined}; run bench/beam.py first")
        print(combined.read_text())
        return
    torch.set_num_threads(1)
    only = set(filter(None, args.only.split(","))) or {"orbit", "rfq", "speed"}
    unknown = only - {"orbit", "rfq", "speed"}
    if unknown:
        raise SystemExit(f"beam bench: --only takes orbit, rfq, speed; got {sorted(unknown)}")
    report: dict[str, Any] = {"machine": machine(), "draws": args.draws, "orbit": {}, "rfq": {}, "steps_per_s": {}}
    missing: list[str] = []

    def piece(name: str, fn: Callable[[], dict[str, Any]], run: bool) -> dict[str, Any] | None:
        path = RESULTS / f"{name}.json"
        if not run:
            return json.loads(path.read_text()) if path.exists() else None
        return run_piece(RESULTS, name, fn, args.force)

    for cm in CMS:
        task_id = f"Beam/OrbitCorrection-{cm}-Twin-v0"
        for ctrl, make in orbit_controllers(cm).items():
            if ctrl.startswith("tbsac") and not shipped_policy(cm.lower()).exists():
                missing.append(f"{cm} tbsac (no {shipped_policy(cm.lower()).name})")
                continue
            out = piece(
                f"orbit_{cm}_{ctrl}", lambda t=task_id, m=make: control_piece(t, m, args.draws), "orbit" in only
            )
            if out is not None:
                report["orbit"].setdefault(cm, {})[ctrl] = out
    for ctrl, make in rfq_controllers().items():
        if ctrl == "tbsac" and not shipped_policy("rfq").exists():
            missing.append("rfq tbsac (no beam_rfq_tbsac.pt)")
            continue
        out = piece(f"rfq_{ctrl}", lambda m=make: control_piece(RFQ_TWIN, m, args.draws), "rfq" in only)
        if out is not None:
            report["rfq"][ctrl] = out
    for n in (1, 1024):
        out = piece(f"speed_{n}", lambda n=n: speed_piece(n, args.seconds), "speed" in only)
        if out is not None:
            report["steps_per_s"][str(n)] = out["steps_per_s"]
            report.setdefault("steps_per_cpu_s", {})[str(n)] = out.get("steps_per_cpu_s")
    if missing:
        report["missing"] = missing
    combined.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
