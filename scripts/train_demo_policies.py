"""Train the policies `embodied demo` ships, and export them to assets/policies/.

    .venv/bin/python scripts/train_demo_policies.py            # all of them
    .venv/bin/python scripts/train_demo_policies.py Control/Pendulum-v0

Each entry is the task, the learner, its budget and overrides; the run folder is kept under
runs/demo/ so the full checkpoint and TensorBoard logs can be inspected.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from embodied.assets import ASSETS_DIR
from embodied.demo import DEMOS
from embodied.policies.train import TrainCfg, export_policy, train

# task id -> (algo, env steps, envs, learner overrides, task overrides)
RECIPES: dict[str, tuple[str, int, int, dict, dict]] = {
    "Control/Pendulum-v0": ("sac", 20_000, 1, {"learning_starts": 1000}, {}),
    "Control/InvertedPendulum-v0": ("ppo", 65_536, 1, {}, {}),
    # AACD's stage 1 alone: the privileged teacher (bench/tactile_learning.py's teacher piece,
    # 97-100 % insertion in about 7 minutes); its task computes no tactile entries, 4x faster.
    "Tactile/PegInsert-v0": ("aacd", 200_000, 16, {"teacher_steps": 200_000}, {"obs_terms": ["proprio", "privileged"]}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", nargs="*", help="task ids (default: every demo task)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    files = dict(DEMOS)
    for task_id in args.tasks or list(files):
        algo, steps, num_envs, overrides, task_overrides = RECIPES[task_id]
        run_dir = Path("runs/demo") / task_id.replace("/", "_")
        cfg = TrainCfg(total_steps=steps, num_envs=num_envs, seed=args.seed, run_dir=str(run_dir), checkpoint_every=5000,
                       eval_episodes=20)
        train(task_id, algo, cfg, task_overrides, learner_overrides=overrides)
        out = export_policy(run_dir / "checkpoint.pt", ASSETS_DIR / "policies" / files[task_id])
        summary = json.loads((run_dir / "eval.json").read_text())
        print(json.dumps({"task": task_id, "policy": str(out), "return_mean": summary["return_mean"]}))


if __name__ == "__main__":
    main()
