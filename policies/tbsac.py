"""TBSAC: trend-based Soft Actor-Critic for beam orbit correction (Chen et al., arXiv 2305.13869).

TBSAC is SAC (:mod:`embodied.policies.sac`, reused by subclassing: the update, the entropy
tuning, checkpoints) with three beam-control specifics:

1. **Trend front end.** The orbit tasks observe ``[dS(t-1), dS(t), S(t)]``: three rows of
   ``n = 2 n_bpms`` readings (x/y interleaved). Actor and critics each read it through a
   :class:`TrendEncoder`: a small 1-D convolution *across BPMs* whose input channels are the
   three trend rows of both planes (6 channels per BPM), then per-BPM features flattened and
   global mean/max pooled. The number of BPMs is read from the observation space, so the same
   code builds for CM1 (5 BPMs) and CM2 (4); the published network is hard-coded to 10
   readings. Observations that are not a trend matrix (the RFQ task's operator read-outs)
   use SAC's plain MLP (``front_end="auto"``).
2. **The paper's hyperparameters** as defaults: 2x256, batch 256, gamma 0.99, tau 0.005,
   learning rates 2e-4, a 3000-transition replay buffer, 500 random warm-up steps.
3. **Early stopping by validation.** Every ``validate_every`` env steps the training loop
   (:func:`embodied.policies.train.train`) evaluates the deterministic policy on a fixed set
   of ``validation_episodes`` held-out error draws (a separate env seeded with
   ``validation_seed``, never the twin) and hands the summary to :meth:`TBSAC.on_validation`.
   The best policy by (success rate, mean return) is kept in the learner's state and the loop
   writes it to ``best_policy.pt`` in the run folder; that file is what ships. The paper
   found its ~10k-step checkpoint transferred best to the real machine.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium
import torch
from torch import nn
from torch.nn import functional as F

from embodied.policies.base import ValidationPlan
from embodied.policies.nets import EnsembleQ, TanhGaussianActor, flat_box_dim
from embodied.policies.sac import SAC, SACCfg

TREND_ROWS = 3
"""``dS(t-1), dS(t), S(t)``."""


@dataclass
class TBSACCfg(SACCfg):
    """SAC's settings with TBSAC's defaults, the front end and early stopping."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    buffer_size: int = 3000
    batch_size: int = 256
    gamma: float = 0.99
    tau: float = 0.005
    learning_starts: int = 500
    policy_lr: float = 2e-4
    q_lr: float = 2e-4
    alpha_lr: float = 2e-4
    front_end: Literal["auto", "trend", "mlp"] = "auto"
    """``trend``: :class:`TrendEncoder` over the (3, 2 n_bpms) trend matrix; ``mlp``: SAC's MLP on the flat
    observation; ``auto``: ``trend`` when the observation has 6k numbers (3 rows of x/y pairs), else ``mlp``."""
    conv_channels: int = 16
    """Feature channels of each convolution layer of the trend encoder."""
    conv_kernel: int = 3
    """Kernel width of the trend encoder's convolutions, in BPMs (odd; padded so every BPM keeps a column)."""
    obs_scale_mm: float = 2.0
    """The trend encoder divides readings by this (mm), so typical inputs are O(1)."""
    validate_every: int = 1000
    """Validate the deterministic policy every this many env steps (0: never; no early stopping)."""
    validation_episodes: int = 32
    """Held-out error draws per validation (one episode each, all in one batched env)."""
    validation_seed: int = 987_654
    """Seed of the validation env: a fixed set of draws, apart from the training seeds."""


