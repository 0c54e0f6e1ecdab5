"""The Frequency-Averaged Score (FAS): how well a policy copes with slow decisions.

A policy is evaluated with k primitive env steps per decision for every k in ``lengths``
(by default the authors' 1, 2, 4, 6, ..., 30), ``episodes`` full deterministic episodes each,
through the task's :class:`~embodied.sim2real.rate.DecisionRate` adapter. The score is the
authors' normalised area (Patel and Siegelmann, ICLR 2025; see ``shared/design/srl.md``)::

    FAS = trapezoid area of (mean return + shift) over k  /  (max_reward * 30)

so a policy scoring ``max_reward`` at every k from 1 to 30 gets 29/30. The divisor is always
``max_reward * 30``, whatever ``lengths`` are: scores over other lengths are not comparable to
the paper's. ``FAS_NORMALISATION`` holds the authors' ``(max_reward, shift)`` per control task.

    result = fas_evaluate("Control/Hopper-v0", policy)
    result["score"], result["curve"]        # [(k, mean return), ...]

Ordinary policies
    Anything with ``act(obs, deterministic=...) -> (num_envs, *action_shape)``: the action is
    held for the k primitive steps of a decision (DecisionRate repeats it).
Sequence policies (the protocol)
    A policy that sets the attribute ``emits_sequences = True`` and has a method::

        act_sequence(obs, length: int, deterministic: bool = False) -> Tensor  # (num_envs, length, *action_shape)

    is asked once per decision for ``length = k`` actions, which are played one per primitive
    step (``action[:, i]`` at step i). It must accept any length from 1 to at least 30 (the
    SRL actor unrolls its GRU that far) and keeps any per-decision state of its own. The rate
    adapter is built with ``action_sequence=True`` for it.

The task's own overrides and adapters (``task_overrides``, ``adapters``, as stored in a run)
are applied; a decision rate among them is replaced by FAS's own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from embodied.policies.train import evaluate

FAS_LENGTHS: tuple[int, ...] = (1, *range(2, 31, 2))
"""The authors' sequence lengths: 1, 2, 4, 6, ..., 30 primitive steps per decision."""
FAS_HORIZON = 30
"""The authors' divisor is ``max_reward * FAS_HORIZON`` (the longest length they evaluate)."""
FAS_NORMALISATION: dict[str, tuple[float, float]] = {
    "Control/Pendulum-v0": (1350.0, 1550.0),
    "Control/InvertedPendulum-v0": (1000.0, 0.0),
    "Control/Reacher-v0": (60.0, 65.0),
    "Control/Hopper-v0": (3600.0, 0.0),
    "Control/HalfCheetah-v0": (17000.0, 0.0),
}
"""Task id -> (max_reward, shift): returns are shifted by ``shift`` and divided by ``max_reward``."""


def check_lengths(lengths: Sequence[int]) -> list[int]:
    """``lengths`` as a list of ints, or a ValueError saying what is wrong with them."""
    out = list(lengths)
    if len(out) < 2:
        raise ValueError(f"FAS needs at least two sequence lengths to measure an area, got {out}")
    for k in out:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"FAS sequence lengths must be ints >= 1, got {k!r} in {out}")
    if any(b <= a for a, b in pairwise(out)):
        raise ValueError(f"FAS sequence lengths must be strictly increasing, got {out}")
    return out


def fas_score(lengths: Sequence[int], returns: Sequence[float], max_reward: float, shift: float = 0.0) -> float:
    """The authors' normalised area: trapezoid area of ``returns + shift`` over ``lengths``, / (max_reward * 30)."""
    ks = check_lengths(lengths)
    ys = [float(r) + shift for r in returns]
    if len(ys) != len(ks):
        raise ValueError(f"FAS needs one return per length: {len(ks)} lengths, {len(ys)} returns")
    if not all(math.isfinite(y) for y in ys):
        raise ValueError(f"FAS returns must be finite, got {list(returns)}")
    if not max_reward > 0:
        raise ValueError(f"FAS max_reward must be > 0, got {max_reward!r}")
    area = sum((k1 - k0) * (y0 + y1) / 2 for (k0, k1), (y0, y1) in zip(pairwise(ks), pairwise(ys), strict=True))
    return area / (max_reward * FAS_HORIZON)


