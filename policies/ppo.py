"""Proximal Policy Optimization (Schulman et al. 2017), clipped objective, on the batched contract.

Per batched env step the loop calls ``act`` (sample from a diagonal Gaussian; the env gets
the sample clipped to the action bounds, the log-probability of the unclipped sample is
kept) and ``observe`` (store the step; a truncated episode's reward gains
``gamma * V(final_obs)``, so time limits are bootstrapped). When the rollout of ``num_steps``
steps per env is full, ``update`` computes GAE advantages and runs ``update_epochs`` epochs
of minibatch updates of the clipped policy loss, the (clipped) value loss and an entropy
bonus. Defaults follow CleanRL's ``ppo_continuous_action.py`` (which matches SB3/OpenAI
baselines), including observation normalisation and reward scaling by the running standard
deviation of the discounted return (Gymnasium's ``NormalizeObservation`` / ``NormalizeReward``,
done here inside the learner, with their statistics saved in ``state_dict``).

The Gaussian lives in normalised action units: ``[-1, 1]`` maps onto the env's bounds, so the
initial standard deviation means the same on every task (identical to CleanRL where the
bounds are already ``[-1, 1]``, as on the MuJoCo tasks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium
import torch
from torch import nn

from embodied.policies.base import Learner
from embodied.policies.buffers import RolloutBuffer
from embodied.policies.nets import GaussianActor, RunningMeanStd, ValueNet, action_scale_bias, flat_box_dim


@dataclass
class PPOCfg:
    """Hyperparameters of PPO; the defaults are CleanRL's for continuous control."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the actor and of the critic (tanh activations)."""
    num_steps: int | None = None
    """Steps per env per rollout; None: 2048 // num_envs (CleanRL's 2048-transition batch)."""
    learning_rate: float = 3e-4
    """Adam learning rate (one optimiser for actor and critic, eps 1e-5)."""
    lr_anneal_steps: int = 0
    """Anneal the learning rate to ``lr_min`` over this many env steps (CleanRL anneals linearly
    over the whole run: set the run's total steps); 0 keeps it constant."""
    lr_schedule: Literal["linear", "cosine"] = "linear"
    """Shape of that anneal: linear (CleanRL's) or cosine (ReLIC's)."""
    lr_warmup_steps: int = 0
    """Ramp the learning rate up linearly from 0.1 % over this many env steps first (ReLIC's warm-up)."""
    lr_min: float = 0.0
    """Where the anneal ends."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    update_epochs: int = 10
    """Passes over each rollout."""
    num_minibatches: int = 32
    """Minibatches per pass."""
    norm_adv: bool = True
    """Normalise advantages within each minibatch."""
    clip_coef: float = 0.2
    """Policy ratio clipping range."""
    clip_vloss: bool = True
    """Clip the value update around the old values, as in CleanRL/OpenAI baselines."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Gradient norm clip, over all parameters (per optimiser param group where a learner has several)."""
    target_kl: float | None = None
    """Stop the epochs early once the approximate KL exceeds this (None: never)."""
    init_log_std: float = 0.0
    """Initial log standard deviation of the policy, in normalised action units."""
    norm_obs: bool = True
    """Normalise observations by their running mean and standard deviation."""
    norm_reward: bool = True
    """Scale rewards by the running standard deviation of the discounted return."""
    clip_obs: float = 10.0
    """Clip normalised observations to [-clip_obs, clip_obs]."""
    clip_reward: float = 10.0
    """Clip scaled rewards to [-clip_reward, clip_reward]."""


def scheduled_lr(cfg: PPOCfg, steps_done: int) -> float:
    """The learning rate after ``steps_done`` env steps: warm-up, then a linear or cosine anneal to ``lr_min``."""
    lr = cfg.learning_rate
    if cfg.lr_warmup_steps and steps_done < cfg.lr_warmup_steps:
        return lr * (1e-3 + (1.0 - 1e-3) * max(steps_done, 0) / cfg.lr_warmup_steps)
    if not cfg.lr_anneal_steps:
        return lr
    progress = min(max(steps_done - cfg.lr_warmup_steps, 0) / cfg.lr_anneal_steps, 1.0)
    shape = 1.0 - progress if cfg.lr_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr_min + (lr - cfg.lr_min) * shape


