"""Soft Actor-Critic (Haarnoja et al. 2018, with automatic entropy tuning) on the batched contract.

Per batched env step the loop calls ``act`` (uniform random actions until
``learning_starts`` transitions are stored), ``observe`` (store ``(obs, action, reward,
final_obs, terminated)`` for every env: truncation is bootstrapped through) and, once
learning has started, ``update``, which takes ``updates_per_step`` gradient steps:

1. critic: regress both Q functions onto ``r + gamma (1 - terminated) (min Q_target(s', a') - alpha log pi(a'|s'))``;
2. actor: minimise ``alpha log pi(a|s) - min Q(s, a)`` (every ``policy_frequency`` steps,
   then that many actor steps, so the actor/critic step ratio stays 1);
3. temperature: move ``log alpha`` so the policy's entropy tracks ``target_entropy``;
4. target critic: Polyak-average towards the critic (every ``target_network_frequency`` steps).

Actions are normalised to [-1, 1] inside the learner (actor output, replay buffer, critic
input) and mapped onto the env's bounds only in ``act``.

Speed: the twin critics are one batched ensemble network, the actor loss takes gradients
through the critic's inputs only (not its weights), the optimisers are fused, and nothing
in the per-step path leaves torch (metrics become floats every ``metrics_interval`` updates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium
import torch
from torch.nn import functional as F

from embodied.policies.base import Learner
from embodied.policies.buffers import ReplayBuffer
from embodied.policies.nets import EnsembleQ, TanhGaussianActor, action_scale_bias, flat_box_dim, polyak_update


@dataclass
class SACCfg:
    """Hyperparameters of SAC; the defaults follow Stable-Baselines3 / CleanRL."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the actor and of each Q network."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity, in transitions (all envs together)."""
    batch_size: int = 256
    """Transitions per gradient step."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak coefficient of the target critic update (1 = hard copy)."""
    learning_starts: int = 5000
    """Transitions (all envs together) collected with uniform random actions before learning.
    CleanRL's value: enough varied data that the first critic updates do not overfit a few
    episodes (SB3 uses 100; small tasks such as Pendulum learn fine from ~1000)."""
    policy_lr: float = 3e-4
    """Adam learning rate of the actor."""
    q_lr: float = 3e-4
    """Adam learning rate of the critics (CleanRL uses 1e-3, SB3 3e-4)."""
    autotune: bool = True
    """Tune the entropy coefficient alpha automatically towards ``target_entropy``."""
    alpha: float = 1.0
    """Initial alpha with ``autotune`` (as in SB3 and CleanRL), the fixed alpha without."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log(alpha)."""
    target_entropy: float | None = None
    """Entropy target of the normalised actions; None: ``-action_dim``."""
    updates_per_step: int = 1
    """Gradient steps per batched env step (the update-to-data ratio is this / num_envs)."""
    policy_frequency: int = 1
    """Update the actor (and alpha) every this many gradient steps, then this many times (CleanRL uses 2)."""
    target_network_frequency: int = 1
    """Polyak-update the target critic every this many gradient steps."""
    metrics_interval: int = 100
    """Measure the metrics ``update()`` returns every this many calls (one host sync); in between
    it returns the latest measurement again."""
    fused_optimizer: bool = True
    """Adam as one fused kernel per parameter group and step, without ``torch.optim``'s per-call
    bookkeeping (the same update; ~5 % more SAC steps/s on CPU). False: ``torch.optim.Adam``."""


