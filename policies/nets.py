"""Small networks the learners share: an MLP builder, actors, a value net and twin Q critics.

Shapes are batch-first. The SAC critic is one *ensemble* network whose weights carry a
leading member dimension, so both Q functions run in one ``torch.baddbmm`` per layer instead
of two modules: half the ops, Python calls and (on a GPU) kernel launches. On a CPU core the
256x256 matrix products dominate, and the ensemble measured about as fast as two modules.
Forward passes call the layers directly (:func:`mlp_forward`) rather than through
``nn.Sequential``, and activations work in place, to keep per-update overhead low.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import gymnasium
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
"""Range the SAC actor's log standard deviation is clamped to (as in Stable-Baselines3)."""
TANH_EPS = 1e-6
"""Keeps ``log(1 - tanh(u)^2)`` finite where tanh saturates."""


def flat_box_dim(space: gymnasium.Space, what: str, learner: str) -> int:
    """The size of a flat ``Box`` space, or a clear error for anything else."""
    if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
        shape = getattr(space, "shape", None)
        raise TypeError(
            f"{learner} needs a flat Box {what} space of shape (dim,), got {space!r} (shape {shape}). "
            f"Dict or image observations need a learner built for them; flatten the {what} or pick another learner."
        )
    return int(space.shape[0])


