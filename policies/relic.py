"""ReLIC (Elawady et al. 2024): in-context RL with a transformer over a whole trial, PPO with partial updates.

A **trial** is many consecutive episodes of one task instance (one Darkroom goal, one house);
the policy attends over everything it has seen in the trial, so it can explore in the first
episodes and exploit what it found in the later ones. Per step the learner builds one token
(:class:`~embodied.policies.kv_transformer.TokenEmbed`: observation, previous action, an
episode-boundary flag, the step within the episode) and runs the causal transformer of
``kv_transformer.py`` on it with a KV cache (one token's work per step, whatever the context).

**Partial updates.** Training envs keep one context each (a shared timeline of ``max_context``
steps). Every ``update_every`` steps PPO updates on the steps since the last update while their
queries attend over the whole context so far (the older keys and values are read from the cache,
without gradient, as in Transformer-XL), the context carries on, and then the cached keys, values
and value predictions of the context are **refreshed** with the new weights (recomputed in blocks
of ``refresh_block`` queries), so acting never reads stale keys. Every ``full_update_every``-th
update is instead a **full** one over every step since the previous full update (ReLIC's
``full_updates_per_rollout``): there the gradient reaches the keys and values of the earlier chunks
too, which a partial update reads from the cache as constants. PPO's loss is
:meth:`PPO._minibatch_step`; minibatches split envs, never time. GAE runs over the trial: an
episode end inside a trial is not a done (the value of a step counts the reward of later episodes,
RL^2's objective); a trial's end is (``info[trial_done_key]``; a task without that key ends its
trial with every episode). ``gae_across_episodes=False`` cuts it at every episode end instead, as
ReLIC's own trainer does. The newest step of a chunk bootstraps from the value of the token the
env reached (``info["final_obs"]``).

**Trials and the task.** The observation entry ``trial_flag_index`` is 1 on a trial's first step
(``Nav/Darkroom-v0`` puts it last, with the previous reward just before it: the reward reaches
the policy through the observation, so ``evaluate``, which calls only ``act``, sees it too). That
flag starts a new segment: attention never crosses a trial boundary, and once no env needs the
old trial its steps are dropped from the timeline (compaction). A context longer than
``max_context`` keeps its newest half (a sliding window).

**Actions.** A categorical policy over the action vector's entries: the env receives +1 at the
chosen entry and -1 elsewhere (the "argmax of scores" convention of the Nav tasks).

**The baseline** ``--algo lstm_nav`` (:class:`LSTMNav`): the same tokens, an LSTM instead of the
transformer, memory kept across the episodes of a trial and cleared at a new one (RL^2), trained
by the same partial updates with truncated back-propagation over each chunk from the memory at
its start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import gymnasium
import torch
from torch import nn

from embodied.policies.base import Learner, ValidationPlan
from embodied.policies.buffers import gae
from embodied.policies.kv_transformer import CausalTransformer, TokenEmbed, context_mask
from embodied.policies.nets import RunningMeanStd, flat_box_dim
from embodied.policies.ppo import PPO, PPOCfg
from embodied.policies.relic_context import Context


@dataclass
class ReLICCfg(PPOCfg):
    """PPO's hyperparameters (ReLIC's: clip 0.2, 4 epochs) plus the sequence model and partial updates."""

    hidden: int = 64
    """Width of the tokens and of the transformer (or the LSTM's hidden size)."""
    layers: int = 2
    heads: int = 4
    mlp_ratio: int = 4
    sink_kv: bool = True
    """Sink-KV: a learnable (zero-initialised) key and value per head in every attention layer."""
    max_context: int = 1024
    """Steps of context each training env keeps (the cache's capacity); evaluation contexts start
    there and double when full, up to ``eval_max_context``."""
    eval_max_context: int = 65_536
    cache_dtype: Literal["float32", "bfloat16"] = "float32"
    """Precision of the KV cache (bfloat16 halves its memory; attention then runs in bfloat16)."""
    update_every: int = 100
    """Partial update period in steps per env (at most half of ``max_context``)."""
    full_update_every: int = 5
    """Every this many updates is a **full** one (ReLIC's ``updates_per_rollout / full_updates_per_rollout``):
    PPO over every step since the previous full update, with gradients through that whole span, where a
    partial update's reach only the newest chunk. Without it no gradient crosses a chunk, so a key written
    in one episode never learns to be found from the next (Darkroom's chunks are its episodes). The span,
    ``full_update_every * update_every`` steps (a Darkroom trial by default), must fit in ``max_context``;
    0: partial updates only."""
    partial_backprop: Literal["chunk", "rollout"] = "chunk"
    """How far back a partial update's gradient reaches. "chunk": the newest chunk's keys only, the older
    ones read from the cache as constants (Transformer-XL). "rollout": every step since the last full
    update is recomputed with gradients, the loss still on the newest chunk only (ReLIC's own trainer),
    so a key written in an earlier episode learns at every update, not only at full ones; the update
    then costs up to ``full_update_every`` times more."""
    refresh_block: int = 1024
    """Queries per block when the cache is recomputed after an update."""
    max_episode_steps: int = 128
    """Size of the step-within-episode embedding (later steps share the last entry)."""
    trial_flag_index: int | None = -1
    """Observation entry that is 1 on a trial's first step; None: every episode is its own trial."""
    trial_done_key: str = "trial_done"
    """``info`` key marking a step that ends a trial (GAE's done)."""
    gae_across_episodes: bool = True
    """GAE runs over the whole trial, an episode end inside it not a done (RL^2's objective: a step's
    value counts later episodes' rewards). False: every episode end is a done, as ReLIC's own trainer
    has it; a fast walk to the goal is then credited within its episode only."""
    validate_every: int = 0
    """Env steps between validations (0: none). A validation plays ``validation_trials`` whole trials
    on the task's own (training) goals and the loop keeps the policy with the best mean return as
    ``best_policy.pt``, so a run that collapses late still leaves its best policy."""
    validation_trials: int = 32
    """Trials per validation, one env each."""
    validation_trial_episodes: int = 5
    """Episodes each validation trial plays: the task's ``trial_episodes``."""
    validation_seed: int = 20_000
    """Seed of the validation env (the same trials at every validation)."""
    eval_policy: Literal["sample", "greedy"] = "sample"
    """What ``act(deterministic=True)`` (evaluation) does: sample from the policy (its exploration is part
    of in-context learning; an argmax policy can circle forever in a room it has not explored) or argmax."""
    sequence_minibatches: int = 2
    """Minibatches per epoch, each a set of envs with their whole chunk (at most one per env)."""
    update_epochs: int = 4
    learning_rate: float = 5e-4
    """Adam's first step size. On Darkroom (1M steps, 16 envs, seed 1, one-hot cells) training is unstable:
    at 5e-4 the held-out return rose from a trial's first episode to its fifth (5 -> 16; random ~1);
    at 1e-3 the training return peaked at 18 (600k steps) and collapsed; 2e-4 rose less (4 -> 7).
    ReLIC's paper uses 2e-4 with warm-up and cosine decay (``lr_warmup_steps``, ``lr_schedule``)."""
    lr_anneal_steps: int = 5_000_000
    """Cosine decay to ``lr_min`` over the default 5M-step budget (set it to a run's own budget; 0:
    constant). On Darkroom a constant 5e-4 let late training collapse (validation return 55-64 at its
    best, 21-40 at the end, three seeds); with the decay the best validation return was 68-76 (four seeds) and
    held-out success in a trial's fifth episode 0.88 against 0.73 (docs/nav_relic.md)."""
    lr_schedule: Literal["linear", "cosine"] = "cosine"
    ent_coef: float = 0.03
    """PPO's entropy bonus. At 0.01 one Darkroom seed in five never learned to search: before any
    reward, normalised advantages are scaled-up noise and the policy's entropy collapsed. At 0.03
    that seed learns, and over seeds 1-3 the fifth episode's held-out return rose from 75.5 to
    80.4, while the first episode's search is noisier (docs/nav_relic.md)."""
    clip_vloss: bool = False
    norm_obs: bool = False
    max_grad_norm: float = 1.0


@dataclass
class LSTMNavCfg(ReLICCfg):
    """The RL^2 baseline: ReLIC's tokens and partial updates with an LSTM core."""

    hidden: int = 128
    ent_coef: float = 0.01
    """Measured at 0.01 (docs/nav_relic.md); ReLIC's 0.03 is not yet measured on the LSTM."""


class _Chunk(NamedTuple):
    """What PPO's loss passes to :meth:`ReLIC._evaluate_actions`: the envs of a minibatch, the first
    position of the steps it learns from (its queries run from there to the newest step) and the first
    position recomputed with gradients (``start``, or earlier with ``partial_backprop="rollout"``)."""

    rows: torch.Tensor
    start: int
    grad_from: int


class ReLIC(PPO):
    """In-context PPO with a KV-cached causal transformer over the trial (see the module docstring)."""

    name = "relic"
    default_num_envs = 16
    # ReLIC's own Darkroom config trains for 5M steps; here 40-50 minutes on one CPU core (16 envs).
    # In-context learning shows from about 3M (docs/nav_relic.md), not at 1M.
    default_total_steps = 5_000_000

    def __init__(
        self,
        cfg: ReLICCfg,
        observation_space: gymnasium.Space,
        action_space: gymnasium.spaces.Box,
        num_envs: int,
        device: str | torch.device = "cpu",
    ) -> None:
        # PPO's loss and reward scaling are reused; its Gaussian MLPs and flat rollout buffer are not built.
        Learner.__init__(self, cfg, observation_space, action_space, num_envs, device)
        self.obs_dim = flat_box_dim(observation_space, "observation", self.name)
        self.num_actions = flat_box_dim(action_space, "action", self.name)
        if not 0 < cfg.update_every <= cfg.max_context // 2:
            raise ValueError(
                f"{self.name}: update_every={cfg.update_every} must be in [1, max_context // 2 = {cfg.max_context // 2}]"
            )
        if cfg.full_update_every < 0 or cfg.full_update_every * cfg.update_every > cfg.max_context:
            raise ValueError(
                f"{self.name}: full_update_every={cfg.full_update_every} must be >= 0 and its span "
                f"full_update_every * update_every = {cfg.full_update_every * cfg.update_every} steps "
                f"must fit in max_context={cfg.max_context}"
            )
        self.num_steps = cfg.update_every
        self.batch_size = cfg.update_every * num_envs
        self.model = self._build_model().to(self.device)
        self._params = list(self.model.parameters())
        self.optimizer = torch.optim.Adam(self._params, lr=cfg.learning_rate, eps=1e-5)
        self.obs_rms = RunningMeanStd((self.obs_dim,), self.device)
        self.return_rms = RunningMeanStd((), self.device)
        self.discounted_return = torch.zeros(num_envs, device=self.device)
        self.ctx = self._new_context(num_envs, cfg.max_context)
        self.eval_ctx: Context | None = None
        self._mode = "train"
        self._last: tuple[torch.Tensor, ...] | None = None
        self._bootstrap_token: torch.Tensor | None = None
        self.num_transitions = 0
        self.num_updates = 0
        self._record: dict[str, torch.Tensor] | None = None
        self._core_filled = True
        """False while the context holds steps taken by rollout workers that the core (cache or
        memory) has not processed yet."""
        self._updates_seen = 0
        """The driver's update count at the last rollout state (a worker's copy only)."""
        self.best_return: float | None = None
        """Best mean validation return so far (``validate_every``), None before the first."""

    # ------------------------------------------------------------------ the core (the LSTM baseline overrides these)
    def _build_model(self) -> nn.Module:
        c = self.cfg
        return CausalTransformer(
            self.obs_dim, self.num_actions, c.hidden, c.layers, c.heads, c.mlp_ratio, c.sink_kv, c.max_episode_steps
        )

    def _new_context(self, batch: int, capacity: int, max_capacity: int | None = None) -> Context:
        dtype = torch.bfloat16 if self.cfg.cache_dtype == "bfloat16" else torch.float32
        ctx = Context(batch, capacity, self.obs_dim + 3, self.num_actions, self.device, max_capacity)
        ctx.cache = self.model.new_cache(batch, capacity + 1, dtype)  # + the bootstrap token's slot
        return ctx

    def _core_step(self, ctx: Context, write: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, A) and values (B,) of the token at position ``ctx.p`` (already in ``ctx.tokens``)."""
        p = ctx.p
        mask = context_mask(ctx.seg, p, p + 1)
        logits, values = self.model(ctx.tokens[:, p : p + 1], mask, ctx.cache, p)
        return logits[:, 0], values[:, 0]

    def _core_chunk(self, ctx: Context, rows: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (b, n, A) and values (b, n) of positions ``[start, end)`` of envs ``rows``, with gradients."""
        seg = ctx.seg[rows]
        mask = context_mask(seg, start, end)
        return self.model(ctx.tokens[rows, start:end], mask, ctx.cache, start, write=False, rows=rows)

    @torch.no_grad()
    def _core_fill(self, ctx: Context, start: int, end: int) -> None:
        """Write the cache of positions ``[start, end)`` in one block (steps acted by rollout workers)."""
        self.model(ctx.tokens[:, start:end], context_mask(ctx.seg, start, end), ctx.cache, start)

    @torch.no_grad()
    def _core_refresh(self, ctx: Context) -> None:
        """Recompute the cached keys and values (and value predictions) of the whole context with the current weights."""
        block = self.cfg.refresh_block
        for start in range(0, ctx.p, block):
            end = min(ctx.p, start + block)
            _, values = self.model(ctx.tokens[:, start:end], context_mask(ctx.seg, start, end), ctx.cache, start)
            ctx.values[:, start:end] = values

    # ------------------------------------------------------------------ acting
    def _context(self, batch: int, deterministic: bool) -> Context:
        if not deterministic:
            self._mode = "train"
            return self.ctx
        if self._mode != "eval" or self.eval_ctx is None or self.eval_ctx.batch != batch:
            # A fresh evaluation: its context starts at the training context's size and grows.
            start = min(self.cfg.max_context, self.cfg.eval_max_context)
            self.eval_ctx = self._new_context(batch, start, self.cfg.eval_max_context)
        self._mode = "eval"
        return self.eval_ctx

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions (num_envs, A): +1 at the sampled (or most likely) entry, -1 elsewhere."""
        obs = obs.to(self.device, torch.float32)
        ctx = self._context(obs.shape[0], deterministic)
        new_trial = self._begin_step(ctx, obs)
        features = self._obs_features(obs)
        ctx.push(features, new_trial)
        logits, values = self._core_step(ctx)
        dist = torch.distributions.Categorical(logits=logits)
        greedy = deterministic and self.cfg.eval_policy == "greedy"
        action = logits.argmax(-1) if greedy else dist.sample()
        logprob = dist.log_prob(action)
        ctx.record_action(action, logprob, values)
        env_action = torch.nn.functional.one_hot(action, self.num_actions).float() * 2.0 - 1.0
        self._last = (env_action, action) if not deterministic else None
        self._record = None if deterministic else {"features": features, "action": action, "logprob": logprob,
                                                   "value": values}
        return env_action

    # ------------------------------------------------------------------ rollout workers
    # A worker's copy keeps its envs' context (tokens, KV cache or LSTM memory) and sends what it
    # pushed and recorded; the driver's context gets the same timeline without running the core.
    # The driver computes the chunk's cache (or memory) once, in a block, before its update needs
    # it; after each update a worker refreshes and compacts its context as the driver did.
    def rollout_state(self) -> dict[str, Any]:
        return {**self.policy_state_dict(), "num_updates": self.num_updates}

    def load_rollout_state(self, state: dict[str, Any]) -> None:
        self.load_policy_state_dict(state)
        if int(state["num_updates"]) != self._updates_seen:
            self._updates_seen = int(state["num_updates"])
            if self.ctx.p > 0:
                self._after_update(self.ctx, self._is_full_update(self._updates_seen))

    def act_memory(self) -> dict[str, Any]:
        return {"context": self.ctx.state_dict(), "updates_seen": torch.tensor(self._updates_seen)}

    def load_act_memory(self, state: dict[str, Any]) -> None:
        self.ctx.load_state_dict(state["context"])
        self._updates_seen = int(state["updates_seen"])
        self._mode = "train"

    def act_record(self) -> dict[str, torch.Tensor] | None:
        return self._record if self._mode == "train" else None

    @torch.no_grad()
    def take_act_record(self, obs: Any, action: torch.Tensor, record: dict[str, torch.Tensor]) -> None:
        ctx = self._context(action.shape[0], deterministic=False)
        new_trial = self._begin_step(ctx, obs.to(self.device, torch.float32))
        ctx.push(record["features"].to(self.device), new_trial)
        index = record["action"].to(self.device)
        ctx.record_action(index, record["logprob"].to(self.device), record["value"].to(self.device))
        self._core_filled = False  # the core has not seen these steps: fill before the update
        self._last = (action, index)

    def _begin_step(self, ctx: Context, obs: torch.Tensor) -> torch.Tensor:
        """Room for the next step in ``ctx``, and which envs (B,) begin a new trial with it."""
        if ctx.p == ctx.capacity:
            self._make_room(ctx)
        flag = self.cfg.trial_flag_index
        return obs[:, flag] > 0.5 if flag is not None else ctx.boundary.clone()

    def _obs_features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_rms.normalize(obs, self.cfg.clip_obs) if self.cfg.norm_obs else obs

    def episodes_ended(self, done: torch.Tensor) -> None:
        """Envs where ``done``: the next token carries the episode-boundary flag (memory stays: same trial)."""
        ctx = self.ctx if self._mode == "train" else self.eval_ctx
        if ctx is not None and ctx.batch == done.shape[0]:
            ctx.boundary |= done.to(self.device)

    # ------------------------------------------------------------------ storing
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
        """Store the reward and the trial-level done of the step just acted; at a chunk's end, its bootstrap token."""
        if self._last is None or self._last[0] is not action:
            raise ValueError(
                f"{self.name} stores only actions from its own act(): its context has already moved on, "
                "so other actions cannot be evaluated"
            )
        self._last = None
        dev, ctx = self.device, self.ctx
        done = (terminated | truncated).to(dev)
        trial_done = info.get(self.cfg.trial_done_key) if info else None
        trial_done = done if trial_done is None else trial_done.to(dev) | terminated.to(dev)
        return_done = trial_done if self.cfg.gae_across_episodes else done
        if self.cfg.norm_obs:
            self.obs_rms.update(obs.to(dev, torch.float32))
        t = ctx.p - 1
        ctx.rewards[:, t] = self._scale_reward(reward.to(dev, torch.float32), return_done)
        ctx.dones[:, t] = return_done.float()
        self.num_transitions += self.num_envs
        if ctx.p - ctx.p0 >= self.cfg.update_every:
            # The token the env reached, for V at the chunk's end (exact unless an episode ended there).
            features = self._obs_features(next_obs.to(dev, torch.float32))
            self._bootstrap_token = ctx.token(features, ctx.prev_action, done & ~trial_done, ctx.step_in_episode)

    def ready_to_update(self) -> bool:
        return self.ctx.p - self.ctx.p0 >= self.cfg.update_every

    # ------------------------------------------------------------------ the algorithm
    def _evaluate_actions(self, obs: _Chunk, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ctx = self.ctx
        logits, values = self._core_chunk(ctx, obs.rows, obs.grad_from, ctx.p)
        logits, values = logits[:, obs.start - obs.grad_from :], values[:, obs.start - obs.grad_from :]
        dist = torch.distributions.Categorical(logits=logits.flatten(0, 1))
        return dist.log_prob(actions), dist.entropy(), values.flatten()

    def _is_full_update(self, update_number: int) -> bool:
        """Whether update number ``update_number`` (1, 2, ...) is a full one."""
        every = self.cfg.full_update_every
        return every > 0 and update_number % every == 0

    def update(self) -> dict[str, float]:
        """PPO on the chunk since the last update (or, every ``full_update_every``-th time, on every step
        since the last full update), attending over the context; then refresh and compact."""
        cfg, ctx = self.cfg, self.ctx
        lr = self.set_learning_rate()
        full = self._is_full_update(self.num_updates + 1)
        start, p = (ctx.pf if full else ctx.p0), ctx.p
        grad_from = ctx.pf if cfg.partial_backprop == "rollout" else start
        if not self._core_filled:
            self._core_fill(ctx, ctx.p0, p)
            self._core_filled = True
        with torch.no_grad():
            values = ctx.values[:, start:p]
            if start < ctx.p0:
                # GAE reads the current weights' values (ReLIC's stale-value refresh; the recurrent
                # baseline's were acted by older ones). PPO's old log-probabilities stay the acting ones,
                # as in ReLIC: the clip then bounds how far the partial and full updates together move.
                _, values = self._core_chunk(ctx, torch.arange(self.num_envs), start, p)
            last_value = self._bootstrap_value()
            adv, ret = gae(
                ctx.rewards[:, start:p].T,
                values.T,
                ctx.dones[:, start:p].T,
                last_value,
                cfg.gamma,
                cfg.gae_lambda,
            )
            adv, ret = adv.T, ret.T  # (B, n)
        sums: dict[str, torch.Tensor] = {}
        count = 0
        for _ in range(cfg.update_epochs):
            for rows in torch.randperm(self.num_envs, device=self.device).tensor_split(
                min(cfg.sequence_minibatches, self.num_envs)
            ):
                stats = self._minibatch_step(
                    _Chunk(rows, start, grad_from),
                    ctx.actions[rows, start:p].flatten(),
                    ctx.logprobs[rows, start:p].flatten(),
                    values[rows].flatten(),
                    adv[rows].flatten(),
                    ret[rows].flatten(),
                )
                for key, value in stats.items():
                    sums[key] = sums[key] + value if key in sums else value
                count += 1
            if cfg.target_kl is not None and float(stats["losses/approx_kl"]) > cfg.target_kl:
                break
        explained_var = 1.0 - (ret - values).var() / ret.var().clamp_min(1e-8)
        self.num_updates += 1
        self._after_update(ctx, full)
        keys = list(sums)
        averages = torch.stack([sums[k] / count for k in keys] + [explained_var]).tolist()
        metrics = dict(zip([*keys, "losses/explained_variance"], averages, strict=True))
        metrics["charts/learning_rate"] = lr
        metrics["charts/context_length"] = float(ctx.p)
        metrics["charts/full_update"] = float(full)
        return metrics

    @torch.no_grad()
    def _bootstrap_value(self) -> torch.Tensor:
        """V of the token each env reached after the chunk (position ``p``, written but not kept)."""
        ctx = self.ctx
        ctx.tokens[:, ctx.p] = self._bootstrap_token
        ctx.seg[:, ctx.p] = ctx.trial_id
        _, values = self._core_step(ctx, write=False)
        return values

    def _after_update(self, ctx: Context, full: bool) -> None:
        """The context after new weights: cached keys and values recomputed, the chunk (after a full
        update, the rollout) marked as used, and steps no current trial or rollout needs dropped (a
        worker's copy does this too)."""
        self._core_refresh(ctx)
        ctx.p0 = ctx.p
        if full or not self.cfg.full_update_every:
            ctx.pf = ctx.p
            ctx.memory_f = ctx.memory0  # the recurrent baseline's memory there (None for the transformer)
        ctx.compact(ctx.trial_starts(), keep=self.cfg.max_context - self.cfg.update_every)

    def _make_room(self, ctx: Context) -> None:
        """A full context grows (evaluation, up to ``eval_max_context``); at its limit it keeps its
        current trials, or its newest half (training's chunk is never dropped)."""
        if ctx.grow():
            return
        if ctx is not self.ctx:
            ctx.p0 = ctx.pf = ctx.p  # evaluation has no chunk waiting for an update
        ctx.compact(ctx.trial_starts(), keep=ctx.capacity // 2)

    # ------------------------------------------------------------------ keeping the best policy
    def validation(self) -> ValidationPlan | None:
        """Whole trials on the training goals every ``validate_every`` steps (see ``ReLICCfg``)."""
        cfg = self.cfg
        if cfg.validate_every <= 0 or cfg.validation_trials <= 0:
            return None
        return ValidationPlan(cfg.validate_every, cfg.validation_trials, cfg.validation_seed,
                              cfg.validation_trial_episodes)

    def on_validation(self, summary: dict[str, Any], step: int) -> bool:
        """True (the loop saves ``best_policy.pt``) when the mean return over the trials is the best yet."""
        score = float(summary["return_mean"])
        if self.best_return is not None and score <= self.best_return:
            return False
        self.best_return = score
        return True

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "best_return": self.best_return,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "obs_rms": self.obs_rms.state_dict(),
            "return_rms": self.return_rms.state_dict(),
            "discounted_return": self.discounted_return.clone(),
            "context": self.ctx.state_dict(),
            "bootstrap_token": self._bootstrap_token,
            "counters": {"num_transitions": self.num_transitions, "num_updates": self.num_updates},
            "core_filled": self._core_filled,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.return_rms.load_state_dict(state["return_rms"])
        self.discounted_return.copy_(state["discounted_return"])
        self.ctx.load_state_dict(state["context"])
        self._bootstrap_token = state["bootstrap_token"]
        self.num_transitions = int(state["counters"]["num_transitions"])
        self.num_updates = int(state["counters"]["num_updates"])
        self._core_filled = bool(state.get("core_filled", True))
        self.best_return = state.get("best_return")
        self._last, self._mode, self.eval_ctx = None, "train", None

    def policy_state_dict(self) -> dict[str, Any]:
        """The model and the observation statistics: enough for ``act``."""
        return {"model": self.model.state_dict(), "obs_rms": self.obs_rms.state_dict()}

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.obs_rms.load_state_dict(state["obs_rms"])


class LSTMCore(nn.Module):
    """The RL^2 baseline's network: ReLIC's token embedding, an LSTM, policy and value heads."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: int, max_episode_steps: int) -> None:
        super().__init__()
        self.embed = TokenEmbed(obs_dim, num_actions, hidden, max_episode_steps)
        self.cell = nn.LSTMCell(hidden, hidden)
        self.policy = nn.Linear(hidden, num_actions)
        self.value = nn.Linear(hidden, 1)
        nn.init.orthogonal_(self.policy.weight, 0.01)
        nn.init.zeros_(self.policy.bias)

    def unroll(
        self, raw: torch.Tensor, starts: torch.Tensor, memory: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens (B, n, T) from ``memory`` (B, 2H), cleared where ``starts`` (B, n): logits, values, new memory."""
        x = self.embed(raw)
        keep = (~starts).unsqueeze(-1).to(memory.dtype)
        hs = []
        for t in range(raw.shape[1]):
            h, c = self.cell(x[:, t], tuple((memory * keep[:, t]).chunk(2, dim=-1)))
            memory = torch.cat([h, c], dim=-1)
            hs.append(h)
        h = torch.stack(hs, dim=1)
        return self.policy(h), self.value(h).squeeze(-1), memory


class LSTMNav(ReLIC):
    """RL^2: ReLIC's tokens and partial updates with an LSTM whose memory spans the trial."""

    name = "lstm_nav"

    def _build_model(self) -> nn.Module:
        return LSTMCore(self.obs_dim, self.num_actions, self.cfg.hidden, self.cfg.max_episode_steps)

    def _new_context(self, batch: int, capacity: int, max_capacity: int | None = None) -> Context:
        ctx = Context(batch, capacity, self.obs_dim + 3, self.num_actions, self.device, max_capacity)
        ctx.memory = torch.zeros(batch, 2 * self.cfg.hidden, device=self.device)
        ctx.memory0 = ctx.memory_f = ctx.memory.clone()
        return ctx

    def _core_step(self, ctx: Context, write: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        p = ctx.p
        logits, values, memory = self.model.unroll(ctx.tokens[:, p : p + 1], ctx.starts[:, p : p + 1], ctx.memory)
        if write:
            ctx.memory = memory
        return logits[:, 0], values[:, 0]

    def _core_chunk(self, ctx: Context, rows: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        if start not in (ctx.p0, ctx.pf):
            raise ValueError(f"{self.name}: memory is kept at the chunk's start and the rollout's, not at {start}")
        memory = ctx.memory0 if start == ctx.p0 else ctx.memory_f  # a partial or a full update's span
        logits, values, _ = self.model.unroll(ctx.tokens[rows, start:end], ctx.starts[rows, start:end], memory[rows])
        return logits, values

    def _core_refresh(self, ctx: Context) -> None:
        ctx.memory0 = ctx.memory.clone()  # the next chunk replays from here (RL^2 keeps, never recomputes, memory)

    @torch.no_grad()
    def _core_fill(self, ctx: Context, start: int, end: int) -> None:
        """The memory after positions ``[start, end)``, replayed from the chunk's start (``memory0``)."""
        _, _, ctx.memory = self.model.unroll(ctx.tokens[:, start:end], ctx.starts[:, start:end], ctx.memory0)
