"""Can ReLIC's transformer find a goal seen in an earlier episode? Checked by supervision, not RL.

    .venv/bin/python scripts/relic_retrieval_check.py [--iterations 300] [--random-start]

An oracle plays Darkroom trials of two episodes: in the first it walks at random and stays once it
stands on the goal; in the second, if the first found the goal, it walks straight there. The
model of ``--algo relic`` (same tokens, same default size) is trained by cross-entropy on the
oracle's actions, and the script prints its accuracy on the steps that need memory: second-episode
steps of trials whose first episode found the goal, before the agent stands on it (a policy that
ignores the context is right there about a third of the time at best). If accuracy reaches about
1 in a few hundred iterations, the architecture retrieves a rewarded cell across an episode boundary
with ease, and a ReLIC run that does not learn to is limited by its RL signal, not by the network.
"""

from __future__ import annotations

import argparse
import time

import torch

import embodied
from embodied.policies.kv_transformer import CausalTransformer, context_mask
from embodied.policies.relic import ReLICCfg
from embodied.policies.relic_context import Context
from embodied.sim.env import BatchedEnv

EPISODE = 100


def oracle_trials(env: BatchedEnv) -> tuple[Context, torch.Tensor]:
    """One trial of two episodes per env: the context of tokens and actions, and which steps need memory."""
    n = env.num_envs
    ctx = Context(n, 2 * EPISODE, env.single_observation_space.shape[0] + 3, 5, torch.device("cpu"))
    found = torch.zeros(n, dtype=torch.bool)
    need = torch.zeros(n, 2 * EPISODE, dtype=torch.bool)
    obs, _ = env.reset()
    for t in range(2 * EPISODE):
        ctx.push(obs, obs[:, -1] > 0.5)
        d = env.goal - env.pos
        toward = torch.where(d[:, 0] > 0, 4, torch.where(d[:, 0] < 0, 3, torch.where(d[:, 1] > 0, 1, 2)))
        on_goal = (d == 0).all(-1)
        known = found & (t >= EPISODE)
        action = torch.where(on_goal, 0, torch.where(known, toward, torch.randint(1, 5, (n,))))
        need[:, t] = known & ~on_goal
        ctx.record_action(action, torch.zeros(n), torch.zeros(n))
        obs, reward, terminated, truncated, _ = env.step(torch.nn.functional.one_hot(action, 5).float() * 2 - 1)
        found |= (reward > 0) & (t < EPISODE)
        ctx.boundary |= terminated | truncated
    return ctx, need


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32, help="trials per iteration")
    parser.add_argument("--random-start", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    env = embodied.make("Nav/Darkroom-v0", num_envs=args.batch, seed=args.seed, trial_episodes=2,
                        random_start=args.random_start)
    c = ReLICCfg()
    model = CausalTransformer(env.single_observation_space.shape[0], 5, c.hidden, c.layers, c.heads, c.mlp_ratio,
                              c.sink_kv, c.max_episode_steps)
    optimizer = torch.optim.Adam(model.parameters(), lr=c.learning_rate)
    t0 = time.perf_counter()
    for iteration in range(args.iterations + 1):
        ctx, need = oracle_trials(env)
        p = ctx.p
        logits, _ = model(ctx.tokens[:, :p], context_mask(ctx.seg, 0, p))
        loss = torch.nn.functional.cross_entropy(logits[need], ctx.actions[:, :p][need])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if iteration % 50 == 0:
            accuracy = float((logits.detach().argmax(-1)[need] == ctx.actions[:, :p][need]).float().mean())
            print(f"iteration {iteration:4d}  loss {loss.item():.3f}  accuracy on memory steps {accuracy:.3f}  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
