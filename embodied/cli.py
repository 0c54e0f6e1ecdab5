"""The ``embodied`` command: list, info, train, sweep, eval, demo, view, ros.

Settings beyond the flags are ``key=value`` overrides after the task id, checked against the
config dataclasses (a typo fails naming the key):

    embodied train Control/Pendulum-v0 --algo sac --total-steps 20000 algo.lr=1e-3 task.max_torque=2.5
    embodied train Control/Hopper-v0 --algo ppo adapters.noise.std=0.01 adapters.latency.steps=1

Prefixes: ``task.`` (the task's config), ``algo.`` (the learner's config), ``adapters.`` (the
sim-to-real adapters); bare keys set the training run itself (``checkpoint_every=5000``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from embodied.config import ConfigError, parse_overrides
from embodied.tasks import registry


def _split_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {"task": {}, "algo": {}, "adapters": {}, "train": {}}
    for key, value in parse_overrides(pairs).items():
        head, dot, rest = key.partition(".")
        if dot and head in ("task", "algo", "adapters"):
            groups[head][rest] = value
        else:
            groups["train"][key] = value
    return groups


def cmd_list(args: argparse.Namespace) -> int:
    rows = [registry.spec(i) for i in registry.list_tasks(args.family)]
    if args.json:
        print(json.dumps([s.to_dict() for s in rows], indent=2))
        return 0
    header = ("id", "family", "backends", "observations", "max steps")
    table = [header] + [(s.id, s.family, ",".join(s.backends), ",".join(s.obs_kinds), str(s.max_episode_steps)) for s in rows]
    widths = [max(len(r[c]) for r in table) for c in range(len(header))]
    for n, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import dataclasses

    spec = registry.spec(args.task_id)
    cfg = registry.load_cfg(args.task_id)
    out = spec.to_dict()
    out["config"] = dataclasses.asdict(cfg)
    try:
        env = registry.make(args.task_id, num_envs=1)
        out["observation_space"] = str(env.single_observation_space)
        out["action_space"] = str(env.single_action_space)
        out["randomizable_params"] = {k: dataclasses.asdict(v) for k, v in env.randomizable_params().items()}
        env.close()
    except ModuleNotFoundError as err:
        out["unavailable"] = str(err)
    print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from embodied.config import apply_overrides
    from embodied.policies.train import TrainCfg, train

    groups = _split_overrides(args.overrides)
    flags = {"num_envs": args.num_envs, "seed": args.seed, "device": args.device, "total_steps": args.total_steps,
             "run_dir": args.run_dir, "workers": args.workers, "worker_mode": args.worker_mode,
             "ray_address": args.ray_address, "distributed": args.distributed or None}
    cfg = apply_overrides(TrainCfg(progress=not args.no_progress), {k: v for k, v in flags.items() if v is not None})
    cfg = apply_overrides(cfg, groups["train"])
    if args.resume and any(groups.values()):
        raise ValueError("--resume continues a run with its own settings; key=value overrides are not allowed")
    run_dir = train(args.task_id, args.algo, cfg, groups["task"], groups["algo"], groups["adapters"],
                    resume=args.resume, total_steps=args.total_steps if args.resume else None)
    eval_file = Path(run_dir) / "eval.json"
    print(f"run folder: {run_dir}")
    if eval_file.exists():
        print(eval_file.read_text())
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """``sweep``: tasks x algorithms x seeds x overrides as Ray Tune trials (policies/scaleout/sweep.py)."""
    from embodied.policies.scaleout.sweep import SweepCfg, run_sweep

    def csv(text: str | None) -> list[str]:
        return [item for item in (text or "").split(",") if item]

    groups = _split_overrides(args.overrides)
    train_settings = {k: v for k, v in {"total_steps": args.total_steps, "num_envs": args.num_envs}.items() if v}
    grid: dict[str, list[Any]] = {f"{head}.{key}": [value] for head in ("task", "algo", "adapters")
                                  for key, value in groups[head].items()}
    for item in args.grid:
        key, sep, values = item.partition("=")
        if not sep:
            raise ValueError(f"--grid takes KEY=V1,V2,...; got {item!r}")
        grid[key] = csv(values)  # strings, typed by the config they override (as train's key=value)
    sample = {}
    for item in args.sample:
        key, sep, spec = item.partition("=")
        if not sep:
            raise ValueError(f"--sample takes KEY=loguniform:LO:HI (or uniform:LO:HI, choice:A,B); got {item!r}")
        sample[key] = spec
    cfg = SweepCfg(name=args.name, tasks=csv(args.tasks), algos=csv(args.algos), seeds=[int(s) for s in csv(args.seeds)],
                   grid=grid, sample=sample, num_samples=args.num_samples, train={**groups["train"], **train_settings},
                   report_every=args.report_every, storage=args.storage, results=args.results or "",
                   max_concurrent=args.max_concurrent)
    outcome = run_sweep(cfg, resume=args.resume, ray_address=args.ray_address or "")
    for piece in outcome["results"]:
        print(f"{piece['task_id']} {piece['algo']} seed {piece['seed']} {piece['overrides'] or ''}: "
              f"return {piece.get('return_mean', float('nan')):.1f} +- {piece.get('return_std', float('nan')):.1f}")
    for error in outcome["errors"]:
        print(f"FAILED {error['trial']}: {error['error']}", file=sys.stderr)
    print(f"results: {outcome['results_dir']} ({len(outcome['results'])} trials, {len(outcome['errors'])} failed)")
    return 1 if outcome["errors"] else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from embodied.policies.train import evaluate, load_policy

    learner, run = load_policy(args.checkpoint, device=args.device)
    if args.planner:  # plan with the SRL run's learned model and critics instead of its actor
        from embodied.policies.srl_planner import CEMPlanner, CEMPlannerCfg

        learner = CEMPlanner(learner, CEMPlannerCfg())  # type: ignore[arg-type]
    if args.task_id != run["task_id"]:
        raise ValueError(f"checkpoint {args.checkpoint} was trained on {run['task_id']}, not {args.task_id}")
    groups = _split_overrides(args.overrides)
    if args.fas:
        return _eval_fas(args, learner, run, groups)
    summary = evaluate(args.task_id, learner, args.episodes, seed=args.seed, device=args.device, num_envs=args.num_envs,
                       task_overrides={**run["task_overrides"], **groups["task"]},
                       adapters={**run["adapters"], **groups["adapters"]})
    if args.record or args.video:
        from embodied.sim.viewer.record import record_rollout

        summary["recorded"] = record_rollout(
            args.task_id, learner, args.record, episodes=1, seed=args.seed, device=args.device,
            task_overrides={**run["task_overrides"], **groups["task"]}, adapters={**run["adapters"], **groups["adapters"]},
            video=args.video, meta={"policy": "checkpoint", "checkpoint": str(args.checkpoint)})
    if args.record_bag:
        from embodied.sim2real.ros.cli import record_eval_bag

        summary["recorded_bag"] = record_eval_bag(args.task_id, learner, args.record_bag, args.seed,
                                                  {**run["task_overrides"], **groups["task"]})
    text = json.dumps(summary, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


def _eval_fas(args: argparse.Namespace, learner: Any, run: dict[str, Any], groups: dict[str, dict[str, Any]]) -> int:
    """``eval --fas``: the Frequency-Averaged Score curve and score as JSON, and its plot."""
    from embodied.policies.fas import FAS_LENGTHS, fas_evaluate, plot_fas

    if any(key == "rate" or key.startswith("rate.") for key in groups["adapters"]):
        raise ValueError("--fas sets the decision rate itself; adapters.rate.* overrides are not allowed")
    try:
        lengths = [int(k) for k in args.fas_lengths.split(",")] if args.fas_lengths else list(FAS_LENGTHS)
    except ValueError:
        raise ValueError(f"--fas-lengths must be comma-separated ints (e.g. 1,2,4), got {args.fas_lengths!r}") from None
    result = fas_evaluate(args.task_id, learner, lengths, args.episodes, seed=args.seed, device=args.device,
                          num_envs=args.num_envs, task_overrides={**run["task_overrides"], **groups["task"]},
                          adapters={**run["adapters"], **groups["adapters"]},
                          max_reward=args.fas_max_reward, shift=args.fas_shift)
    checkpoint = Path(args.checkpoint)
    plot = Path(args.fas_plot) if args.fas_plot else (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "fas.png"
    result["plot"] = str(plot_fas(result, plot))
    keys = ("task_id", "algo", "sequence_policy", "episodes", "curve", "score", "max_reward", "shift", "plot")
    # One line per key, so the curve stays readable: [[k, mean return], ...].
    print("{\n" + ",\n".join(f"  {json.dumps(key)}: {json.dumps(result[key])}" for key in keys) + "\n}")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """``view``: serve the browser viewer (or a recorded rollout) until Ctrl-C."""
    if args.viewer == "native":
        return _view_native(args)
    token = args.token
    if token is not None and args.no_token:
        raise ValueError("--token and --no-token contradict each other")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        if token is None and not args.no_token:
            from embodied.sim.viewer.access import new_token

            token = new_token()
        print(
            f"embodied view: warning: serving on {args.host}: anyone who can reach this machine on port "
            f"{args.port} can watch and control the simulation"
            + (" (with the access token in the URL below)" if token else ", with no access token"),
            file=sys.stderr,
        )
    if args.no_token:
        token = None
    if args.replay:
        from embodied.sim.viewer.record import load_rollout
        from embodied.sim.viewer.replay import ReplayApp

        rollout = load_rollout(args.replay)
        if args.task_id and args.task_id != rollout.task_id:
            raise ValueError(f"{args.replay} records {rollout.task_id}, not {args.task_id}")
        app: Any = ReplayApp(rollout, host=args.host, port=args.port, token=token)
    else:
        if not args.task_id:
            raise ValueError("give a task id (embodied list shows them) or --replay FILE")
        from embodied.sim.viewer.app import ViewerApp
        from embodied.sim.viewer.session import ViewerSession

        session = ViewerSession(
            args.task_id, num_envs=args.num_envs, checkpoint=args.checkpoint, seed=args.seed, device=args.device
        )
        app = ViewerApp(session, host=args.host, port=args.port, token=token)
    print(f"embodied view: open {app.url} in a browser (Ctrl-C stops)", flush=True)
    app.serve_forever()
    return 0


def _view_native(args: argparse.Namespace) -> int:
    """``view --viewer native``: MuJoCo's own window (a display needed), until it closes or Ctrl-C."""
    if args.replay:
        raise ValueError("--replay plays in the browser viewer; leave out --viewer native")
    if not args.task_id:
        raise ValueError("give a task id (embodied list shows them)")
    from embodied.sim.viewer.native import require_display, run_native
    from embodied.sim.viewer.session import ViewerSession

    require_display()
    session = ViewerSession(args.task_id, num_envs=args.num_envs, checkpoint=args.checkpoint, seed=args.seed,
                            device=args.device)
    opened = "embodied view: MuJoCo's viewer is open (close its window or Ctrl-C stops)"
    try:
        steps = run_native(session, on_open=lambda: print(opened, flush=True))
    finally:
        session.close()
    print(f"embodied view: stopped after {steps} steps", flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from embodied.demo import run_demo

    run_demo(episodes=args.episodes)
    return 0


def cmd_ros(args: argparse.Namespace) -> int:
    """``ros sim|deploy|record|replay``: the ROS bridge (sim2real/ros, docs/ros.md)."""
    from embodied.sim2real.ros.cli import run_ros_command

    return run_ros_command(args)


def _add_ros_parsers(sub: Any) -> None:
    ros = sub.add_parser("ros", help="the ROS bridge: serve a task as a ROS robot, deploy a policy (docs/ros.md)")
    ros_sub = ros.add_subparsers(dest="ros_command", required=True)
    p = ros_sub.add_parser("record", help="record the bridge config's topics from a live graph into a bag")
    p.add_argument("task_id", help="the task whose family's config names the topics (or give --config)")
    p.add_argument("bag", help="PATH.bag for ROS 1, any other PATH for a ROS 2 MCAP bag folder")
    p.add_argument("--config", help="bridge config, YAML or JSON (default: assets/ros/<family>.yaml)")
    p.add_argument("--ros", type=int, default=1, choices=(1, 2), help="ROS version (default 1)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: at SIGINT/SIGTERM)")
    p.add_argument("overrides", nargs="*", help="bridge config overrides")
    p.set_defaults(func=cmd_ros)
    p = ros_sub.add_parser("replay", help="a bag as open-loop input to a policy, and/or converted to a rollout file")
    p.add_argument("task_id")
    p.add_argument("bag", help="a ROS 1 .bag or a ROS 2 bag folder (ours or rosbag record's)")
    p.add_argument("--config", help="bridge config, YAML or JSON (default: assets/ros/<family>.yaml)")
    p.add_argument("--checkpoint", help="compare this policy's actions with the recorded commands")
    p.add_argument("--rollout", help="also save (observation, command) pairs as a rollout file (.npz)")
    p.add_argument("overrides", nargs="*", help="bridge config overrides")
    p.set_defaults(func=cmd_ros)
    for name, help_text in (("sim", "serve a task as a ROS robot: sensors and /clock out, commands in"),
                            ("deploy", "drive a ROS robot (or `ros sim`) with a checkpoint's policy")):
        p = ros_sub.add_parser(name, help=help_text)
        p.add_argument("task_id")
        p.add_argument("--config", help="bridge config, YAML or JSON (default: assets/ros/<family>.yaml)")
        p.add_argument("--ros", type=int, default=1, choices=(1, 2), help="ROS version (default 1)")
        p.add_argument("--duration", type=float, help="stop after this many seconds (default: at SIGINT/SIGTERM)")
        p.add_argument("--report", help="write a JSON report of the run here when it ends")
        p.add_argument("overrides", nargs="*", help="bridge config overrides, e.g. rate_hz=100 command.topic=/cmd")
        p.set_defaults(func=cmd_ros)
        if name == "sim":
            p.add_argument("--mode", choices=("command", "rate"), default="command",
                           help="step on each command (default), or every period with the latest command")
            p.add_argument("--seed", type=int, default=0)
        else:
            p.add_argument("--checkpoint", required=True, help="checkpoint.pt, a run folder, or a shipped policy file")
            p.add_argument("--steps", type=int, help="stop after this many control steps")
            p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for a command subscriber")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embodied", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered tasks")
    p.add_argument("--family", help="only this family (Control, Tactile, Nav, Beam)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="a task's spec, default config, spaces and randomisable parameters")
    p.add_argument("task_id")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="train a learner on a task (the one training loop)",
                       description="Train ALGO on TASK_ID. Trailing key=value overrides: task.*, algo.*, adapters.*, or a training setting.")
    p.add_argument("task_id")
    p.add_argument("--algo", required=True, help="learner: sac, ppo, ...")
    p.add_argument("--num-envs", type=int, help="parallel envs (default: the learner's)")
    p.add_argument("--seed", type=int, help="random seed (default 1)")
    p.add_argument("--device", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--total-steps", type=int, help="env steps to train for (default: the learner's, 100000 for most)")
    p.add_argument("--run-dir", help="output folder (default runs/<task>__<algo>__<seed>__<time>)")
    p.add_argument("--resume", help="continue the run in this folder (or checkpoint file) exactly where it stopped;"
                   " its settings come from the checkpoint (--total-steps may extend it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=int, help="rollout workers sharing --num-envs (Ray actors; docs/scaleout.md)")
    p.add_argument("--worker-mode", choices=["ray", "serial"], help="serial: the workers one after another in this"
                   " process, no Ray (bit-identical to ray; for debugging)")
    p.add_argument("--ray-address", help="HOST:PORT of a Ray cluster's head (default: a private Ray on 127.0.0.1)")
    p.add_argument("--distributed", action="store_true", help="data-parallel learner: run under torchrun, one env"
                   " batch per rank (seed + rank), gradients averaged (gloo on CPU, NCCL on GPU)")
    p.add_argument("overrides", nargs="*", help="key=value settings (task.*, algo.*, adapters.*, run settings)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="tasks x algorithms x seeds x overrides as Ray Tune trials, resumable",
                       description="Run every combination as a training run (Ray Tune trial); --resume NAME continues"
                       " a sweep whose driver stopped. Trailing key=value: run settings, or task.*/algo.*/adapters.*"
                       " overrides for every trial.")
    p.add_argument("--name", required=True, help="the sweep's name (its folder under --storage)")
    p.add_argument("--tasks", help="comma-separated task ids")
    p.add_argument("--algos", help="comma-separated learners")
    p.add_argument("--seeds", default="1", help="comma-separated seeds (default 1)")
    p.add_argument("--grid", action="append", default=[], help="KEY=V1,V2,...: crossed with everything else"
                   " (KEY as in train overrides, e.g. algo.learning_rate); repeatable")
    p.add_argument("--sample", action="append", default=[], help="KEY=loguniform:LO:HI, uniform:LO:HI or"
                   " choice:A,B: random search, --num-samples draws per grid point; repeatable")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--total-steps", type=int, help="env steps per trial (default: the learner's)")
    p.add_argument("--num-envs", type=int, help="envs per trial (default: the learner's)")
    p.add_argument("--report-every", type=int, default=0, help="env steps between a trial's checkpoints"
                   " (default: a quarter of its steps)")
    p.add_argument("--storage", default="runs/sweeps", help="where the sweep's trials and state live")
    p.add_argument("--results", help="folder for one JSON per finished trial (default <storage>/<name>/results)")
    p.add_argument("--max-concurrent", type=int, default=0, help="trials at once (default: as CPUs allow)")
    p.add_argument("--resume", action="store_true", help="continue the sweep --name after its driver stopped")
    p.add_argument("--ray-address", help="HOST:PORT of a Ray cluster's head (default: a private Ray on 127.0.0.1)")
    p.add_argument("overrides", nargs="*", help="key=value run settings or overrides for every trial")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("eval", help="evaluate a checkpoint; prints a JSON summary")
    p.add_argument("task_id")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt, a run folder, or a shipped policy file")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--num-envs", type=int, help="parallel envs (default min(episodes, 16))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", help="also write the JSON summary to this file (with --fas: the full result)")
    p.add_argument("--fas", action="store_true", help="Frequency-Averaged Score: evaluate at 1, 2, 4, ..., 30 primitive"
                   " steps per decision; prints the curve and score as JSON and saves a plot")
    p.add_argument("--planner", action="store_true", help="act with a CEM planner over the SRL checkpoint's learned"
                   " model and critics (policies/srl_planner.py) instead of its actor")
    p.add_argument("--fas-plot", help="where --fas saves its plot (default: fas.png in the run folder)")
    p.add_argument("--fas-lengths", help="comma-separated steps per decision for --fas (default 1,2,4,6,...,30)")
    p.add_argument("--fas-max-reward", type=float, help="--fas normalisation (default: the authors' value for the task)")
    p.add_argument("--fas-shift", type=float, help="--fas return shift (default: the authors' value for the task, else 0)")
    p.add_argument("--record", help="also run one episode of one env and save it as a rollout file (.npz) for"
                   " `embodied view --replay` (format: sim/viewer/record.py)")
    p.add_argument("--video", help="also run one episode of one env and save the env's render() as an mp4")
    p.add_argument("--record-bag", help="also run one episode through the ROS bridge and save its topics as a bag:"
                   " PATH.bag for ROS 1, any other PATH for a ROS 2 MCAP bag folder (docs/ros.md)")
    p.add_argument("overrides", nargs="*", help="task.* and adapters.* overrides (e.g. adapters.noise.std=0.05)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("view", help="watch and control a task in the browser (viser; see docs/viewer.md)")
    p.add_argument("task_id", nargs="?", help="the task to show (not needed with --replay)")
    p.add_argument("--checkpoint", help="a policy to act with: checkpoint.pt, a run folder or a shipped policy file")
    p.add_argument("--num-envs", type=int, default=1, help="envs in the batch (the page picks the one shown)")
    p.add_argument("--port", type=int, default=8080, help="port (the next free one if taken)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on; another than 127.0.0.1 exposes the"
                   " controls to the network (a warning is printed)")
    p.add_argument("--viewer", choices=("browser", "native"), default="browser", help="browser (default, works"
                   " headless) or native: MuJoCo's own window, for MuJoCo tasks on a machine with a display")
    p.add_argument("--token", help="require this access token (the URL printed carries it); default: none on"
                   " 127.0.0.1, a random one with another --host")
    p.add_argument("--no-token", action="store_true", help="serve another --host without a token (e.g. behind an"
                   " authenticating proxy)")
    p.add_argument("--replay", help="show a rollout file written by `embodied eval ... --record FILE`")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_view)

    p = sub.add_parser("demo", help="run the shipped trained policies on a task of each family")
    p.add_argument("--episodes", type=int, default=10)
    p.set_defaults(func=cmd_demo)

    _add_ros_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may follow flags; argparse leaves those it cannot place in `extra`.
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        if not hasattr(args, "overrides"):
            parser.error(f"{args.command} takes no key=value overrides: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (KeyError, ValueError, ConfigError, ModuleNotFoundError, FileNotFoundError, FileExistsError,
            ConnectionError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"embodied {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
