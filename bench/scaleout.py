"""Scale-out benchmark: rollout workers against the serial loop, and sweeps against one-by-one runs.

    .venv/bin/python bench/scaleout.py                 # the missing pieces, then the JSON
    .venv/bin/python bench/scaleout.py --workers 1,2,4,8 --force

Pieces (bench/results/scaleout/<piece>.json, each measured once unless ``--force``):

* ``collect_serial``, ``collect_workers<n>``: experience collection alone (PPO acting on
  Control/Hopper-v0, ``--envs`` envs, rounds of ``--round-steps`` steps per env): the loop's own
  envs in this process against ``n`` Ray actors sharing the same envs. ``overhead_frac`` is the
  part of a round's wall time not spent inside the slowest worker (Ray's round trip, weights
  out, rollouts back, joining them); the first round (actor start-up) is not timed.
* ``weak_scaling<n>`` (n > 1): collection with ``--envs`` envs *per worker* (``n`` x ``--envs`` in
  all), so each added worker brings its own batch and core: ``scaling_efficiency`` = the rate
  with ``n`` workers / (``n`` x the rate with one) says what an added dedicated core is worth.
  Beside it, the machine's own ceiling with no Ray (``plain_processes_efficiency``): ``n`` OS
  processes each playing the same rounds with a serial worker, started together, against one.
  Cores that share caches, memory bandwidth or a VM host's time score below 1 there, and Ray
  cannot do better. The four are measured in turn ``--repeats`` times; medians.
* ``train_serial``, ``train_workers<n>``: the whole training loop (PPO, an update per round):
  env steps and learner updates per second.
* ``sweep``, ``sweep_serial``: ``--trials`` small SAC runs on Control/Pendulum-v0 as an
  ``embodied sweep`` (Ray Tune, a trial per CPU) against the same runs one after another.

All Ray pieces share one private Ray instance on 127.0.0.1 with ``--cpus`` CPUs. The combined
report, bench/results/scaleout/scaleout.json, has ``serial.env_steps_per_s``,
``workers.<n>.{env_steps_per_s, overhead_frac, round_overhead_ms, train_env_steps_per_s,
learner_updates_per_s, load_avg_1min}``, ``workers.<n>.weak_scaling.{envs, env_steps_per_s,
scaling_efficiency, plain_processes_efficiency, repeats}`` (n > 1), ``serial.learner_updates_per_s`` and ``sweep.{trials_per_hour,
serial_trials_per_hour}``. Scaling needs a core per worker: on a 2-core machine only 1 and 2
workers mean anything (the driver waits while they play).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pieces import code_state, machine, run_piece  # noqa: E402  (bench/pieces.py, next to this script)

RESULTS = Path(__file__).resolve().parent / "results" / "scaleout"
TASK = "Control/Hopper-v0"
SOURCES = ("policies/train.py", "policies/scaleout")


def _run_spec(envs: int) -> Any:
    """The PPO run the collection pieces act for (its learner built here, never trained)."""
    from embodied.config import to_dict
    from embodied.policies.ppo import PPOCfg
    from embodied.policies.train import RunSpec, TrainCfg
    from embodied.tasks import registry

    cfg = TrainCfg(num_envs=envs, seed=1)
    return RunSpec(TASK, "ppo", to_dict(cfg), to_dict(registry.load_cfg(TASK)), to_dict(PPOCfg()), {}), cfg


def measure_collection(workers: int, envs: int, round_steps: int, rounds: int) -> dict[str, Any]:
    """Env steps per second of collection alone; with workers, Ray's share of each round."""
    import dataclasses

    from embodied.policies.scaleout.workers import WorkerRollout
    from embodied.policies.train import LocalRollout, build_env, build_learner

    run, cfg = _run_spec(envs)
    if workers:
        source: Any = WorkerRollout(run, dataclasses.replace(cfg, workers=workers, round_steps=round_steps))
    else:
        source = LocalRollout(build_env(TASK, envs, "cpu", 1), 1)
    learner = build_learner("ppo", source, "cpu", run.learner_cfg)
    for _ in range(round_steps):  # warm-up: actors start, caches fill
        source.next_step(learner)
    timing_before = dict(getattr(source, "timing", {}))
    start = time.perf_counter()
    for _ in range(rounds * round_steps):
        source.next_step(learner)
    wall = time.perf_counter() - start
    source.close()
    out: dict[str, Any] = {"workers": workers, "envs": envs, "round_steps": round_steps, "rounds": rounds,
                           "env_steps_per_s": rounds * round_steps * envs / wall, "wall_s": wall}
    if workers:
        round_s = source.timing["round_s"] - timing_before["round_s"]
        compute_s = source.timing["compute_s"] - timing_before["compute_s"]
        out |= {"overhead_frac": 1.0 - compute_s / round_s, "round_overhead_ms": 1000 * (round_s - compute_s) / rounds,
                "round_s": round_s / rounds}
    return out | {"machine": machine(), "code": code_state(*SOURCES)}