class SAC(Learner):
    """Soft Actor-Critic with twin ensemble critics for continuous (Box) actions and flat Box observations."""

    name = "sac"
    default_num_envs = 1

    def __init__(
        self,
        cfg: SACCfg,
        observation_space: gymnasium.Space,
        action_space: gymnasium.spaces.Box,
        num_envs: int,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(cfg, observation_space, action_space, num_envs, device)
        obs_dim = flat_box_dim(observation_space, "observation", "SAC")
        act_dim = flat_box_dim(action_space, "action", "SAC")
        if not action_space.is_bounded():
            raise ValueError(f"SAC squashes actions into the action space's bounds, which must be finite; got {action_space!r}")
        dev = self.device
        self.act_dim = act_dim
        self.action_scale, self.action_bias = action_scale_bias(action_space, dev)

        # ------------------------------------------------------------ networks and optimisers
        self.actor = TanhGaussianActor(obs_dim, act_dim, cfg.hidden_sizes).to(dev)
        self.qf = EnsembleQ(obs_dim, act_dim, cfg.hidden_sizes).to(dev)
        self.qf_target = EnsembleQ(obs_dim, act_dim, cfg.hidden_sizes).to(dev)
        self.qf_target.load_state_dict(self.qf.state_dict())
        self.qf_target.requires_grad_(False)
        self.log_alpha = torch.tensor(float(cfg.alpha), device=dev).log().requires_grad_(cfg.autotune)
        self.alpha = self.log_alpha.detach().exp()
        self.target_entropy = float(cfg.target_entropy) if cfg.target_entropy is not None else -float(act_dim)
        self._build_optimizers()

        self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim, act_dim, dev)
        self.num_transitions = 0
        """Transitions observed so far (all envs together)."""
        self.num_updates = 0
        """Calls of ``update()`` so far."""
        self.num_gradient_steps = 0
        self._metrics: dict[str, float] = {}
        self._policy_loaded = False
        """Set by ``load_policy_state_dict``: act with the loaded actor, never randomly."""

    # ------------------------------------------------------------------ acting and storing
    def _build_optimizers(self) -> None:
        """Adam for the critics, and one for the actor and log(alpha); subclasses that replace
        ``actor``/``qf``/``qf_target`` call this again."""
        cfg = self.cfg
        # The actor and log(alpha) losses share no parameters: one backward and one optimiser
        # step (two parameter groups) serve both.
        actor_groups = [(list(self.actor.parameters()), cfg.policy_lr)]
        if cfg.autotune:
            actor_groups.append(([self.log_alpha], cfg.alpha_lr))
        self.q_opt = make_adam([(list(self.qf.parameters()), cfg.q_lr)], cfg.fused_optimizer)
        self.actor_opt = make_adam(actor_groups, cfg.fused_optimizer)
        self._q_params = list(self.qf.parameters())
        self._actor_params = [p for params, _ in actor_groups for p in params]
        self._q_target_params = list(self.qf_target.parameters())

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions (num_envs, act_dim) in env units: uniform random before ``learning_starts``, else the actor's."""
        if not deterministic and self.num_transitions < self.cfg.learning_starts and not self._policy_loaded:
            normalised = torch.rand(obs.shape[0], self.act_dim, device=self.device) * 2.0 - 1.0
        else:
            with torch.no_grad():
                normalised = self.actor(obs.to(self.device, torch.float32), deterministic)
        return normalised * self.action_scale + self.action_bias

    def observe(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Store the batch of transitions; ``truncated`` is deliberately unused (time limits are bootstrapped)."""
        dev = self.device
        normalised = ((action.to(dev) - self.action_bias) / self.action_scale).clamp(-1.0, 1.0)
        self.buffer.add(obs.to(dev), normalised, reward.to(dev), next_obs.to(dev), terminated.to(dev))
        self.num_transitions += obs.shape[0]

    def ready_to_update(self) -> bool:
        return self.num_transitions >= self.cfg.learning_starts

    # ------------------------------------------------------------------ the algorithm
    def update(self) -> dict[str, float]:
        """``updates_per_step`` gradient steps. Returns the metrics of the latest measured step:
        they are measured (one host sync) every ``metrics_interval`` calls and repeated in between."""
        log = self.num_updates % self.cfg.metrics_interval == 0
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(self.cfg.updates_per_step):
            metrics = self._gradient_step(log)
        self.num_updates += 1
        if log:
            values = torch.stack(list(metrics.values())).tolist()  # one host sync
            self._metrics = dict(zip(metrics, values, strict=True))
        return dict(self._metrics)

    def _gradient_step(self, log: bool) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        batch = self.buffer.sample(cfg.batch_size)

        # Critic: soft Bellman target from the target critic; terminal states have no future.
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(batch.next_obs)
            next_q = self.qf_target(batch.next_obs, next_action).amin(0)
            next_v = torch.addcmul(next_q, self.alpha, next_log_prob, value=-1.0)
            target = torch.addcmul(batch.reward, 1.0 - batch.terminated, next_v, value=cfg.gamma)
        q = self.qf(batch.obs, batch.action)  # (2, B)
        qf_loss = F.mse_loss(q, target.expand_as(q)) * q.shape[0]  # the sum of the members' MSEs
        _zero_grad(self._q_params)
        qf_loss.backward()
        self.q_opt.step()

        # Actor and temperature, delayed as in TD3/CleanRL.
        metrics: dict[str, torch.Tensor] = {}
        if self.num_gradient_steps % cfg.policy_frequency == 0:
            metrics = self._actor_steps(lambda: self._actor_loss(batch.obs), log)

        # Target critic: Polyak averaging.
        if self.num_gradient_steps % cfg.target_network_frequency == 0:
            polyak_update(self._q_target_params, self._q_params, cfg.tau)
        self.num_gradient_steps += 1

        if log:
            qf_losses = (q.detach() - target).pow(2).mean(1)
            metrics |= {
                "losses/qf1_values": q[0].detach().mean(),
                "losses/qf2_values": q[1].detach().mean(),
                "losses/qf1_loss": qf_losses[0],
                "losses/qf2_loss": qf_losses[1],
                "losses/qf_loss": qf_losses.mean(),
                "losses/alpha": self.alpha,
            }
        return metrics

    def _actor_loss(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mean(alpha log pi(a|s) - min Q(s, a))`` with a ~ pi(s), and the log-probs."""
        action, log_prob = self.actor.sample(obs)
        q_pi = self.qf(obs, action, detach_params=True).amin(0)
        return (self.alpha * log_prob - q_pi).mean(), log_prob

    def _actor_steps(self, actor_loss: Callable[[], tuple[torch.Tensor, torch.Tensor]], log: bool) -> dict[str, torch.Tensor]:
        """``policy_frequency`` steps of the actor and temperature on ``actor_loss()`` (loss, log-probs).

        Both losses share one backward pass and one optimiser. Subclasses change the loss only.
        """
        cfg = self.cfg
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(cfg.policy_frequency):
            loss_pi, log_prob = actor_loss()
            loss = loss_pi
            if cfg.autotune:
                # d/d log(alpha) of -log(alpha) * (log pi + target entropy), averaged over the batch.
                entropy_gap = log_prob.detach().mean() + self.target_entropy
                alpha_loss = -self.log_alpha * entropy_gap
                loss = loss + alpha_loss
            _zero_grad(self._actor_params)
            loss.backward()
            self.actor_opt.step()
            if cfg.autotune:
                self.alpha = self.log_alpha.detach().exp()
                if log:
                    metrics["losses/alpha_loss"] = alpha_loss.detach()
        if log:
            metrics["losses/actor_loss"] = loss_pi.detach()
            metrics["losses/entropy"] = -log_prob.detach().mean()
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "qf": self.qf.state_dict(),
            "qf_target": self.qf_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_opt": self.actor_opt.state_dict(),
            "q_opt": self.q_opt.state_dict(),
            "buffer": self.buffer.state_dict(),
            "counters": {
                "num_transitions": self.num_transitions,
                "num_updates": self.num_updates,
                "num_gradient_steps": self.num_gradient_steps,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.qf.load_state_dict(state["qf"])
        self.qf_target.load_state_dict(state["qf_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.alpha = self.log_alpha.detach().exp()
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.q_opt.load_state_dict(state["q_opt"])
        self.buffer.load_state_dict(state["buffer"])
        counters = state["counters"]
        self.num_transitions = int(counters["num_transitions"])
        self.num_updates = int(counters["num_updates"])
        self.num_gradient_steps = int(counters["num_gradient_steps"])

    def policy_state_dict(self) -> dict[str, Any]:
        """Only the actor (a few hundred kB), enough for ``act``."""
        return {"actor": self.actor.state_dict()}

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self._policy_loaded = True

    def rollout_state(self) -> dict[str, Any]:
        """The actor and the transition count, so that workers act uniformly at random until
        ``learning_starts`` as this learner does."""
        return {"actor": self.actor.state_dict(), "num_transitions": self.num_transitions}

    def load_rollout_state(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.num_transitions = int(state["num_transitions"])


# ---------------------------------------------------------------------------- plumbing


def _zero_grad(params: list[torch.Tensor]) -> None:
    """``optimizer.zero_grad(set_to_none=True)`` without its per-call profiling overhead."""
    for p in params:
        p.grad = None


def make_adam(groups: list[tuple[list[torch.Tensor], float]], fused: bool) -> FusedAdam | torch.optim.Adam:
    """Adam over ``(params, lr)`` groups: :class:`FusedAdam`, or ``torch.optim.Adam`` if not ``fused``."""
    if fused and hasattr(torch, "_fused_adam_"):  # a private kernel: fall back if a torch release drops it
        return FusedAdam(groups)
    return torch.optim.Adam([{"params": params, "lr": lr} for params, lr in groups])


class FusedAdam:
    """Adam (no weight decay, no amsgrad) over fixed parameter groups, one fused kernel per group.

    ``torch.optim.Adam(fused=True)`` calls the same kernel, but its per-call bookkeeping
    (grouping tensors, one step counter per parameter, profiler hooks) costs about 0.1 ms per
    step on CPU: 4-5 % of a whole SAC step with 256-unit networks. All parameters here share
    one step counter. Gradients must be present (not None) when :meth:`step` is called.
    """

    def __init__(
        self, groups: list[tuple[list[torch.Tensor], float]], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        self.groups = groups
        self.betas, self.eps = betas, eps
        self.exp_avg = [[torch.zeros_like(p) for p in params] for params, _ in groups]
        self.exp_avg_sq = [[torch.zeros_like(p) for p in params] for params, _ in groups]
        self.num_steps = torch.zeros((), device=groups[0][0][0].device)  # float32, as the kernel expects

    @torch.no_grad()
    def step(self) -> None:
        self.num_steps += 1
        for (params, lr), exp_avg, exp_avg_sq in zip(self.groups, self.exp_avg, self.exp_avg_sq, strict=True):
            torch._fused_adam_(
                params, [p.grad for p in params], exp_avg, exp_avg_sq, [], [self.num_steps] * len(params),
                lr=lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0, eps=self.eps,
                amsgrad=False, maximize=False,
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_steps": self.num_steps.clone(),
            "exp_avg": [[t.clone() for t in group] for group in self.exp_avg],
            "exp_avg_sq": [[t.clone() for t in group] for group in self.exp_avg_sq],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_steps.copy_(state["num_steps"])
        for ours, theirs in ((self.exp_avg, state["exp_avg"]), (self.exp_avg_sq, state["exp_avg_sq"])):
            for group, saved in zip(ours, theirs, strict=True):
                torch._foreach_copy_(group, [t.to(group[0].device) for t in saved])
