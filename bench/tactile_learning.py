"""Tactile learning benchmark: insertion success of the privileged teacher, AACD and plain AAC.

    .venv/bin/python bench/tactile_learning.py                        # run the missing pieces, write the JSON
    .venv/bin/python bench/tactile_learning.py --methods teacher --seeds 1
    .venv/bin/python bench/tactile_learning.py --report               # print bench/results/tactile_learning.json
    .venv/bin/python bench/tactile_learning.py --jobs 16              # pieces as Ray tasks, one core each

Methods, on ``Tactile/PegInsert-v0`` (round peg, the task's default randomisation):

* ``teacher``: AACD stage 1 only, PPO on ``privileged`` + ``proprio`` (the task computes no
  tactile entries for it, which is 4x faster), ``--teacher-steps`` env steps.
* ``aacd_frozen`` / ``aacd_finetune``: AACD stage 2 from that seed's teacher checkpoint: a fresh
  tactile-image student (soft-argmax CNN, LSTM, MLP; sees ``tactile_image`` + ``proprio``) with the
  teacher's critic frozen or fine-tuned, ``--student-steps`` env steps.
* ``aacd_own_critic``: ``aacd_finetune`` with the critic trained as TacSL's code trains it: its own
  learning rate (1e-4, the student's is 1e-3) and gradient clip, and stage 1's statistics kept.
* ``aac``: the same student and a fresh privileged critic trained together, ``--student-steps``.

Students train and are evaluated with the full image augmentation
(``sim2real.image_augment.full_augmentation``: channel swap, colour jitter, crop, calibration
shift). Success is the task's ``info["success"]`` over ``--eval-episodes`` deterministic episodes
on held-apart seeds; ``success_heldout`` is the same policy on the held-out hexagonal peg.

Every (method, seed) is one piece, bench/results/tactile_learning/<method>_seed<k>.json, with its
learning curve (episodic return against env steps, from the run's TensorBoard log); an
interrupted run continues with the missing pieces. The run folders (checkpoints) go to
bench/results/tactile_learning/runs/, which git ignores (``--results DIR`` puts pieces, runs and
report under DIR instead: longer or shorter budgets tried out belong there). The combined report is
bench/results/tactile_learning.json: ``success.<method>`` and ``success_heldout.<method>`` (mean
over the seeds that have a piece), ``..._per_seed``, ``budget_env_steps.<method>``, ``seeds``.

CPU budget (the default settings; one torch thread per piece, on a 2-core machine shared with
other jobs): teacher 200k env steps (about 7 min at ~480 steps/s, privileged observations only);
students 120k env steps with 60x80 images (~230 steps/s alone, ~100 with three jobs at once:
8-20 min). The full 3-seed table is about 1.5 hours of one core. The students' budget is two
orders of magnitude below TacSL's GPU runs, so their success here is early-training success.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from pieces import learning_curve, run_pieces  # noqa: E402  (bench/pieces.py, next to this script)

from embodied.policies.aacd import CPU_STUDENT  # noqa: E402
from embodied.policies.train import TrainCfg, evaluate, load_policy, train  # noqa: E402
from embodied.sim2real.image_augment import full_augmentation  # noqa: E402

ROOT = Path(__file__).resolve().parent
PIECES = ROOT / "results" / "tactile_learning"
RUNS = PIECES / "runs"
REPORT = ROOT / "results" / "tactile_learning.json"
TASK = "Tactile/PegInsert-v0"
METHODS = ("teacher", "aacd_frozen", "aacd_finetune", "aacd_own_critic", "aac")
OWN_CRITIC: dict[str, Any] = {"critic_mode": "finetune", "critic_learning_rate": 1e-4, "keep_teacher_stats": True}
"""``aacd_own_critic``: the fine-tuned critic as TacSL trains it, on its own Adam rate (1e-4) and gradient
clip, with stage 1's observation and return statistics kept."""
HELDOUT = {"peg_shape": "hex"}

TEACHER_TASK: dict[str, Any] = {"obs_terms": ["proprio", "privileged"]}
STUDENT_TASK: dict[str, Any] = {
    "obs_terms": ["proprio", "tactile_image", "privileged"],
    "image_augment": dataclasses.asdict(full_augmentation()),
}


def use_results_folder(folder: Path) -> None:
    """Put the pieces, their runs and the report under ``folder`` (default: bench/results)."""
    global PIECES, RUNS, REPORT
    PIECES = folder / "tactile_learning"
    RUNS = PIECES / "runs"
    REPORT = folder / "tactile_learning.json"


def piece_path(method: str, seed: int) -> Path:
    return PIECES / f"{method}_seed{seed}.json"


