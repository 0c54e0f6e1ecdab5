"""``embodied ros sim|deploy|record|replay`` and ``eval --record-bag``: the argument handling
behind ``embodied/cli.py``'s parsers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from embodied.config import parse_overrides
from embodied.sim2real.ros.config import load_bridge_cfg
from embodied.sim2real.ros.nodes import run_deploy, run_record, run_sim


def run_ros_command(args: argparse.Namespace) -> int:
    """Run a ``ros`` subcommand; a ROS graph that fails exits 3 with its reason."""
    cfg = load_bridge_cfg(args.task_id, args.config, parse_overrides(args.overrides))
    if args.ros_command == "replay":
        return _replay(args, cfg)
    try:
        if args.ros_command == "record":
            print(json.dumps(run_record(args.task_id, cfg, args.bag, duration_s=args.duration, ros=args.ros)))
            return 0
        if args.ros_command == "sim":
            report = run_sim(args.task_id, cfg, mode=args.mode, seed=args.seed, duration_s=args.duration,
                             report_path=args.report, ros=args.ros)
        else:
            report = run_deploy(args.task_id, args.checkpoint, cfg, steps=args.steps, duration_s=args.duration,
                                report_path=args.report, ros=args.ros, wait_s=args.wait)
    except RuntimeError as err:  # BridgeError, TransportError: the graph went away or never was
        print(f"embodied ros {args.ros_command}: error: {err}", file=sys.stderr)
        return 3
    summary = {k: report[k] for k in ("steps", "commands_sent", "safe_steps", "rejected", "stop_reason") if k in report}
    print(json.dumps(summary or report))
    return 0


def _replay(args: argparse.Namespace, cfg: Any) -> int:
    from embodied.sim2real.ros.bags import replay_bag

    policy_fn = None
    if args.checkpoint:
        from embodied.policies.train import load_policy
        from embodied.sim2real.ros.bridge import learner_policy

        learner, run = load_policy(args.checkpoint)
        if run["task_id"] != args.task_id:
            raise ValueError(f"checkpoint {args.checkpoint} was trained on {run['task_id']}, not {args.task_id}")
        policy_fn = learner_policy(learner)
    print(json.dumps(replay_bag(args.bag, args.task_id, cfg, policy_fn, args.rollout), indent=2))
    return 0


def record_eval_bag(task_id: str, learner: Any, path: str | Path, seed: int, task_overrides: dict[str, Any]) -> dict[str, Any]:
    """``embodied eval --record-bag``: one episode through the bridge with the family's shipped config."""
    from embodied.sim2real.ros.bags import record_episode_bag
    from embodied.sim2real.ros.bridge import learner_policy

    return record_episode_bag(task_id, learner_policy(learner), path, load_bridge_cfg(task_id), seed=seed,
                              task_overrides=task_overrides)
