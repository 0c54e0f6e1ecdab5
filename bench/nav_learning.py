"""In-context learning on Nav/Darkroom-v0: ReLIC vs the RL^2 LSTM, by episode index within held-out trials.

    .venv/bin/python bench/nav_learning.py                 # train both (resumable pieces), evaluate, time the cache
    .venv/bin/python bench/nav_learning.py --report        # print bench/results/nav_learning_best250000.json
    .venv/bin/python bench/nav_learning.py --seed 2 --algos relic        # add a seed
    .venv/bin/python bench/nav_learning.py --validate-every 0            # evaluate the final policy, not the best
    .venv/bin/python bench/nav_learning.py --random-start --steps 1000000   # the harder variant
    .venv/bin/python bench/nav_learning.py --device cuda --speed-only     # on a GPU: latency and training speed
    .venv/bin/python bench/nav_learning.py --tag constant --learner lr_anneal_steps=0   # the old constant rate
    .venv/bin/python bench/nav_learning.py --train-trial-episodes 20 --tag long --learner full_update_every=20 \
        --learner max_context=2048   # train on 20-episode trials, evaluate on 5-episode ones

Each method trains through the one loop (``embodied train Nav/Darkroom-v0 --algo relic`` /
``--algo lstm_nav``) on the training goal cells, then plays ``--trials`` trials whose goals are the
held-out cells (never a training goal), sampling from its policy; the report gives success rate
and mean return for each episode index within the trial, next to a uniformly random policy's.
The policy evaluated is the one that did best in validation (32 trials on training goals every
``--validate-every`` steps), since a run can still drop late. Pieces and reports name their setting:
``_best250000`` (validation), ``_random_start``, ``_<tag>``; the default report is
``bench/results/nav_learning_best250000.json``.
``relic.step_ms.<context>`` is the per-step latency of acting with the KV cache after a context of
that many steps (one env), ``relic.step_ms_recompute.<context>`` the same step done by recomputing
the whole sequence (measured where it takes under a minute, extrapolated quadratically otherwise,
as the JSON says), ``relic.cache_mib.<context>`` the KV cache's memory there. Pieces are JSON
files in ``bench/results/nav_learning/``, one per method and seed (``--seed 2 --algos lstm_nav``
adds one); the report averages each method over every seed that has a piece at the budget asked
for, with the seeds' own curves under ``per_seed``.

``--speed-only`` measures, on ``--device`` (run it once per device), ReLIC's step latency
(pieces ``<device>_latency_<context>``) and how many env steps per second the training loop runs for
each method (``<device>_train_speed_<algo>_<envs>``: ``--speed-steps`` steps from scratch, start-up
included, at 16 envs and at ``--speed-envs``). The report then carries them under
``<method>.train_steps_per_s`` and ``relic.step_ms_by_device``, keyed by device and processor.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pieces import REPO, code_state, machine, run_piece  # noqa: E402

from embodied.config import parse_overrides  # noqa: E402
from embodied.policies.train import TrainCfg, build_env, load_policy, train  # noqa: E402

TASK = "Nav/Darkroom-v0"
RESULTS = REPO / "bench" / "results"
PIECES = RESULTS / "nav_learning"


@torch.no_grad()
def trial_curve(
    learner: Any,
    trials: int,
    trial_episodes: int,
    seed: int,
    goals: str = "heldout",
    task_overrides: dict | None = None,
) -> dict[str, list[float]]:
    """Success rate, mean return and mean steps to the goal per episode index over ``trials`` trials
    (one env each), goals from ``goals``.

    Steps to the goal count the episode's length where it was not reached: a learner that remembers
    the goal walks there in about 7 steps (10 from the corner start), one that searches again takes
    as long as in its first episode. ``learner=None`` plays uniformly random actions (the floor).
    """
    overrides = {**(task_overrides or {}), "trial_episodes": trial_episodes, "goals": goals}
    env = build_env(TASK, trials, "cpu", seed, overrides)
    obs, _ = env.reset(seed=seed)
    success = torch.zeros(trial_episodes)
    returns = torch.zeros(trial_episodes)
    steps_to_goal = torch.zeros(trial_episodes)
    first_hit = torch.full((trials,), float(env.max_episode_steps))
    for _ in range(trial_episodes * env.max_episode_steps):
        action = env.random_action() if learner is None else learner.act(obs, deterministic=True)
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated | truncated
        first_hit = torch.where((reward > 0) & (first_hit == env.max_episode_steps), info["episode_length"] - 1.0, first_hit)
        if learner is not None:
            learner.episodes_ended(done)
        if done.any():
            index = info["episode_in_trial"][done]
            success.index_add_(0, index, info["success"][done].float())
            returns.index_add_(0, index, info["episode_return"][done])
            steps_to_goal.index_add_(0, index, first_hit[done])
            first_hit[done] = float(env.max_episode_steps)
    env.close()
    return {
        "success_by_episode": (success / trials).tolist(),
        "return_by_episode": (returns / trials).tolist(),
        "steps_to_goal_by_episode": (steps_to_goal / trials).tolist(),
    }


def over_seeds(algo: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every seed's piece of ``algo`` at this budget and start variant, and their mean per episode
    index; ``success_ci95_by_episode`` is the 95 % binomial half-width over the pooled held-out
    trials (``per_seed`` shows the spread between seeds, which that interval does not include)."""
    prefix = f"train_{algo}_{args.steps}{setting(args)}_s"
    per_seed = {
        path.stem[len(prefix) :]: json.loads(path.read_text())
        for path in sorted(PIECES.glob(f"{prefix}*.json"))
        if path.stem[len(prefix) :].isdigit()
    }
    if not per_seed:
        return {}
    keys = ("success_by_episode", "return_by_episode", "steps_to_goal_by_episode")
    mean = {key: torch.tensor([piece[key] for piece in per_seed.values()]).mean(0) for key in keys}
    success, trials = mean["success_by_episode"], args.trials * len(per_seed)
    return {
        **{key: value.tolist() for key, value in mean.items()},
        "success_ci95_by_episode": (1.96 * (success * (1 - success) / trials).sqrt()).tolist(),
        "seeds": [int(seed) for seed in per_seed],
        "per_seed": {seed: {key: piece[key] for key in (*keys, "train_s")} for seed, piece in per_seed.items()},
    }