def normalisation(task_id: str, max_reward: float | None = None, shift: float | None = None) -> tuple[float, float]:
    """``(max_reward, shift)`` for ``task_id``: the arguments where given, else ``FAS_NORMALISATION``."""
    table_max, table_shift = FAS_NORMALISATION.get(task_id, (None, 0.0))
    max_reward = table_max if max_reward is None else max_reward
    if max_reward is None:
        known = ", ".join(sorted(FAS_NORMALISATION))
        raise ValueError(f"no FAS normalisation for {task_id!r}: pass max_reward (and shift) explicitly;"
                         f" tasks with the authors' values: {known}")
    return float(max_reward), float(table_shift if shift is None else shift)


def is_sequence_policy(policy: Any) -> bool:
    """Whether ``policy`` follows the sequence protocol (``emits_sequences`` and ``act_sequence``)."""
    return getattr(policy, "emits_sequences", False) is True and callable(getattr(policy, "act_sequence", None))


class _DecisionActor:
    """What :func:`~embodied.policies.train.evaluate` drives: one ``act`` per decision of ``length`` steps."""

    def __init__(self, policy: Any, length: int) -> None:
        self.policy = policy
        self.length = length
        self.sequence = is_sequence_policy(policy)
        self.name = getattr(policy, "name", "") or type(policy).__name__
        self.decisions = 0

    def act(self, obs: Any, deterministic: bool = True) -> torch.Tensor:
        self.decisions += 1
        if not self.sequence:
            return self.policy.act(obs, deterministic=deterministic)
        actions = self.policy.act_sequence(obs, self.length, deterministic=deterministic)
        if actions.dim() < 3 or actions.shape[1] != self.length:
            raise ValueError(f"{self.name}.act_sequence(obs, {self.length}) returned shape {tuple(actions.shape)};"
                             f" expected (num_envs, {self.length}, *action_shape)")
        return actions


def fas_evaluate(
    task_id: str,
    policy: Any,
    lengths: Sequence[int] = FAS_LENGTHS,
    episodes: int = 10,
    seed: int = 0,
    device: str = "cpu",
    num_envs: int | None = None,
    deterministic: bool = True,
    task_overrides: Mapping[str, Any] | None = None,
    adapters: Mapping[str, Any] | None = None,
    max_reward: float | None = None,
    shift: float | None = None,
) -> dict[str, Any]:
    """Evaluate ``policy`` at every sequence length and score it (see the module doc).

    Every length uses the same ``seed``, so the episodes start from the same states. Returns a
    JSON-ready dict: ``lengths``, ``returns`` (mean per length), ``curve`` ([k, mean return]),
    ``score``, ``max_reward``, ``shift``, ``sequence_policy`` and ``raw`` (per length, the
    evaluation summary with every episode's return and the number of decisions taken).
    """
    ks = check_lengths(lengths)
    max_reward, shift = normalisation(task_id, max_reward, shift)
    if episodes < 1:
        raise ValueError(f"FAS needs at least one episode per length, got episodes={episodes}")
    sequence = is_sequence_policy(policy)
    base = {key: value for key, value in dict(adapters or {}).items() if key != "rate" and not key.startswith("rate.")}
    returns: list[float] = []
    raw: dict[str, Any] = {}
    for k in ks:
        actor = _DecisionActor(policy, k)
        summary = evaluate(task_id, actor, episodes, seed=seed, device=device, num_envs=num_envs,  # type: ignore[arg-type]
                           deterministic=deterministic, task_overrides=task_overrides,
                           adapters={**base, "rate": {"steps": k, "action_sequence": sequence}})
        summary["decisions"] = actor.decisions
        returns.append(summary["return_mean"])
        raw[str(k)] = summary
    return {
        "task_id": task_id,
        "algo": getattr(policy, "name", "") or type(policy).__name__,
        "sequence_policy": sequence,
        "episodes": episodes,
        "seed": seed,
        "lengths": ks,
        "returns": returns,
        "curve": [[k, r] for k, r in zip(ks, returns, strict=True)],
        "score": fas_score(ks, returns, max_reward, shift),
        "max_reward": max_reward,
        "shift": shift,
        "raw": raw,
    }


def plot_fas(result: Mapping[str, Any], path: str | Path) -> Path:
    """Save mean return vs steps per decision, with the score in the title, as an image (Agg backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(result["lengths"], result["returns"], marker="o")
    ax.set_xlabel("primitive steps per decision")
    ax.set_ylabel(f"mean return ({result['episodes']} episodes)")
    ax.set_title(f"{result['task_id']} {result['algo']}: FAS = {result['score']:.3f}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path