class PPO(Learner):
    """PPO with a Gaussian policy for continuous (Box) actions and flat Box observations."""

    name = "ppo"
    default_num_envs = 16

    def __init__(
        self,
        cfg: PPOCfg,
        observation_space: gymnasium.Space,
        action_space: gymnasium.spaces.Box,
        num_envs: int,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(cfg, observation_space, action_space, num_envs, device)
        obs_dim = flat_box_dim(observation_space, "observation", "PPO")
        act_dim = flat_box_dim(action_space, "action", "PPO")
        dev = self.device
        self.num_steps = cfg.num_steps or max(1, 2048 // num_envs)
        self.batch_size = self.num_steps * num_envs
        if self.batch_size < cfg.num_minibatches:
            raise ValueError(
                f"PPO: a rollout of {self.num_steps} steps x {num_envs} envs = {self.batch_size} transitions "
                f"cannot be split into num_minibatches={cfg.num_minibatches}; raise num_steps or lower num_minibatches"
            )
        self.action_scale, self.action_bias = action_scale_bias(action_space, dev)

        # ------------------------------------------------------------ networks, optimiser, statistics
        self.actor = GaussianActor(obs_dim, act_dim, cfg.hidden_sizes, cfg.init_log_std).to(dev)
        self.critic = ValueNet(obs_dim, cfg.hidden_sizes).to(dev)
        self._params = [*self.actor.parameters(), *self.critic.parameters()]
        self.optimizer = torch.optim.Adam(self._params, lr=cfg.learning_rate, eps=1e-5, fused=True)
        self.obs_rms = RunningMeanStd((obs_dim,), dev)
        self.return_rms = RunningMeanStd((), dev)
        self.discounted_return = torch.zeros(num_envs, device=dev)
        """Per-env running discounted return, whose spread scales the rewards."""
        self.buffer = RolloutBuffer(self.num_steps, num_envs, obs_dim, act_dim, cfg.gamma, dev)
        self.num_transitions = 0
        self.num_updates = 0
        self._last: tuple[torch.Tensor, ...] | None = None
        """What ``act`` computed for ``observe``: (env action, normalised obs, sample, log-prob, value)."""

    # ------------------------------------------------------------------ plumbing
    def _normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.to(self.device, torch.float32)
        return self.obs_rms.normalize(obs, self.cfg.clip_obs) if self.cfg.norm_obs else obs

    def _to_env(self, action: torch.Tensor) -> torch.Tensor:
        return action.clamp(-1.0, 1.0) * self.action_scale + self.action_bias

    def _scale_reward(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """Gymnasium's NormalizeReward: divide by the running std of the discounted return, then clip."""
        if not self.cfg.norm_reward:
            return reward
        self.discounted_return.mul_(self.cfg.gamma).add_(reward)
        self.return_rms.update(self.discounted_return)
        self.discounted_return.masked_fill_(done, 0.0)
        scaled = reward / self.return_rms.std
        return scaled.clamp(-self.cfg.clip_reward, self.cfg.clip_reward)

    # ------------------------------------------------------------------ acting and storing
    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions (num_envs, act_dim) in env units: the Gaussian's mean, or a sample, clipped to the bounds."""
        obs_n = self._normalize_obs(obs)
        mean, std = self.actor(obs_n)
        if deterministic:
            return self._to_env(mean)
        sample = torch.addcmul(mean, std, torch.randn_like(mean))
        env_action = self._to_env(sample)
        value = self.critic(obs_n)
        self._last = (env_action, obs_n, sample, GaussianActor.log_prob(mean, std, sample), value)
        return env_action

    @torch.no_grad()
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
        """Store one batched step; ``next_obs`` (``info["final_obs"]``) bootstraps truncated episodes."""
        dev = self.device
        if self._last is not None and self._last[0] is action:
            _, obs_n, sample, log_prob, value = self._last
        else:  # actions that did not come from ``act``: evaluate them as given
            obs_n = self._normalize_obs(obs)
            sample = (action.to(dev) - self.action_bias) / self.action_scale
            mean, std = self.actor(obs_n)
            log_prob, value = GaussianActor.log_prob(mean, std, sample), self.critic(obs_n)
        self._last = None
        terminated, truncated = terminated.to(dev), truncated.to(dev)
        if self.cfg.norm_obs:
            self.obs_rms.update(obs.to(dev, torch.float32))
        reward = self._scale_reward(reward.to(dev, torch.float32), terminated | truncated)
        next_value = self.critic(self._normalize_obs(next_obs))
        self.buffer.add(obs_n, sample, log_prob, value, reward, terminated, truncated, next_value)
        self.num_transitions += self.num_envs

    def ready_to_update(self) -> bool:
        return self.buffer.full

    # ------------------------------------------------------------------ the algorithm
    def set_learning_rate(self) -> float:
        """Set (and return) this update's learning rate from the schedule in the config."""
        lr = scheduled_lr(self.cfg, self.num_transitions - self.batch_size)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # a group with its own rate keeps its ratio
        return lr

    def update(self) -> dict[str, float]:
        """``update_epochs`` passes of minibatch PPO updates over the full rollout, then a fresh rollout."""
        cfg = self.cfg
        lr = self.set_learning_rate()

        advantages, returns = self.buffer.advantages_and_returns(cfg.gae_lambda)
        buf = self.buffer
        b_obs = buf.obs.flatten(0, 1)
        b_actions = buf.actions.flatten(0, 1)
        b_logprobs, b_values = buf.logprobs.flatten(), buf.values.flatten()
        b_advantages, b_returns = advantages.flatten(), returns.flatten()

        sums: dict[str, torch.Tensor] = {}
        num_minibatches = 0
        for _ in range(cfg.update_epochs):
            for idx in torch.randperm(self.batch_size, device=self.device).tensor_split(cfg.num_minibatches):
                stats = self._minibatch_step(
                    b_obs[idx], b_actions[idx], b_logprobs[idx], b_values[idx], b_advantages[idx], b_returns[idx]
                )
                for key, value in stats.items():
                    sums[key] = sums[key] + value if key in sums else value
                num_minibatches += 1
            if cfg.target_kl is not None and float(stats["losses/approx_kl"]) > cfg.target_kl:
                break

        residual_var = (b_returns - b_values).var()
        explained_var = 1.0 - residual_var / b_returns.var().clamp_min(1e-8)
        buf.reset()
        self.num_updates += 1
        keys = list(sums)
        values = torch.stack([sums[k] / num_minibatches for k in keys] + [explained_var]).tolist()  # one host sync
        metrics = dict(zip([*keys, "losses/explained_variance"], values, strict=True))
        metrics["charts/learning_rate"] = lr
        return metrics

    def _evaluate_actions(self, obs: Any, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities (B,) and entropies (B,) of ``actions`` under the current policy, and values (B,).

        The one place the loss meets the networks: a learner with another action distribution or a
        trunk shared by actor and critic (ReLIC's transformer) overrides this and keeps the loss.
        """
        mean, std = self.actor(obs)
        return GaussianActor.log_prob(mean, std, actions), GaussianActor.entropy(std), self.critic(obs)

    def _minibatch_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        old_logprobs: torch.Tensor,
        old_values: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        new_logprobs, entropy, values = self._evaluate_actions(obs, actions)
        logratio = new_logprobs - old_logprobs
        ratio = logratio.exp()
        if cfg.norm_adv:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        # Clipped surrogate objective (a loss to minimise).
        pg_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()

        if cfg.clip_vloss:
            clipped = old_values + (values - old_values).clamp(-cfg.clip_coef, cfg.clip_coef)
            v_loss = 0.5 * torch.max((values - returns).square(), (clipped - returns).square()).mean()
        else:
            v_loss = 0.5 * (values - returns).square().mean()
        entropy = entropy.mean()
        loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss

        for p in self._params:
            p.grad = None
        loss.backward()
        for group in self.optimizer.param_groups:  # one group: the global clip; more: each on its own
            nn.utils.clip_grad_norm_(group["params"], cfg.max_grad_norm)
        self.optimizer.step()

        with torch.no_grad():
            return {
                "losses/policy_loss": pg_loss.detach(),
                "losses/value_loss": v_loss.detach(),
                "losses/entropy": entropy.detach(),
                "losses/old_approx_kl": (-logratio).mean(),
                "losses/approx_kl": ((ratio - 1) - logratio).mean(),
                "losses/clipfrac": ((ratio - 1.0).abs() > cfg.clip_coef).float().mean(),
            }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "obs_rms": self.obs_rms.state_dict(),
            "return_rms": self.return_rms.state_dict(),
            "discounted_return": self.discounted_return.clone(),
            "buffer": self.buffer.state_dict(),
            "counters": {"num_transitions": self.num_transitions, "num_updates": self.num_updates},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.return_rms.load_state_dict(state["return_rms"])
        self.discounted_return.copy_(state["discounted_return"])
        self.buffer.load_state_dict(state["buffer"])
        self.num_transitions = int(state["counters"]["num_transitions"])
        self.num_updates = int(state["counters"]["num_updates"])
        self._last = None

    def policy_state_dict(self) -> dict[str, Any]:
        """The actor and the observation statistics: enough for ``act``."""
        return {"actor": self.actor.state_dict(), "obs_rms": self.obs_rms.state_dict()}

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.obs_rms.load_state_dict(state["obs_rms"])
