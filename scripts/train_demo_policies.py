"""Train the policies `embodied demo` ships, and export them to assets/policies/.

    .venv/bin/python scripts/train_demo_policies.py                                  # all of them
    .venv/bin/python scripts/train_demo_policies.py control_pendulum_sac.pt          # one policy file

Each recipe is a policy file, its task, the learner, its budget and overrides; the run folder is
kept under runs/demo/<file stem>/ so the full checkpoint and TensorBoard logs can be inspected.
Recipes run in the order listed: the tactile student starts from the tactile teacher's run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from embodied.assets import ASSETS_DIR
from embodied.policies.aacd import CPU_STUDENT
from embodied.policies.train import TrainCfg, export_policy, train
from embodied.sim2real.image_augment import full_augmentation

RUNS = Path("runs/demo")

# policy file -> (task id, algo, env steps, envs, learner overrides, task overrides)
RECIPES: dict[str, tuple[str, str, int, int, dict, dict]] = {
    "control_pendulum_sac.pt": ("Control/Pendulum-v0", "sac", 20_000, 1, {"learning_starts": 1000}, {}),
    "control_inverted_pendulum_ppo.pt": ("Control/InvertedPendulum-v0", "ppo", 65_536, 1, {}, {}),
    # AACD's stage 1 alone: the privileged teacher (bench/tactile_learning.py's teacher piece,
    # 97-100 % insertion in about 7 minutes); its task computes no tactile entries, 4x faster.
    "tactile_peg_insert_aacd_teacher.pt": (
        "Tactile/PegInsert-v0", "aacd", 200_000, 16, {"teacher_steps": 200_000}, {"obs_terms": ["proprio", "privileged"]}
    ),
    # AACD's stage 2 from that teacher: the tactile-image student with the fine-tuned critic,
    # trained and evaluated under the full image augmentation (about an hour on one core).
    "tactile_peg_insert_aacd_student.pt": (
        "Tactile/PegInsert-v0",
        "aacd",
        960_000,
        16,
        CPU_STUDENT | {"critic_mode": "finetune",
                       "teacher_checkpoint": str(RUNS / "tactile_peg_insert_aacd_teacher" / "checkpoint.pt")},
        {"obs_terms": ["proprio", "tactile_image", "privileged"],
         "image_augment": dataclasses.asdict(full_augmentation())},
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policies", nargs="*", help=f"policy files (default: all of {list(RECIPES)})")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    unknown = sorted(set(args.policies) - set(RECIPES))
    if unknown:
        parser.error(f"no recipe for {unknown}; recipes: {list(RECIPES)}")
    for policy_file in args.policies or list(RECIPES):
        task_id, algo, steps, num_envs, overrides, task_overrides = RECIPES[policy_file]
        run_dir = RUNS / Path(policy_file).stem
        cfg = TrainCfg(total_steps=steps, num_envs=num_envs, seed=args.seed, run_dir=str(run_dir),
                       checkpoint_every=16_384, eval_episodes=20, progress=False)
        resume = run_dir if (run_dir / "checkpoint.pt").exists() else None  # an interrupted run goes on
        train(task_id, algo, None if resume else cfg, task_overrides, overrides, resume=resume,
              total_steps=steps if resume else None)
        out = export_policy(run_dir / "checkpoint.pt", ASSETS_DIR / "policies" / policy_file)
        summary = json.loads((run_dir / "eval.json").read_text())
        print(json.dumps({"task": task_id, "policy": str(out), "return_mean": summary["return_mean"],
                          "success_rate": summary.get("success_rate")}))


if __name__ == "__main__":
    main()