class TrendEncoder(nn.Module):
    """(B, 3 n) trend observation -> (B, out_dim) features, for any number of BPMs ``n / 2``.

    The observation is viewed as (B, 3, n_bpms, 2) -> (B, 6, n_bpms): per BPM the trend rows of
    x and y are six channels. Two 'same'-padded 1-D convolutions across BPMs mix neighbouring
    BPMs (a corrector acts on the BPMs downstream of it). The features are flattened (where
    along the line matters: each corrector's output needs it) and joined by their mean and max
    over BPMs.
    """

    def __init__(self, n_readings: int, channels: int = 16, kernel: int = 3, obs_scale: float = 1.0) -> None:
        super().__init__()
        if n_readings < 2 or n_readings % 2:
            raise ValueError(f"TrendEncoder needs x/y pairs of readings, got {n_readings} readings per row")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"TrendEncoder conv_kernel must be odd and positive, got {kernel}")
        self.n_bpms = n_readings // 2
        self.obs_scale = float(obs_scale)
        self.conv1 = nn.Conv1d(2 * TREND_ROWS, channels, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.out_dim = channels * self.n_bpms + 2 * channels

    def forward(self, obs: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        b = obs.shape[0]
        x = (obs / self.obs_scale).reshape(b, TREND_ROWS, self.n_bpms, 2).transpose(2, 3)
        x = x.reshape(b, 2 * TREND_ROWS, self.n_bpms)
        for conv in (self.conv1, self.conv2):
            w, bias = (conv.weight.detach(), conv.bias.detach()) if detach_params else (conv.weight, conv.bias)
            x = torch.relu(F.conv1d(x, w, bias, padding=conv.padding))
        return torch.cat([x.flatten(1), x.mean(-1), x.amax(-1)], dim=-1)


class TrendActor(TanhGaussianActor):
    """SAC's squashed-Gaussian actor on :class:`TrendEncoder` features."""

    def __init__(self, encoder: TrendEncoder, act_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__(encoder.out_dim, act_dim, hidden)
        self.encoder = encoder

    def _mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super()._mean_log_std(self.encoder(obs))


class TrendQ(EnsembleQ):
    """SAC's twin critics on :class:`TrendEncoder` features (one encoder shared by both members)."""

    def __init__(self, encoder: TrendEncoder, act_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__(encoder.out_dim, act_dim, hidden)
        self.encoder = encoder

    def forward(self, obs: torch.Tensor, action: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        return super().forward(self.encoder(obs, detach_params), action, detach_params)


def uses_trend_front_end(cfg: TBSACCfg, obs_dim: int) -> bool:
    """Whether ``cfg.front_end`` resolves to the trend encoder for a flat observation of ``obs_dim``."""
    fits = obs_dim % (2 * TREND_ROWS) == 0
    if cfg.front_end == "trend" and not fits:
        raise ValueError(
            f"TBSAC front_end='trend' needs the orbit tasks' trend observation [dS(t-1), dS(t), S(t)] of 3 x 2 n_bpms"
            f" numbers, got {obs_dim}; use algo.front_end=mlp (or auto) for other observations"
        )
    if cfg.front_end not in ("auto", "trend", "mlp"):
        raise ValueError(f"TBSAC front_end must be 'auto', 'trend' or 'mlp', got {cfg.front_end!r}")
    return cfg.front_end == "trend" or (cfg.front_end == "auto" and fits)


class TBSAC(SAC):
    """SAC with the trend front end, TBSAC's defaults and validation-based early stopping (module doc)."""

    name = "tbsac"
    default_num_envs = 1
    default_total_steps = 10_000  # the paper's ~10k-step checkpoint transferred best; validation picks within it

    def __init__(
        self,
        cfg: TBSACCfg,
        observation_space: gymnasium.Space,
        action_space: gymnasium.spaces.Box,
        num_envs: int,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(cfg, observation_space, action_space, num_envs, device)
        obs_dim = flat_box_dim(observation_space, "observation", "TBSAC")
        self.trend = uses_trend_front_end(cfg, obs_dim)
        if self.trend:
            self._use_trend_networks(obs_dim // TREND_ROWS)
        self.best_score: tuple[float, float] | None = None
        """(success rate, mean return) of the best validation so far."""
        self.best_actor: dict[str, torch.Tensor] | None = None
        self.best_step = -1

    def _use_trend_networks(self, n_readings: int) -> None:
        """Swap SAC's MLP actor and critics for trend-encoder ones; rebuild the optimisers over them."""
        cfg, dev = self.cfg, self.device

        def encoder() -> TrendEncoder:
            return TrendEncoder(n_readings, cfg.conv_channels, cfg.conv_kernel, cfg.obs_scale_mm)

        self.actor = TrendActor(encoder(), self.act_dim, cfg.hidden_sizes).to(dev)
        self.qf = TrendQ(encoder(), self.act_dim, cfg.hidden_sizes).to(dev)
        self.qf_target = copy.deepcopy(self.qf).requires_grad_(False)
        self._build_optimizers()

    # ------------------------------------------------------------------ early stopping
    def validation(self) -> ValidationPlan | None:
        """(every env steps, episodes, seed) for the training loop's validation hook, or None."""
        cfg = self.cfg
        if cfg.validate_every <= 0 or cfg.validation_episodes <= 0:
            return None
        return ValidationPlan(cfg.validate_every, cfg.validation_episodes, cfg.validation_seed)

    def on_validation(self, summary: dict[str, Any], step: int) -> bool:
        """Keep the actor if this validation is the best so far; True when it is (the loop then saves it)."""
        score = (float(summary.get("success_rate", 0.0)), float(summary["return_mean"]))
        if self.best_score is not None and score <= self.best_score:
            return False
        self.best_score, self.best_step = score, step
        self.best_actor = {k: v.detach().clone() for k, v in self.actor.state_dict().items()}
        return True

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["early_stopping"] = {
            "best_score": list(self.best_score) if self.best_score is not None else [],
            "best_step": self.best_step,
            "best_actor": self.best_actor or {},
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        es = state.get("early_stopping", {})
        score = es.get("best_score") or []
        self.best_score = (float(score[0]), float(score[1])) if score else None
        self.best_step = int(es.get("best_step", -1))
        self.best_actor = dict(es["best_actor"]) if es.get("best_actor") else None