def measure_weak_scaling(workers: int, envs: int, round_steps: int, rounds: int, repeats: int) -> dict[str, Any]:
    """Weak scaling, ``envs`` per worker: ``workers`` Ray workers against one, and as many plain
    processes against one, measured in turn ``repeats`` times (a shared machine's speed drifts
    by tens of percent within minutes, so each efficiency is taken within one repeat); medians."""
    import statistics

    rows = []
    for _ in range(repeats):
        one = measure_collection(1, envs, round_steps, rounds)["env_steps_per_s"]
        many = measure_collection(workers, workers * envs, round_steps, rounds)["env_steps_per_s"]
        plain_one = measure_plain_processes(1, envs, round_steps, rounds)["env_steps_per_s"]
        plain_many = measure_plain_processes(workers, envs, round_steps, rounds)["env_steps_per_s"]
        rows.append({"one_worker": one, "workers": many, "scaling_efficiency": many / (workers * one),
                     "plain_one": plain_one, "plain_processes": plain_many,
                     "plain_processes_efficiency": plain_many / (workers * plain_one)})
    median = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    return {"workers": workers, "envs": workers * envs, "round_steps": round_steps, "rounds": rounds, "repeats": rows,
            "env_steps_per_s": median["workers"], "scaling_efficiency": median["scaling_efficiency"],
            "plain_processes_efficiency": median["plain_processes_efficiency"], "machine": machine(),
            "code": code_state(*SOURCES)}


