"""An online-planning baseline on SRL's learned model: the cross-entropy method (CEM) over action sequences.

The paper's reviewers found that planning with the same learned model is competitive with SRL's
sequence actor, so the suite measures it. The planner is an *evaluator-side* policy, not a
learner: it trains nothing. It wraps a trained SRL-J learner (J > 1, which has a dynamics model)
and, at every decision, searches for the sequence of ``length`` actions to play:

1. Sample ``samples`` sequences (length, act_dim) from a diagonal Gaussian in the normalised
   action space [-1, 1] (samples clipped to the bounds). The first mean is the SRL actor's own
   deterministic sequence (``init_from_actor``) or zeros; the first std is ``init_std``.
2. Roll each sequence through SRL's target dynamics model from the current observation (the
   model the actor's temporal recall imagines with), giving imagined s_0 .. s_{L-1}.
3. Score it. SRL's model predicts the next state only (no reward; see ``policies/srl.py``), so
   the score is the critic at every imagined step: ``mean_t min_i Q_i(s_t, a_t)``, the same
   quantity the temporal-recall loss maximises (without its entropy term). Q already holds the
   discounted future, so no separate terminal value is needed.
4. Refit the mean and std to the ``elites`` best sequences; repeat ``iterations`` times.

The best sequence scored in any round is emitted whole: it follows the FAS sequence protocol
(``emits_sequences = True``, ``act_sequence(obs, length, deterministic)``; ``policies/fas.py``).
Random shooting is the special case of one round of uniform samples (``random_shooting_cfg``).

    planner = planner_from_checkpoint("runs/<srl run>/checkpoint.pt", CEMPlannerCfg(samples=128))
    fas_evaluate("Control/Pendulum-v0", planner)

Sampling uses the planner's own ``torch.Generator`` (``seed``), so a planner's actions depend only
on its seed and the observations, not on the global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from embodied.policies.srl import SRL


@dataclass
class CEMPlannerCfg:
    """The CEM search's budget: ``samples * iterations`` model rollouts per decision."""

    samples: int = 64
    """Candidate sequences per round (K)."""
    elites: int = 8
    """Best sequences the Gaussian is refitted to (E <= K)."""
    iterations: int = 4
    """Rounds of sampling and refitting (I)."""
    init_std: float = 0.5
    """Std of the first round, in normalised action units."""
    min_std: float = 0.05
    """Floor on the refitted std, so the search does not collapse onto one sample."""
    init_from_actor: bool = True
    """Start the mean at the SRL actor's deterministic sequence (else at zeros)."""
    uniform_init: bool = False
    """Sample the first round uniformly in [-1, 1] (random shooting) instead of from the Gaussian."""
    use_target_model: bool = True
    """Imagine with the target model (as temporal recall does); False: the online model."""
    seed: int = 0
    """Seed of the planner's own sampling generator."""


def random_shooting_cfg(cfg: CEMPlannerCfg) -> CEMPlannerCfg:
    """Random shooting with the same number of rollouts as ``cfg``: one round of uniform samples."""
    return replace(
        cfg, samples=cfg.samples * cfg.iterations, iterations=1, uniform_init=True, init_from_actor=False, elites=1
    )


def _check_cfg(cfg: CEMPlannerCfg) -> None:
    for name in ("samples", "elites", "iterations"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"CEMPlannerCfg.{name} must be an int >= 1, got {value!r}")
    if cfg.elites > cfg.samples:
        raise ValueError(f"CEMPlannerCfg.elites ({cfg.elites}) must be <= samples ({cfg.samples})")
    if not cfg.init_std > 0 or not cfg.min_std >= 0:
        raise ValueError(f"CEMPlannerCfg needs init_std > 0 and min_std >= 0, got {cfg.init_std!r}, {cfg.min_std!r}")


