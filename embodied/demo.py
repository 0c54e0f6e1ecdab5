"""``embodied demo``: shipped trained policies acting on a task of each family.

Each family adds one line to ``DEMOS``: a task id and a policy file under ``assets/policies/``
(written by ``scripts/train_demo_policies.py``). The demo evaluates each policy and a random
policy on the same seeds and prints both, so the difference training makes is visible.
"""

from __future__ import annotations

import json
import time

import torch

from embodied.assets import asset_path

DEMOS: list[tuple[str, str]] = [
    ("Control/Pendulum-v0", "control_pendulum_sac.pt"),
    ("Control/InvertedPendulum-v0", "control_inverted_pendulum_ppo.pt"),
    ("Beam/OrbitCorrection-CM1-v0", "beam_cm1_tbsac.pt"),
    ("Tactile/PegInsert-v0", "tactile_peg_insert_aacd_teacher.pt"),  # AACD stage 1: privileged state
    ("Tactile/PegInsert-v0", "tactile_peg_insert_aacd_student.pt"),  # AACD stage 2: touch and proprioception
]


class RandomPolicy:
    """Uniform random actions, the baseline every demo row is compared with."""

    name = "random"

    def __init__(self, low: torch.Tensor, high: torch.Tensor, seed: int = 0) -> None:
        self.low, self.high = low, high
        self.generator = torch.Generator().manual_seed(seed)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        n = next(iter(obs.values())).shape[0] if isinstance(obs, dict) else obs.shape[0]
        u = torch.rand((n, *self.low.shape), generator=self.generator)
        return self.low + u * (self.high - self.low)


def run_demo(episodes: int = 10) -> list[dict]:
    from embodied.policies.train import evaluate, load_policy
    from embodied.tasks import registry

    torch.set_num_threads(1)
    rows = []
    for task_id, policy_file in DEMOS:
        t0 = time.perf_counter()
        learner, run = load_policy(asset_path("policies", policy_file))
        trained = evaluate(task_id, learner, episodes, seed=123, task_overrides=run["task_overrides"])
        env = registry.make(task_id, num_envs=1)
        baseline = evaluate(task_id, RandomPolicy(env.action_low, env.action_high), episodes, seed=123)  # type: ignore[arg-type]
        row = {
            "task": task_id,
            "policy": f"{run['algo']} ({policy_file})",
            "return": round(trained["return_mean"], 1),
            "return_std": round(trained["return_std"], 1),
            "random_return": round(baseline["return_mean"], 1),
            "episodes": trained["episodes"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if "success_rate" in trained:
            row["success_rate"] = trained["success_rate"]
        rows.append(row)
        print(json.dumps(row))
    return rows