def start_variant(args: argparse.Namespace) -> str:
    """Suffix of the file names of the random-start variant ("" for corner starts)."""
    return "_random_start" if args.random_start else ""


def setting(args: argparse.Namespace) -> str:
    """Suffix of the trained runs' pieces and report: the start variant, ``--tag``, the training trial's
    length where it differs from the evaluation's, and ``--validate-every``."""
    tag = f"_{args.tag}" if args.tag else ""
    longer = f"_train{args.train_trial_episodes}ep" if args.train_trial_episodes != args.trial_episodes else ""
    return start_variant(args) + tag + longer + (f"_best{args.validate_every}" if args.validate_every else "")


def variant(args: argparse.Namespace) -> str:
    """Suffix of the piece and run names: the setting and the seed."""
    return f"{setting(args)}_s{args.seed}"


def task_overrides(args: argparse.Namespace, training: bool = False) -> dict[str, Any]:
    """The Darkroom settings of evaluation and validation trials, or with ``training`` of training's."""
    episodes = args.train_trial_episodes if training else args.trial_episodes
    return {"trial_episodes": episodes, "random_start": args.random_start}


def learner_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--learner`` settings, plus validation's when ``--validate-every`` is given."""
    out: dict[str, Any] = parse_overrides(args.learner)
    if args.validate_every:
        out |= {"validate_every": args.validate_every, "validation_trial_episodes": args.trial_episodes}
    return out


