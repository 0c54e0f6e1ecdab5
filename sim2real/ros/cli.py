"""``embodied ros sim|deploy``: the argument handling behind ``embodied/cli.py``'s ``ros`` parsers."""

from __future__ import annotations

import argparse
import json
import sys

from embodied.config import parse_overrides
from embodied.sim2real.ros.config import load_bridge_cfg
from embodied.sim2real.ros.nodes import run_deploy, run_sim


def run_ros_command(args: argparse.Namespace) -> int:
    """Run ``ros sim`` or ``ros deploy``; a ROS graph that fails exits 3 with its reason."""
    cfg = load_bridge_cfg(args.task_id, args.config, parse_overrides(args.overrides))
    try:
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
