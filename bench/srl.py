"""Sequence-RL benchmark: FAS and full-rate return of SAC, SAC with action repeat, SRL-J and the planner.

    .venv/bin/python bench/srl.py                                   # the missing pieces, then the JSON
    .venv/bin/python bench/srl.py --tasks InvertedPendulum --seeds 1 --jobs 2
    .venv/bin/python bench/srl.py --report                          # print bench/results/srl.json

Methods, each trained on a task for the same number of *primitive* env steps (a decision that
plays k primitive steps counts k; ``TrainCfg.total_steps``):

* ``sac1``: SAC deciding every primitive step.
* ``sac4``, ``sac8``, ``sac16``: SAC deciding every J steps and repeating its action
  (the decision-rate adapter, ``adapters.rate.steps=J``).
* ``srl4``, ``srl8``, ``srl16``: SRL-J (``policies/srl.py``), a GRU actor emitting J actions per
  decision, trained through the same adapter with its sequence actions.
* ``planner``: no training of its own: CEM over action sequences through the ``srl8`` run's
  learned model, the critics as terminal value (``policies/srl_planner.py``).

Every trained policy is then scored by the Frequency-Averaged Score (``policies/fas.py``: 1, 2,
4, 6, ..., 30 primitive steps per decision, ``--episodes`` per length, the authors'
normalisation); the *full-rate return* is the FAS curve's value at one step per decision.

Budgets (primitive steps; ``--budget-scale`` multiplies them for quick checks): InvertedPendulum
20k, Reacher 50k, Hopper 150k, HalfCheetah 150k (only with ``--tasks`` naming it).

Every (task, method, seed) is one piece, bench/results/srl/<Task>_<method>_seed<k>.json (``--results``
moves the folder: quick checks with ``--budget-scale`` belong elsewhere), with its
learning curve, training time and FAS curve; an interrupted piece resumes from its run folder's
last checkpoint (bench/results/srl/runs/, which git ignores). Pieces run one after another, or
``--jobs`` at a time as Ray tasks of one core each (``bench/pieces.py: run_pieces``), or on a Ray
cluster with ``--ray-address HOST:PORT`` (the scale-out layer's settings: ``docs/scaleout.md``). The combined report, bench/results/srl.json, has
``<Task>.fas.<method>`` and ``<Task>.return.<method>`` (means over the seeds present, with
``..._per_seed``), ``steps_per_s.<method>`` (training primitive steps per second, the median over
the pieces, every piece on one core; per piece under ``<Task>.steps_per_s``) and
``cost_per_step_vs_sac1.<method>`` (sac1's rate over the method's for the same task and seed,
whose pieces ran side by side, the median over those pairs: the issue allows sequence training 1.5x), ``budget``, ``seeds`` and ``missing``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from pieces import code_state, learning_curve, machine, run_pieces  # noqa: E402  (bench/pieces.py, next to this script)

from embodied.config import parse_overrides  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BUDGETS = {"InvertedPendulum": 20_000, "Reacher": 50_000, "Hopper": 150_000, "HalfCheetah": 150_000}
DEFAULT_TASKS = ("InvertedPendulum", "Reacher", "Hopper")
METHODS = ("sac1", "sac4", "sac8", "sac16", "srl4", "srl8", "srl16", "planner")
PLANNER_FROM = "srl8"


def task_id(task: str) -> str:
    return f"Control/{task}-v0"


def piece_path(results: Path, task: str, method: str, seed: int) -> Path:
    return results / "srl" / f"{task}_{method}_seed{seed}.json"


def run_dir_of(results: Path, task: str, method: str, seed: int) -> Path:
    return results / "srl" / "runs" / f"{task}_{method}_seed{seed}"


SAC_WARMUP_STEPS = 5000
"""Primitive steps of uniform random actions before SAC learns (its default ``learning_starts``)."""


def method_setup(method: str, srl_overrides: dict[str, Any] | None = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(algo, learner overrides, adapters) of a trained method.

    Every method explores with uniform random actions for the same ``SAC_WARMUP_STEPS`` primitive
    steps of its budget. SAC counts ``learning_starts`` in stored transitions, one per decision, so
    SAC with action repeat J gets ``SAC_WARMUP_STEPS / J`` of them (with the default it would wait
    20k primitive steps at J=4, InvertedPendulum's whole budget); SRL counts primitive steps as the
    budget does."""
    kind, j = method[:3], int(method[3:])
    if kind == "sac":
        if j == 1:
            return "sac", {}, {}
        return "sac", {"learning_starts": SAC_WARMUP_STEPS // j}, {"rate": {"steps": j}}
    # SRL asks the loop for its own rate adapter
    return "srl", {"J": j, "learning_starts": SAC_WARMUP_STEPS, **(srl_overrides or {})}, {}


def measure_piece(
    results: Path, task: str, method: str, seed: int, budget: int, episodes: int, srl_overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train (or resume) one method on one task and seed, score it by FAS; the piece's JSON object."""
    from embodied.policies.fas import FAS_LENGTHS, fas_evaluate
    from embodied.policies.srl_planner import planner_from_checkpoint
    from embodied.policies.train import TrainCfg, load_policy, train

    torch.set_num_threads(1)
    tid = task_id(task)
    out: dict[str, Any] = {"task": tid, "method": method, "seed": seed, "env_steps": budget}
    if method == "planner":
        source = run_dir_of(results, task, PLANNER_FROM, seed) / "checkpoint.pt"
        if not source.exists():
            raise FileNotFoundError(f"planner on {task} seed {seed} needs the {PLANNER_FROM} piece first ({source})")
        policy: Any = planner_from_checkpoint(source)
        out["planner_of"] = PLANNER_FROM
    else:
        algo, overrides, adapters = method_setup(method, srl_overrides)
        run_dir = run_dir_of(results, task, method, seed)
        resume = run_dir if (run_dir / "checkpoint.pt").exists() else None
        cfg = TrainCfg(total_steps=budget, seed=seed, run_dir=str(run_dir), eval_episodes=0, progress=False)
        wall, cpu = time.perf_counter(), time.process_time()
        before = _steps_done(run_dir)
        train(tid, algo, None if resume else cfg, None, overrides, adapters, resume=resume,
              total_steps=budget if resume else None)  # fmt: skip
        trained = budget - before
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        out |= {
            "algo": algo,
            "learner_overrides": overrides,
            "adapters": adapters,
            "steps_trained_this_session": trained,
            "train_seconds_this_session": round(wall, 1),
            "steps_per_s": trained / wall if trained else None,
            "steps_per_cpu_s": trained / cpu if trained else None,
            "curve": learning_curve(run_dir),
        }
        policy, _ = load_policy(run_dir / "checkpoint.pt")
    fas = fas_evaluate(tid, policy, FAS_LENGTHS, episodes, seed=10_000 + seed)
    out |= {
        "fas": fas["score"],
        "return_full_rate": fas["returns"][0],
        "fas_curve": fas["curve"],
        "fas_normalisation": {"max_reward": fas["max_reward"], "shift": fas["shift"]},
        "episodes_per_length": episodes,
        "machine": machine(),
        "code": code_state("policies", "sim2real", "tasks/control"),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return out


def _steps_done(run_dir: Path) -> int:
    """Env steps a run folder's checkpoint has reached (0 without one)."""
    if not (run_dir / "checkpoint.pt").exists():
        return 0
    from embodied.policies.checkpoint import load_checkpoint

    return int(load_checkpoint(run_dir)["global_step"])


def report(results: Path, tasks: list[str], seeds: list[int]) -> dict[str, Any]:
    """Combine the pieces on disk (means over the seeds present)."""
    out: dict[str, Any] = {"budget": {}, "seeds": [], "steps_per_s": {}, "cost_per_step_vs_sac1": {}}
    rates: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}  # sac1's rate over the method's, per task and seed
    present: set[int] = set()
    for task in tasks:
        entry: dict[str, Any] = {"fas": {}, "return": {}, "fas_per_seed": {}, "return_per_seed": {}, "fas_curves": {}}
        for method in METHODS:
            pieces = [json.loads(p.read_text()) for p in sorted((results / "srl").glob(f"{task}_{method}_seed*.json"))]
            if not pieces:
                continue
            present |= {p["seed"] for p in pieces}
            entry["fas"][method] = statistics.mean(p["fas"] for p in pieces)
            entry["return"][method] = statistics.mean(p["return_full_rate"] for p in pieces)
            entry["fas_per_seed"][method] = {p["seed"]: p["fas"] for p in pieces}
            entry["return_per_seed"][method] = {p["seed"]: p["return_full_rate"] for p in pieces}
            entry["fas_curves"][method] = {p["seed"]: p["fas_curve"] for p in pieces}
            # a resumed piece's rate covers only its last session's steps; still a rate on one core
            measured = {p["seed"]: p["steps_per_s"] for p in pieces if p.get("steps_per_s")}
            if measured:
                rates.setdefault(method, []).extend(measured.values())
                entry.setdefault("steps_per_s", {})[method] = measured
        sac1 = entry.get("steps_per_s", {}).get("sac1", {})
        for method, measured in entry.get("steps_per_s", {}).items():
            ratios.setdefault(method, []).extend(sac1[s] / v for s, v in measured.items() if s in sac1)
        if entry["fas"]:
            out[task] = entry
            out["budget"][task] = BUDGETS[task]
    for method, values in rates.items():
        out["steps_per_s"][method] = statistics.median(values)
    # Paired by task and seed: a seed's pieces run side by side, so they share the machine's load,
    # which moves every rate by a third or more (one job per core against one alone).
    out["cost_per_step_vs_sac1"] = {m: statistics.median(v) for m, v in ratios.items() if v}
    out["seeds"] = sorted(present)
    out["missing"] = [
        f"{t}_{m}_seed{s}" for t in tasks for m in METHODS for s in seeds if not piece_path(results, t, m, s).exists()
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help=f"comma-separated, from {list(BUDGETS)}")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    parser.add_argument("--episodes", type=int, default=10, help="FAS episodes per sequence length")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every task's budget (quick checks)")
    parser.add_argument("--jobs", type=int, default=1, help="pieces run at once, each a Ray task on one core of a"
                        " private Ray instance (1: one after another in this process)")
    parser.add_argument("--ray-address", default="", help="run the pieces on this Ray cluster (HOST:PORT; its nodes"
                        " must share the results folder)")
    parser.add_argument("--report", action="store_true", help="print the stored report and exit")
    parser.add_argument("--srl", action="append", default=[], metavar="KEY=VALUE",
                        help="an SRL setting for the srl methods (e.g. actor_every=0); use with --results")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results folder (pieces in <results>/srl/)")
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    for name, chosen, known in (("tasks", tasks, BUDGETS), ("methods", methods, METHODS)):
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            parser.error(f"unknown {name} {unknown}; choose from {list(known)}")
    if args.jobs < 1 or args.episodes < 1 or args.budget_scale <= 0:
        parser.error("--jobs and --episodes must be >= 1 and --budget-scale > 0")
    results, report_path = args.results, args.results / "srl.json"
    srl_overrides = parse_overrides(args.srl)  # strings: the learner's config parses them as on the command line
    if args.report:
        print(report_path.read_text() if report_path.exists() else json.dumps(report(results, tasks, seeds), indent=2))
        return 0

    (results / "srl").mkdir(parents=True, exist_ok=True)
    todo = [(t, m, s) for t in tasks for m in methods for s in seeds if not piece_path(results, t, m, s).exists()]
    # the planner plans with the srl8 run's model: its pieces go after every trained one
    phases = [[p for p in todo if p[1] != "planner"], [p for p in todo if p[1] == "planner"]]
    failures = []
    for phase in phases:
        calls = {piece_path(results, t, m, s).stem: partial(measure_piece, results, t, m, s,
                                                             max(1, round(BUDGETS[t] * args.budget_scale)),
                                                             args.episodes, srl_overrides) for t, m, s in phase}
        failures += run_pieces(results / "srl", calls, args.jobs, args.ray_address)
    combined = report(results, tasks, seeds)
    combined["budget_scale"] = args.budget_scale
    report_path.write_text(json.dumps(combined, indent=2))
    print(json.dumps(combined, indent=2))
    if failures:
        print("failed pieces:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