def action_scale_bias(space: gymnasium.spaces.Box, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, bias)`` mapping [-1, 1] onto the bounds of ``space`` (1 and 0 where a bound is infinite)."""
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    finite = np.isfinite(low) & np.isfinite(high)
    scale = np.where(finite, (high - low) / 2.0, 1.0)
    bias = np.where(finite, (high + low) / 2.0, 0.0)
    as_tensor = lambda x: torch.as_tensor(x, dtype=torch.float32, device=device)  # noqa: E731
    return as_tensor(scale), as_tensor(bias)


def mlp(
    in_dim: int,
    hidden: tuple[int, ...],
    out_dim: int,
    activation: type[nn.Module] = nn.ReLU,
    orthogonal_gain: float | None = None,
) -> nn.Sequential:
    """``Linear -> activation`` for each hidden size, then a linear output layer.

    With ``orthogonal_gain`` set, weights are orthogonal (gain sqrt(2) for hidden layers,
    ``orthogonal_gain`` for the output) and biases zero, as PPO implementations do.
    """
    layers: list[nn.Module] = []
    sizes = (in_dim, *hidden)
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), activation()]
    layers.append(nn.Linear(sizes[-1], out_dim))
    if orthogonal_gain is not None:
        linears = [m for m in layers if isinstance(m, nn.Linear)]
        for i, layer in enumerate(linears):
            nn.init.orthogonal_(layer.weight, orthogonal_gain if i == len(linears) - 1 else math.sqrt(2))
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def mlp_forward(
    linears: list[nn.Linear], x: torch.Tensor, activation_: Callable[[torch.Tensor], torch.Tensor] = torch.relu_
) -> torch.Tensor:
    """An :func:`mlp` evaluated directly on its linear layers (fewer Python calls than the modules).

    ``activation_`` works in place (``torch.relu_``, ``torch.tanh_``): a linear layer's backward
    does not need its output, so overwriting it is safe and saves a tensor per layer.
    """
    for layer in linears[:-1]:
        x = activation_(F.linear(x, layer.weight, layer.bias))
    return F.linear(x, linears[-1].weight, linears[-1].bias)


def polyak_update(targets: list[torch.Tensor], sources: list[torch.Tensor], tau: float) -> None:
    """``target += tau * (source - target)`` for each pair, in place (target networks).

    One ``lerp_`` per tensor, not ``torch._foreach_lerp_``: on the CPU the latter fragmented
    glibc's heap in SRL's update (the process grew ~2 MB per gradient step, 13 GB in a 20k-step
    run; flat with this loop), at no measurable speed difference for a few dozen tensors.
    """
    with torch.no_grad():
        for target, source in zip(targets, sources, strict=True):
            target.lerp_(source, tau)


# ---------------------------------------------------------------------------- SAC


class TanhGaussianActor(nn.Module):
    """SAC's actor: a Gaussian over pre-squash actions, squashed by tanh into [-1, 1].

    Actions come out *normalised* to [-1, 1]; the learner maps them onto the env's bounds.
    Log-probabilities are of the normalised action, so the usual target entropy
    ``-action_dim`` does not depend on the env's action units.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * act_dim)  # mean and log-std from one output layer
        self._linears = [m for m in self.net if isinstance(m, nn.Linear)]

    def _mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = mlp_forward(self._linears, obs).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action (B, act_dim) in [-1, 1] and its log-probability (B,)."""
        mean, log_std = self._mean_log_std(obs)
        noise = torch.randn_like(mean)
        action = torch.tanh(torch.addcmul(mean, log_std.exp(), noise))
        # log N(u; mean, std) - log|d tanh(u)/du|, where d tanh(u)/du = 1 - tanh(u)^2.
        gaussian = noise.square().mul_(-0.5).sub_(0.5 * math.log(2 * math.pi))  # no gradient flows here
        squash = torch.log((1.0 + TANH_EPS) - action.square())
        return action, (gaussian - log_std - squash).sum(-1)

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """An action (B, act_dim) in [-1, 1]: sampled, or the squashed mean if ``deterministic``."""
        if deterministic:
            return torch.tanh(self._mean_log_std(obs)[0])
        return self.sample(obs)[0]


class EnsembleLinear(nn.Module):
    """``num_members`` independent linear layers applied at once: (E, B, in) -> (E, B, out)."""

    def __init__(self, num_members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # the same init as nn.Linear, per member
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, detach: bool = False) -> torch.Tensor:
        w, b = (self.weight.detach(), self.bias.detach()) if detach else (self.weight, self.bias)
        if w.shape[-1] == 1:
            # One output unit: a multiply-and-sum. Autograd's bmm backward would form the input
            # gradient as a batched outer product (inner size 1), which CPU BLAS runs slowly.
            return (x * w.transpose(1, 2)).sum(-1, keepdim=True) + b
        return torch.baddbmm(b, x, w)


class EnsembleQ(nn.Module):
    """Twin (or more) Q critics as one network: ``Q(obs, action)`` -> (num_members, B)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], num_members: int = 2) -> None:
        super().__init__()
        self.num_members = num_members
        sizes = (obs_dim + act_dim, *hidden, 1)
        self.layers = nn.ModuleList(
            EnsembleLinear(num_members, a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(self, obs: torch.Tensor, action: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """Q-values (E, B). ``detach_params`` lets gradients reach the inputs only (the actor loss)."""
        x = torch.cat([obs, action], dim=-1)
        x = x.expand(self.num_members, *x.shape)
        *hidden, head = self.layers
        for layer in hidden:
            x = torch.relu_(layer(x, detach_params))  # in place: the layer's backward needs no output
        return head(x, detach_params).squeeze(-1)


# ---------------------------------------------------------------------------- PPO


class GaussianActor(nn.Module):
    """PPO's actor: a diagonal Gaussian with a state-dependent mean and a learned, state-free log-std."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], init_log_std: float = 0.0) -> None:
        super().__init__()
        self.mean = mlp(obs_dim, hidden, act_dim, nn.Tanh, orthogonal_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))
        self._linears = [m for m in self.mean if isinstance(m, nn.Linear)]

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, act_dim) and standard deviation (B, act_dim)."""
        mean = mlp_forward(self._linears, obs, torch.tanh_)
        return mean, self.log_std.exp().expand_as(mean)

    @staticmethod
    def log_prob(mean: torch.Tensor, std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Log-density (B,) of ``action`` under N(mean, std^2), summed over action dimensions."""
        z = (action - mean) / std
        return (-0.5 * z.square() - std.log()).sum(-1) - 0.5 * math.log(2 * math.pi) * mean.shape[-1]

    @staticmethod
    def entropy(std: torch.Tensor) -> torch.Tensor:
        """Entropy (B,) of N(mean, std^2)."""
        return std.log().sum(-1) + (0.5 + 0.5 * math.log(2 * math.pi)) * std.shape[-1]


class ValueNet(nn.Module):
    """PPO's critic V(obs) -> (B,): a tanh MLP with orthogonal init."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, nn.Tanh, orthogonal_gain=1.0)
        self._linears = [m for m in self.net if isinstance(m, nn.Linear)]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return mlp_forward(self._linears, obs, torch.tanh_).squeeze(-1)


class RunningMeanStd(nn.Module):
    """Running mean and variance of a stream of batches (parallel Welford), in float64 buffers.

    The statistics travel with ``state_dict`` (the sample count as extra state) and
    ``.to(device)``; float32 copies for :meth:`normalize` are refreshed on every update.
    """

    def __init__(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64, device=device))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64, device=device))
        self.register_buffer("_mean32", torch.zeros(shape, device=device), persistent=False)
        self.register_buffer("_std32", torch.ones(shape, device=device), persistent=False)
        self.count = 1e-4
        """Samples seen (a tiny prior keeps the first update well defined)."""

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold in a batch ``x`` (B, *shape)."""
        batch_var, batch_mean = torch.var_mean(x.to(torch.float64), dim=0, correction=0)
        n, total = x.shape[0], self.count + x.shape[0]
        old_w, new_w = self.count / total, n / total
        delta = batch_mean - self.mean
        self.mean.add_(delta, alpha=new_w)
        self.var.mul_(old_w).add_(batch_var, alpha=new_w).add_(delta.square(), alpha=old_w * new_w)
        self.count = total
        self._refresh()

    def _refresh(self, eps: float = 1e-8) -> None:
        self._mean32.copy_(self.mean)
        self._std32.copy_((self.var + eps).sqrt())

    def normalize(self, x: torch.Tensor, clip: float) -> torch.Tensor:
        """``(x - mean) / sqrt(var + 1e-8)``, clipped to [-clip, clip]."""
        return ((x - self._mean32) / self._std32).clamp_(-clip, clip)

    @property
    def std(self) -> torch.Tensor:
        """``sqrt(var + 1e-8)`` in float32."""
        return self._std32

    def get_extra_state(self) -> dict[str, float]:
        return {"count": self.count}

    def set_extra_state(self, state: dict[str, float]) -> None:
        self.count = float(state["count"])
        self._refresh()