class CEMPlanner:
    """CEM over action sequences through a trained SRL-J learner's model, scored by its critics."""

    name = "srl_cem"
    emits_sequences = True
    """The FAS evaluator's sequence-policy flag: every decision plays the whole planned sequence."""

    def __init__(self, srl: SRL, cfg: CEMPlannerCfg | None = None) -> None:
        if not isinstance(srl, SRL) or srl.J < 2:
            raise ValueError(
                "the CEM planner needs a trained SRL learner with J >= 2 (SRL-1 has no dynamics model),"
                f" got {type(srl).__name__} with J={getattr(srl, 'J', None)!r}"
            )
        if getattr(srl, "_policy_loaded", False):
            raise ValueError(
                "the CEM planner needs SRL's model and critics: load a training checkpoint"
                " (checkpoint.pt), not an exported policy file (actor only)"
            )
        self.cfg = cfg or CEMPlannerCfg()
        _check_cfg(self.cfg)
        self.srl = srl
        self.device = srl.device
        self.act_dim = srl.act_dim
        self.generator = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        self.prev_action = torch.zeros(0, self.act_dim, device=self.device)
        """Per env, the last normalised action played: the actor's first GRU input for the warm start."""

    # ------------------------------------------------------------------ the search
    @torch.no_grad()
    def score(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``mean_t min Q(s_t, a_t)`` (n, K) of normalised sequences ``actions`` (n, K, L, A) from ``obs`` (n, obs_dim)."""
        n, k, length, _ = actions.shape
        model = self.srl.model_target if self.cfg.use_target_model else self.srl.model
        state = obs.unsqueeze(1).expand(n, k, obs.shape[-1]).reshape(n * k, -1)
        flat = actions.reshape(n * k, length, self.act_dim)
        states = []
        for t in range(length):
            states.append(state)
            if t < length - 1:
                state = model(state, flat[:, t])
        q = self.srl.qf(torch.cat(states), flat.transpose(0, 1).reshape(length * n * k, self.act_dim)).amin(0)
        return q.view(length, n, k).mean(0)

    @torch.no_grad()
    def plan(
        self, obs: torch.Tensor, length: int, init_mean: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The best normalised sequence (n, length, A) found and its score (n,)."""
        cfg, dev = self.cfg, self.device
        n = obs.shape[0]
        mean = torch.zeros(n, length, self.act_dim, device=dev) if init_mean is None else init_mean.clone()
        std = torch.full_like(mean, cfg.init_std)
        best = mean.clamp(-1.0, 1.0)
        best_score = torch.full((n,), -torch.inf, device=dev)
        rows = torch.arange(n, device=dev)
        for i in range(cfg.iterations):
            shape = (n, cfg.samples, length, self.act_dim)
            if i == 0 and cfg.uniform_init:
                candidates = torch.rand(shape, device=dev, generator=self.generator) * 2.0 - 1.0
            else:
                noise = torch.randn(shape, device=dev, generator=self.generator)
                candidates = (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(-1.0, 1.0)
            scores = self.score(obs, candidates)  # (n, K)
            top, idx = scores.topk(cfg.elites, dim=1)
            improved = top[:, 0] > best_score
            best = torch.where(improved[:, None, None], candidates[rows, idx[:, 0]], best)
            best_score = torch.where(improved, top[:, 0], best_score)
            elites = candidates[rows[:, None], idx]  # (n, E, L, A)
            mean = elites.mean(1)
            std = elites.std(1, unbiased=False).clamp_min(cfg.min_std)
        return best, best_score

    # ------------------------------------------------------------------ the FAS protocol
    def act_sequence(self, obs: torch.Tensor, length: int, deterministic: bool = True) -> torch.Tensor:
        """(num_envs, length, act_dim) actions in env units: the best sequence CEM finds.

        The search is random whatever ``deterministic`` says (its randomness is the planner's own
        seeded generator); the emitted sequence is the best one scored, not a sample.
        """
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"act_sequence length must be an int >= 1, got {length!r}")
        obs = obs.to(self.device, torch.float32)
        n = obs.shape[0]
        if self.prev_action.shape[0] != n:
            self.prev_action = torch.zeros(n, self.act_dim, device=self.device)
        init = None
        if self.cfg.init_from_actor:
            with torch.no_grad():
                init = self.srl.actor.unroll(obs, self.prev_action, length, deterministic=True)
        best, _ = self.plan(obs, length, init)
        self.prev_action = best[:, -1].clone()
        return best * self.srl.action_scale + self.srl.action_bias

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """A sequence of SRL's J actions (num_envs, J, act_dim), as SRL-J's own ``act`` returns."""
        return self.act_sequence(obs, self.srl.J, deterministic)

    def episodes_ended(self, done: torch.Tensor) -> None:
        """A new episode starts the actor's warm start from a zero previous action."""
        if self.prev_action.shape[0] == done.shape[0]:
            self.prev_action = self.prev_action * ~done.to(self.device).unsqueeze(-1)


def planner_from_checkpoint(
    path: str | Path, cfg: CEMPlannerCfg | dict[str, Any] | None = None, device: str = "cpu"
) -> CEMPlanner:
    """A CEM planner on the SRL learner of a training checkpoint (a run folder or ``checkpoint.pt``)."""
    from embodied.policies.train import load_policy

    if isinstance(cfg, dict):
        known = {f.name for f in fields(CEMPlannerCfg)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"unknown CEM planner keys {unknown}; known: {sorted(known)}")
        cfg = CEMPlannerCfg(**cfg)
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    learner, run = load_policy(path, device)
    if run["algo"] != "srl":
        raise ValueError(f"{path} is a {run['algo']!r} run; the CEM planner needs an SRL checkpoint")
    return CEMPlanner(learner, cfg)  # type: ignore[arg-type]