def measure_plain_processes(processes: int, envs: int, round_steps: int, rounds: int) -> dict[str, Any]:
    """The machine's own ceiling for weak scaling: ``processes`` OS processes (no Ray), each
    playing rounds with a serial rollout worker of ``envs`` envs, started together."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    procs = [context.Process(target=_plain_rounds, args=(envs, round_steps, rounds, barrier, results))
             for _ in range(processes)]
    for proc in procs:
        proc.start()
    rates = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    return {"processes": processes, "envs_per_process": envs, "round_steps": round_steps, "rounds": rounds,
            "env_steps_per_s": sum(rates), "per_process": rates, "machine": machine(), "code": code_state(*SOURCES)}


def _plain_rounds(envs: int, round_steps: int, rounds: int, barrier: Any, results: Any) -> None:
    import torch

    from embodied.policies.scaleout.workers import RolloutWorker

    torch.set_num_threads(1)
    run, _ = _run_spec(envs)
    worker = RolloutWorker(run, envs, seed=1)
    policy = worker.learner.rollout_state()
    worker.run_round(policy, round_steps)  # warm-up, as the Ray pieces' first round
    barrier.wait()
    start = time.perf_counter()
    for _ in range(rounds):
        worker.run_round(policy, round_steps)
    results.put(rounds * round_steps * envs / (time.perf_counter() - start))


def measure_training(workers: int, envs: int, round_steps: int, updates: int) -> dict[str, Any]:
    """The whole loop: PPO with an update per round of ``round_steps`` x ``envs`` steps."""
    from embodied.policies.train import TrainCfg, train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainCfg(total_steps=updates * round_steps * envs, num_envs=envs, seed=1, run_dir=f"{tmp}/run",
                       checkpoint_every=0, eval_episodes=0, progress=False, tensorboard=False, workers=workers)
        start = time.perf_counter()
        train(TASK, "ppo", cfg, learner_overrides={"num_steps": round_steps})
        wall = time.perf_counter() - start
    return {"workers": workers, "envs": envs, "round_steps": round_steps, "updates": updates,
            "env_steps_per_s": cfg.total_steps / wall, "learner_updates_per_s": updates / wall, "wall_s": wall,
            "machine": machine(), "code": code_state(*SOURCES)}


SWEEP_OVERRIDES = {"hidden_sizes": [64, 64], "learning_starts": 500, "batch_size": 64}


def measure_sweep(trials: int, steps: int, serial: bool) -> dict[str, Any]:
    """``trials`` SAC runs on Pendulum (seeds 1..trials): one ``embodied sweep``, or one after another."""
    from embodied.policies.scaleout.sweep import SweepCfg, run_sweep
    from embodied.policies.train import TrainCfg, train

    settings = {"total_steps": steps, "num_envs": 1, "eval_episodes": 2}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        if serial:
            for seed in range(1, trials + 1):
                train("Control/Pendulum-v0", "sac", TrainCfg(**settings, seed=seed, run_dir=f"{tmp}/{seed}", progress=False,
                                                             tensorboard=False), learner_overrides=SWEEP_OVERRIDES)
            finished = trials
        else:
            grid = {f"algo.{key}": [json.dumps(value)] for key, value in SWEEP_OVERRIDES.items()}
            cfg = SweepCfg(name="bench", tasks=["Control/Pendulum-v0"], algos=["sac"], seeds=list(range(1, trials + 1)),
                           grid=grid, train=settings, report_every=steps, storage=tmp)
            finished = len(run_sweep(cfg)["results"])
        wall = time.perf_counter() - start
    return {"trials": finished, "steps_per_trial": steps, "wall_s": wall, "trials_per_hour": finished * 3600 / wall,
            "machine": machine(), "code": code_state(*SOURCES)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2", help="worker counts to measure (comma-separated)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the private Ray instance")
    parser.add_argument("--envs", type=int, default=16, help="envs in all (split over the workers)")
    parser.add_argument("--round-steps", type=int, default=128, help="steps per env per round (PPO's num_steps)")
    parser.add_argument("--rounds", type=int, default=6, help="timed rounds of the collection pieces")
    parser.add_argument("--updates", type=int, default=6, help="PPO updates of the training pieces")
    parser.add_argument("--repeats", type=int, default=3, help="turns of the weak-scaling piece")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--trial-steps", type=int, default=3000)
    parser.add_argument("--force", action="store_true", help="measure every piece again")
    args = parser.parse_args(argv)
    import torch

    from embodied.policies.scaleout.cluster import ray_session

    torch.set_num_threads(1)
    worker_counts = [int(n) for n in args.workers.split(",")]
    sizes = (args.envs, args.round_steps)
    report: dict[str, Any] = {"task": TASK, "envs": args.envs, "round_steps": args.round_steps, "workers": {}}
    serial = run_piece(RESULTS, "collect_serial", lambda: measure_collection(0, *sizes, args.rounds), args.force)
    serial_train = run_piece(RESULTS, "train_serial", lambda: measure_training(0, *sizes, args.updates), args.force)
    sweep_serial = run_piece(RESULTS, "sweep_serial", lambda: measure_sweep(args.trials, args.trial_steps, True), args.force)
    with ray_session("", num_cpus=args.cpus):
        for n in worker_counts:
            collect = run_piece(RESULTS, f"collect_workers{n}", lambda n=n: measure_collection(n, *sizes, args.rounds),
                                args.force)
            trained = run_piece(RESULTS, f"train_workers{n}", lambda n=n: measure_training(n, *sizes, args.updates),
                                args.force)
            row = report["workers"][str(n)] = {
                "env_steps_per_s": collect["env_steps_per_s"], "overhead_frac": collect["overhead_frac"],
                "round_overhead_ms": collect["round_overhead_ms"], "speedup_vs_serial":
                collect["env_steps_per_s"] / serial["env_steps_per_s"],
                "train_env_steps_per_s": trained["env_steps_per_s"],
                "learner_updates_per_s": trained["learner_updates_per_s"],
                "load_avg_1min": [collect["machine"]["load_avg_1min"], trained["machine"]["load_avg_1min"]]}
            if n > 1:
                weak = run_piece(RESULTS, f"weak_scaling{n}", lambda n=n: measure_weak_scaling(n, *sizes, args.rounds,
                                                                                               args.repeats), args.force)
                row["weak_scaling"] = {key: weak[key] for key in ("envs", "env_steps_per_s", "scaling_efficiency",
                                                                  "plain_processes_efficiency", "repeats")}
        sweep = run_piece(RESULTS, "sweep", lambda: measure_sweep(args.trials, args.trial_steps, False), args.force)
    report["serial"] = {"env_steps_per_s": serial["env_steps_per_s"], "train_env_steps_per_s": serial_train["env_steps_per_s"],
                        "learner_updates_per_s": serial_train["learner_updates_per_s"],
                        "load_avg_1min": [serial["machine"]["load_avg_1min"], serial_train["machine"]["load_avg_1min"]]}
    report["sweep"] = {"trials": sweep["trials"], "trials_per_hour": sweep["trials_per_hour"],
                       "serial_trials_per_hour": sweep_serial["trials_per_hour"],
                       "load_avg_1min": [sweep["machine"]["load_avg_1min"], sweep_serial["machine"]["load_avg_1min"]]}
    report["machine"] = machine()
    (RESULTS / "scaleout.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
