"""Nav/ExtObjNav-v0: ReLIC's extended ObjectNav, a trial of many consecutive episodes in one house.

Task
    As Nav/ObjectNav-v0 (same observations, actions, reward, success and measures; see
    :mod:`embodied.tasks.nav.objectnav`), but the env's episode is a **trial**: one house for
    its whole length (the registry's ``max_episode_steps``, 4096 steps), holding consecutive
    ObjectNav episodes. An episode within the trial ends when the agent calls stop or after
    ``cfg.episode_steps`` (500) steps; the next one starts on the following observation with a
    new goal category and a new random start pose in the same house, so an agent that remembers
    the house across episodes can do better in later ones (in-context learning). The trial is
    never ``terminated``, only truncated at its length; the house changes only then.

    Where an episode within the trial ends, ``info["nav_episode_done"]`` is True and
    ``info["episode_index"]`` gives its index within the trial (0, 1, ...), next to its
    ``success``, ``spl``, ``soft_spl`` and ``distance_to_goal``: ReLIC reports these against the
    episode index ("number of in-context episodes"), averaged over trials;
    :class:`TrialMetrics` does that bookkeeping. ``obs["gps"]`` / ``obs["compass"]`` restart at
    each episode's start pose, as in Habitat.

Randomised
    The house per trial (from the split's seeds); the goal category and start pose per episode.

Success
    Per episode, as in Nav/ObjectNav-v0.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

from embodied.tasks.nav.objectnav import ObjectNavCfg, ObjectNavEnv

MEASURES = ("success", "spl", "soft_spl", "distance_to_goal")


def extobjnav_cfg() -> ObjectNavCfg:
    """ExtObjNav's config: ObjectNav's with ReLIC's observations (RGB, goal, GPS and compass)."""
    return ObjectNavCfg(obs_terms=("rgb", "gps", "compass", "objectgoal"))


class ExtObjNavEnv(ObjectNavEnv):
    """Batched ExtObjNav trials (see the module docstring)."""

    default_max_episode_steps = 4096

    def _episode_out_of_time(self) -> torch.Tensor:
        return self.nav_steps >= self.cfg.episode_steps

    def _end_episodes(self, done: torch.Tensor, stop: torch.Tensor) -> torch.Tensor:
        """Start the next episode of the trial where one ended (same house); the trial goes on."""
        ended = done.nonzero().squeeze(-1)
        if len(ended):
            self.episode_index[ended] += 1
            self._start_episodes(ended, new_house=False)
        return torch.zeros_like(done)


class TrialMetrics:
    """Mean of each measure per episode index within the trial, over every trial seen (ReLIC's curves).

    metrics = TrialMetrics()
    ... obs, reward, terminated, truncated, info = env.step(action); metrics.add(info)
    metrics.summary()   # {"success": {0: 0.1, 1: 0.3, ...}, "spl": {...}, ..., "count": {0: 20, ...}}
    """

    def __init__(self) -> None:
        self.sums: dict[str, dict[int, float]] = {m: defaultdict(float) for m in MEASURES}
        self.counts: dict[int, int] = defaultdict(int)

    def add(self, info: dict[str, Any]) -> None:
        done = info["nav_episode_done"].nonzero().squeeze(-1).tolist()
        for env in done:
            index = int(info["episode_index"][env])
            self.counts[index] += 1
            for m in MEASURES:
                self.sums[m][index] += float(info[m][env])

    def summary(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {
            m: {i: self.sums[m][i] / n for i, n in sorted(self.counts.items())} for m in MEASURES
        }
        out["count"] = {i: float(n) for i, n in sorted(self.counts.items())}
        return out