def train_piece(algo: str, args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    run_dir = PIECES / "runs" / f"{algo}{variant(args)}"  # git ignores bench/results/**/runs/
    t0 = time.perf_counter()
    resume = run_dir if (run_dir / "checkpoint.pt").exists() else None
    overrides = learner_overrides(args)
    cfg = TrainCfg(
        total_steps=args.steps,
        num_envs=16,
        seed=args.seed,
        run_dir=str(run_dir),
        progress=False,
        eval_episodes=0,
        checkpoint_every=50_000,
    )
    train(
        TASK,
        algo,
        cfg,
        task_overrides=task_overrides(args, training=True),
        learner_overrides=overrides or None,
        resume=resume,
        total_steps=args.steps if resume else None,
    )
    # with validation, the policy of the best validation on the training goals is the one evaluated
    policy = run_dir / ("best_policy.pt" if args.validate_every else "checkpoint.pt")
    learner, _ = load_policy(policy)
    curve = trial_curve(
        learner, args.trials, args.trial_episodes, seed=10_000 + args.seed, task_overrides=task_overrides(args)
    )
    return {
        "algo": algo,
        "train_steps": args.steps,
        "random_start": args.random_start,
        "train_trial_episodes": args.train_trial_episodes,
        "validate_every": args.validate_every,
        "learner_overrides": overrides,
        "evaluated": policy.name,
        "train_s": time.perf_counter() - t0,
        **curve,
        "machine": machine(),
        "code": code_state("policies/relic.py", "policies/kv_transformer.py"),
    }


def sync(device: str) -> None:
    """Wait for the GPU's queued work (a time must include finishing it); nothing on the CPU."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def latency_piece(context: int, device: str = "cpu") -> dict[str, Any]:
    """Per-step ms with the KV cache after ``context`` steps, and by recomputing the whole sequence."""
    from embodied.policies.kv_transformer import context_mask
    from embodied.policies.relic import ReLIC, ReLICCfg

    torch.set_num_threads(1)
    env = build_env(TASK, 1, device, 0)
    reps = 20
    # room for the warm-up and timed steps: a full context would slide (drop its oldest steps)
    cfg = ReLICCfg(eval_max_context=context + reps + 16)
    learner = ReLIC(cfg, env.single_observation_space, env.single_action_space, 1, device)
    ctx = learner._context(1, deterministic=True)
    while ctx.grow():  # the context a long trial would have grown to
        pass
    ctx.p = context  # a full context of (zero) tokens: the cache's cost does not depend on their values
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        learner.act(obs, deterministic=True)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        learner.act(obs, deterministic=True)
    sync(device)
    cached = (time.perf_counter() - t0) / reps * 1e3
    out: dict[str, Any] = {
        "context": context,
        "device": device,
        "step_ms": cached,
        "cache_mib": ctx.cache.nbytes() / 2**20,
        "machine": machine(device),
    }
    if context <= 8192:
        n = context  # what one step costs without a cache: a forward over the whole context
        with torch.no_grad():
            learner.model(ctx.tokens[:, :n], context_mask(ctx.seg, 0, n))  # warm-up (CUDA kernels, allocator)
            sync(device)
            t0 = time.perf_counter()
            learner.model(ctx.tokens[:, :n], context_mask(ctx.seg, 0, n))
            sync(device)
            out["step_ms_recompute"] = (time.perf_counter() - t0) * 1e3
        out["recompute"] = "measured: one forward over the whole context (what a step costs without a cache)"
    else:
        out["recompute"] = "extrapolated quadratically from 8k (attention over n^2 pairs; the mask alone is n^2 bytes)"
    env.close()
    return out


def train_speed_piece(algo: str, device: str, num_envs: int, steps: int) -> dict[str, Any]:
    """Env steps per second of ``embodied train`` for ``steps`` steps from scratch (start-up included)."""
    torch.set_num_threads(1)
    run_dir = PIECES / "runs" / f"speed_{algo}_{device.replace(':', '')}_{num_envs}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = TrainCfg(
        total_steps=steps,
        num_envs=num_envs,
        seed=1,
        device=device,
        run_dir=str(run_dir),
        progress=False,
        eval_episodes=0,
        checkpoint_every=steps,
    )
    t0 = time.perf_counter()
    train(TASK, algo, cfg, task_overrides={"trial_episodes": 5, "random_start": False})
    sync(device)
    seconds = time.perf_counter() - t0
    return {
        "algo": algo,
        "device": device,
        "num_envs": num_envs,
        "steps": steps,
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "minutes_per_5M_steps": 5e6 / (steps / seconds) / 60,
        "machine": machine(device),
        "code": code_state("policies/relic.py", "policies/kv_transformer.py", "policies/train.py"),
    }


def speed_only(args: argparse.Namespace) -> None:
    """ReLIC's latency and both methods' training speed on ``args.device``."""
    device, prefix = args.device, args.device.replace(":", "")
    for context in (1024, 8192, 65536):
        run_piece(PIECES, f"{prefix}_latency_{context}", lambda c=context: latency_piece(c, device))
    for algo in args.algos:
        for envs in sorted({16, args.speed_envs}):
            run_piece(
                PIECES,
                f"{prefix}_train_speed_{algo}_{envs}",
                # at least two trials per env: ten partial updates, two of them full
                lambda a=algo, n=envs: train_speed_piece(a, device, n, max(args.speed_steps, 1000 * n)),
            )


def speed_report(report: dict[str, Any]) -> None:
    """Copy the ``--speed-only`` pieces measured so far into the report."""
    names = {"relic": "relic", "lstm_nav": "lstm"}
    for path in sorted(PIECES.glob("*_train_speed_*.json")):
        piece = json.loads(path.read_text())
        rates = report.setdefault(names[piece["algo"]], {}).setdefault("train_steps_per_s", {})
        where = f"{piece['device']} ({piece['machine'].get('gpu') or piece['machine']['cpu']})"
        rates[f"{where}, {piece['num_envs']} envs"] = round(piece["steps_per_s"], 1)
    relic = report.setdefault("relic", {})
    for path in sorted(PIECES.glob("*_latency_*.json")):  # the device-named pieces of --speed-only
        piece = json.loads(path.read_text())
        where = f"{piece['device']} ({piece['machine'].get('gpu') or piece['machine']['cpu']})"
        relic.setdefault("step_ms_by_device", {}).setdefault(where, {})[str(piece["context"])] = piece["step_ms"]
        if "step_ms_recompute" in piece:
            recompute = relic.setdefault("step_ms_recompute_by_device", {}).setdefault(where, {})
            recompute[str(piece["context"])] = piece["step_ms_recompute"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5_000_000)
    parser.add_argument("--random-start", action="store_true", help="start episodes at random cells, not the corner")
    parser.add_argument("--trial-episodes", type=int, default=5, help="episodes per evaluation (and validation) trial")
    parser.add_argument("--train-trial-episodes", type=int, default=0,
                        help="episodes per training trial (default: --trial-episodes); ReLIC's own trains on ~41")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--algos", nargs="+", default=["relic", "lstm_nav"])
    parser.add_argument("--validate-every", type=int, default=250_000,
                        help="validate on whole training-goal trials every N steps and evaluate the best policy "
                             "(0: evaluate the final one)")
    parser.add_argument("--learner", action="append", default=[], metavar="KEY=VALUE",
                        help="a learner setting for the trained runs (repeatable); needs --tag")
    parser.add_argument("--tag", default="", help="names the --learner settings in the pieces' and report's file names")
    parser.add_argument("--report", action="store_true", help="print the stored JSON and exit")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (ReLIC's latency and --speed-only)")
    parser.add_argument("--speed-only", action="store_true", help="measure latency and training speed only")
    parser.add_argument("--speed-steps", type=int, default=50_000, help="env steps of each training-speed run")
    parser.add_argument("--speed-envs", type=int, default=256, help="a second env count for the speed runs")
    args = parser.parse_args()
    args.train_trial_episodes = args.train_trial_episodes or args.trial_episodes
    if args.learner and not args.tag:
        parser.error("--learner needs --tag, which keeps those runs' pieces apart from the defaults'")
    if args.tag and not args.tag.replace("_", "").isalnum():
        parser.error(f"--tag must be letters, digits and underscores, got {args.tag!r}")
    if args.speed_only:
        speed_only(args)
        return
    out_path = RESULTS / f"nav_learning{setting(args)}.json"
    if args.report:
        print(out_path.read_text())
        return
    report: dict[str, Any] = {
        "task": TASK,
        "trial_episodes": args.trial_episodes,
        "random_start": args.random_start,
        "held_out_trials": args.trials,
        "budget_env_steps": args.steps,
    }
    report["random"] = run_piece(
        PIECES,
        f"random{start_variant(args)}",
        lambda: trial_curve(None, args.trials, args.trial_episodes, 10_001, task_overrides=task_overrides(args)),
    )
    names = {"relic": "relic", "lstm_nav": "lstm"}
    for algo in args.algos:  # this seed's runs; the report then takes every seed with a piece
        run_piece(PIECES, f"train_{algo}_{args.steps}{variant(args)}", lambda a=algo: train_piece(a, args))
    for algo, name in names.items():
        report[name] = over_seeds(algo, args)
    step_ms, recompute, cache_mib = {}, {}, {}
    for context in (1024, 8192, 65536):
        piece = run_piece(PIECES, f"latency_{context}", lambda c=context: latency_piece(c))
        step_ms[str(context)] = piece["step_ms"]
        cache_mib[str(context)] = piece["cache_mib"]
        if "step_ms_recompute" in piece:
            recompute[str(context)] = piece["step_ms_recompute"]
    recompute["65536"] = recompute["8192"] * 64
    report.setdefault("relic", {})
    report["relic"]["step_ms"] = step_ms
    report["relic"]["step_ms_recompute"] = recompute
    report["relic"]["cache_mib"] = cache_mib
    report["relic"]["step_ms_recompute_note"] = "1k and 8k measured; 64k extrapolated as 8k x 64 (quadratic)"
    speed_report(report)
    out_path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
