"""How well does an AACD teacher's critic value the states other policies reach?

    .venv/bin/python scripts/aacd_critic_check.py bench/results/tactile_learning/runs/teacher_seed3/checkpoint.pt

A frozen stage-2 critic (``critic_mode=frozen``) can only guide a student whose states it values
well. For each acting policy (the teacher, the teacher with extra action noise, zero-mean Gaussian
policies like an untrained student, uniform random actions) this rolls out the teacher's task and
compares the critic's value of each state with the discounted return earned from it. It prints one
JSON line per policy: the correlation, the mean value and the mean return (reward units), over the
first half of the rollout so that every return sums enough steps. Numbers in docs/tactile.md.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from embodied.policies.train import build_env, load_policy

POLICIES = ("teacher", "teacher+0.5", "teacher+1.0", "zero+0.37", "zero+0.6", "zero+1.0", "uniform")
"""``teacher+s``: the teacher's own sample plus Gaussian noise of std s (normalised action units);
``zero+s``: zero mean with std s; ``uniform``: uniform in the action box."""


def actions(policy: str, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalised actions (before clipping to [-1, 1]) of the named policy, given the teacher's Gaussian."""
    if policy == "uniform":
        return torch.rand_like(mean) * 2 - 1
    base, _, extra = policy.partition("+")
    noise = float(extra or 0.0)
    if base == "zero":
        return torch.randn_like(mean) * noise
    return mean + torch.randn_like(mean) * (std.square() + noise**2).sqrt()


def check(learner: Any, run: dict[str, Any], policy: str, num_envs: int, steps: int, seed: int) -> dict[str, Any]:
    """Roll out ``policy`` on the teacher's task; compare the teacher's critic with the returns earned."""
    env = build_env(run["task_id"], num_envs, "cpu", seed, run["task_overrides"], run.get("adapters"))
    torch.manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    values, rewards, dones = [], [], []
    for _ in range(steps):
        with torch.no_grad():
            obs_n = learner._normalize_obs(obs)
            values.append(learner.value_net(obs_n).squeeze(-1) * learner.return_rms.std)  # back to reward units
            mean, std = learner.teacher(obs_n)
            action = learner._to_env(actions(policy, mean, std))
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(torch.as_tensor(reward, dtype=torch.float32))
        dones.append(torch.as_tensor(terminated | truncated))
    env.close()
    earned = torch.zeros(steps, num_envs)
    running = torch.zeros(num_envs)
    for t in reversed(range(steps)):  # discounted return from each state, cut at episode ends
        running = rewards[t] + learner.cfg.gamma * running * (~dones[t]).float()
        earned[t] = running
    value, earned = torch.stack(values)[: steps // 2].flatten(), earned[: steps // 2].flatten()
    corr = float(np.corrcoef(value.numpy(), earned.numpy())[0, 1])
    return {"policy": policy, "correlation": round(corr, 3), "value_mean": round(float(value.mean()), 1),
            "return_mean": round(float(earned.mean()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="an aacd run's checkpoint.pt (or run folder) still in stage 1")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    torch.set_num_threads(1)
    learner, run = load_policy(args.checkpoint)
    if getattr(learner, "stage", None) != 1:
        raise SystemExit(f"{args.checkpoint} is not an AACD teacher (stage 1) checkpoint")
    for policy in args.policies.split(","):
        print(json.dumps(check(learner, run, policy, args.num_envs, args.steps, args.seed)), flush=True)


if __name__ == "__main__":
    main()