def measure_piece(method: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one method with one seed, evaluate it, and return the piece's JSON object."""
    run_dir = RUNS / f"{method}_seed{seed}"
    if method == "teacher":
        algo, steps, task = "aacd", args.teacher_steps, TEACHER_TASK
        overrides: dict[str, Any] = {"teacher_steps": args.teacher_steps}
    else:
        algo, steps, task = ("aac" if method == "aac" else "aacd"), args.student_steps, STUDENT_TASK
        overrides = dict(CPU_STUDENT)
        if method != "aac":
            teacher = RUNS / f"teacher_seed{seed}" / "checkpoint.pt"
            if not teacher.exists():
                raise FileNotFoundError(f"{method} seed {seed} needs the teacher piece first ({teacher})")
            overrides["teacher_checkpoint"] = str(teacher)
            overrides |= OWN_CRITIC if method == "aacd_own_critic" else {"critic_mode": method.removeprefix("aacd_")}
    cfg = TrainCfg(
        total_steps=steps,
        num_envs=args.num_envs,
        seed=seed,
        device=args.device,
        run_dir=str(run_dir),
        checkpoint_every=args.checkpoint_every,
        eval_episodes=0,
        progress=False,
    )
    t0 = time.perf_counter()
    resume = run_dir if (run_dir / "checkpoint.pt").exists() else None
    train(TASK, algo, None if resume else cfg, task, overrides, resume=resume, total_steps=steps if resume else None)
    train_s = time.perf_counter() - t0
    learner, run = load_policy(run_dir / "checkpoint.pt", device=args.device)
    evals = {}
    for name, extra in (("train_shape", {}), ("heldout", HELDOUT)):
        evals[name] = evaluate(
            TASK,
            learner,
            args.eval_episodes,
            seed=100_000 + seed,
            device=args.device,
            num_envs=min(args.eval_episodes, 16),
            task_overrides={**run["task_overrides"], **extra},
        )
    return {
        "method": method,
        "seed": seed,
        "algo": algo,
        "env_steps": steps,
        "train_seconds_this_session": round(train_s, 1),
        "success": evals["train_shape"].get("success_rate"),
        "success_heldout": evals["heldout"].get("success_rate"),
        "return_mean": evals["train_shape"]["return_mean"],
        "return_mean_heldout": evals["heldout"]["return_mean"],
        "length_mean": evals["train_shape"]["length_mean"],
        "eval_episodes": args.eval_episodes,
        "learner_overrides": overrides,
        "task_overrides": task,
        "curve": learning_curve(run_dir),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": args.device,
        },
    }


def report(args: argparse.Namespace) -> dict[str, Any]:
    """Combine the pieces on disk into the report (means over the seeds present)."""
    out: dict[str, Any] = {"task": TASK, "seeds": [], "budget_env_steps": {}, "success": {}, "success_heldout": {}}
    seeds: set[int] = set()
    for method in METHODS:
        pieces = [json.loads(p.read_text()) for p in sorted(PIECES.glob(f"{method}_seed*.json"))]
        if not pieces:
            continue
        seeds |= {p["seed"] for p in pieces}
        for key in ("success", "success_heldout"):
            values = [p[key] for p in pieces if p[key] is not None]
            out[key][method] = sum(values) / len(values) if values else None
            out[f"{key}_per_seed"] = out.get(f"{key}_per_seed", {}) | {method: {p["seed"]: p[key] for p in pieces}}
        out["budget_env_steps"][method] = pieces[0]["env_steps"]
        out.setdefault("return_mean", {})[method] = sum(p["return_mean"] for p in pieces) / len(pieces)
    out["seeds"] = sorted(seeds)
    out["missing"] = [f"{m}_seed{s}" for m in METHODS for s in args.seeds if not piece_path(m, s).exists()]
    out["cpu_budget"] = (
        "each piece under 8 min on one core of a shared 2-core machine; students use the full "
        "image augmentation; see bench/tactile_learning.py"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    parser.add_argument("--teacher-steps", type=int, default=200_000)
    parser.add_argument("--student-steps", type=int, default=120_000)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--eval-episodes", type=int, default=32)
    parser.add_argument("--checkpoint-every", type=int, default=16_384, help="a killed piece resumes from here")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--force", action="store_true", help="re-run pieces that exist")
    parser.add_argument("--report", action="store_true", help="print the combined report and exit")
    parser.add_argument("--jobs", type=int, default=1, help="pieces run at once, each a Ray task on one core of a"
                        " private Ray instance (1: one after another in this process)")
    parser.add_argument("--ray-address", default="", help="run the pieces on this Ray cluster (HOST:PORT; its nodes"
                        " must share the results folder)")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="results folder (pieces in"
                        " <results>/tactile_learning/)")
    args = parser.parse_args(argv)
    use_results_folder(args.results)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {METHODS}")
    torch.set_num_threads(1)
    failures = []
    if not args.report:
        PIECES.mkdir(parents=True, exist_ok=True)
        todo = [(m, seed) for seed in args.seeds for m in methods if args.force or not piece_path(m, seed).exists()]
        for m, seed in todo if args.force else []:
            shutil.rmtree(RUNS / f"{m}_seed{seed}", ignore_errors=True)
        # AACD's students start from their seed's teacher: teachers (and AAC) first.
        phases = [[p for p in todo if not p[0].startswith("aacd_")], [p for p in todo if p[0].startswith("aacd_")]]
        for phase in phases:
            calls = {f"{m}_seed{seed}": partial(measure_piece, m, seed, args) for m, seed in phase}
            failures += run_pieces(PIECES, calls, args.jobs, args.ray_address)
        REPORT.write_text(json.dumps(report(args), indent=2))
    elif not REPORT.exists():
        REPORT.write_text(json.dumps(report(args), indent=2))
    print(REPORT.read_text() if args.report else json.dumps(report(args), indent=2))
    if failures:
        print("failed pieces:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
