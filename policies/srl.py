"""Sequence Reinforcement Learning (SRL; Patel and Siegelmann, ICLR 2025) on the batched contract.

A real controller often decides only every J primitive steps. SRL's actor therefore emits a
*sequence* of J actions per decision, and is trained so that every action of the sequence is
good in the state it will actually be played in, states it never observes:

* **Actor**: an MLP maps the state to the initial hidden state of a GRU cell, which is stepped
  J times. Its first input is the previous action played (zeros at an episode start), then
  its own sampled action (the mean at evaluation); each step emits a tanh-Gaussian action.
  It unrolls to any length (:meth:`SRL.act_sequence`, the FAS protocol of ``policies/fas.py``).
* **Model**: an MLP predicts the next state from (state, action) (as ``s + f(s, a)``), trained
  with MSE on real primitive transitions; a Polyak copy (``model_tau``) imagines the states.
* **Critics**: SAC's twin Q networks, trained on the *primitive* single-step transitions
  inside each decision (``info["primitive"]`` of the decision-rate adapter).
* **Temporal recall** (actor loss): from a real state s_0, imagined s_1..s_{J-1} come from
  the target model driven by the actor's own actions, and
  ``sum_j alpha log pi(a_j) - min Q(s_j, a_j)`` is minimised; alpha is tuned on the mean
  log-probability over the sequence. The paper passes no gradient through the imagined states;
  ``model_gradient`` lets the loss reach each action through the states it leads to.

The replay buffer stores each primitive state together with the action played just before it
(the GRU's first input), so the critic target and the actor loss start the GRU as acting does.
One ``update()`` (one decision) takes ``updates_per_step * J`` gradient steps: one per primitive
transition stored, as SAC takes per env step.

SRL-1 is SAC, exactly: with ``J == 1`` nothing of the above is built. The learner *is* SAC
(this class subclasses it) with SAC's MLP actor, buffer and gradient step, constructed in the
same order, so the same seed and data give bit-identical networks (``tests/test_srl.py``).
A GRU actor with J=1 would be a different parameterisation, and could not equal SAC.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import gymnasium
import torch
from torch import nn
from torch.nn import functional as F

from embodied.policies.buffers import ReplayBuffer
from embodied.policies.nets import LOG_STD_MAX, LOG_STD_MIN, TANH_EPS, flat_box_dim, mlp, mlp_forward, polyak_update
from embodied.policies.sac import SAC, SACCfg, _zero_grad, make_adam


@dataclass
class SRLCfg(SACCfg):
    """SAC's hyperparameters, plus the sequence length and the dynamics model's.

    Four defaults depart from the paper's schedule to keep a training step within 1.5x SAC's
    (the paper's costs 4.75x at J=4): ``gru_size=64``, ``actor_starts=0``, ``model_every=2`` and
    ``actor_every=None`` (which changes nothing up to J = 8). ``gru_size=256 actor_starts=None
    model_every=1 actor_every=1`` is the paper's; docs/srl.md compares them. ``model_gradient``
    is an option on the paper's actor loss, off by default.
    """

    J: int = 4
    """Actions per decision (primitive steps the policy plans ahead); 1 is plain SAC."""
    learning_starts: int = 10_000
    """Primitive steps played with uniform random actions before learning (the paper's 10k). Counted
    as the training budget counts them: J per decision and env, including the steps a decision
    discards after its episode ends, so SRL-J waits as many budget steps as SAC does."""
    gru_size: int = 64
    """Hidden size of the actor's GRU cell (its initial state comes from the ``hidden_sizes`` MLP).
    256 (the MLP's width, as in the paper's actor) makes the step's GRU work cost as much as the rest."""
    model_hidden_sizes: tuple[int, ...] = (400, 300)
    """Hidden layer sizes of the dynamics model."""
    model_lr: float = 3e-4
    """Adam learning rate of the dynamics model."""
    model_tau: float = 0.005
    """Polyak coefficient of the target model that imagines the intermediate states."""
    model_every: int = 2
    """Update the dynamics model (and its target copy) every this many gradient steps; 1, the
    paper's, is every step. The paper's (400, 300) model costs about as much per update as SAC's
    twin critics, a floor SAC does not pay; its regression target (the next state) does not move
    as the critic's does, so 2 halves that cost and the model still sees every batch's worth of
    transitions many times over."""
    actor_every: int | None = None
    """Take the temporal-recall actor step every this many gradient steps. 1 (the paper's) is once
    per primitive transition; 0 means J, once per decision. None (the default): ceil(J / 8), so
    the actor unrolls its GRU at most 8 steps per gradient step on average: the unroll is a chain
    of small sequential ops whose cost grows with J, and above J = 8 it alone takes a step past
    1.5x SAC's. Fewer, wider actor steps keep the imagined states per gradient step (see
    ``actor_starts``) and cost about the same each."""
    actor_starts: int | None = 0
    """Sampled states that each start a J-step temporal-recall unroll. None (the paper's): every
    state of the batch, so the actor step scores J x batch_size imagined states. 0 (the default):
    batch_size x actor_every // J (at most batch_size), so that per gradient step the critic scores
    as many imagined states as SAC's actor step does, which keeps the step's cost near SAC's."""
    model_gradient: bool = False
    """Backpropagate the temporal-recall loss through the imagined states into the earlier actions
    (the target model's weights stay fixed either way), so an action also learns from the Q-values
    of the states it leads to. False is the paper's: the imagined states are constants to the
    actor and each action learns only from its own Q-value. True balances InvertedPendulum at 8-16
    steps per decision where the paper's loss falls, and lifts Hopper; on Reacher it does worse
    (docs/srl.md, "The actor loss through the imagined states")."""


# ---------------------------------------------------------------------------- networks


class GRUSequenceActor(nn.Module):
    """State -> initial GRU hidden state; each GRU step (input: the previous action) emits a tanh-Gaussian action.

    Actions are normalised to [-1, 1], as in SAC's actor; log-probabilities are of those.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], gru_size: int) -> None:
        super().__init__()
        self.init_net = mlp(obs_dim, hidden, gru_size)
        self._init_linears = [m for m in self.init_net if isinstance(m, nn.Linear)]
        self.cell = nn.GRUCell(act_dim, gru_size)
        self.head = nn.Linear(gru_size, 2 * act_dim)  # mean and log-std

    def initial_hidden(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, gru_size); tanh keeps it in the range the GRU's own hidden states live in."""
        return torch.tanh(mlp_forward(self._init_linears, obs))

    def step(
        self, hidden: torch.Tensor, previous: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One GRU step: the new hidden state, an action (B, act_dim) and its log-prob (B,) (None if deterministic)."""
        if deterministic:
            hidden = self.cell(previous, hidden)
            return hidden, torch.tanh(self.head(hidden).chunk(2, dim=-1)[0]), None
        noise = torch.randn(previous.shape[0], self.head.out_features // 2, device=previous.device)
        hidden, action, log_std = self.sample_step(hidden, previous, noise)
        return hidden, action, self.log_prob(noise, log_std, action)

    def sample_step(
        self, hidden: torch.Tensor, previous: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One GRU step with the given standard-normal ``noise``: hidden state, action and log-std.
        The log-prob is left to :meth:`log_prob`, which can then score a whole sequence at once."""
        hidden = self.cell(previous, hidden)
        mean, log_std = self.head(hidden).chunk(2, dim=-1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        return hidden, torch.tanh(torch.addcmul(mean, log_std.exp(), noise)), log_std

    @staticmethod
    def log_prob(noise: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log N(u; mean, std) - log|d tanh(u)/du| summed over the last dim (as in SAC's actor);
        any leading dims. ``u = mean + std * noise``, so the Gaussian term needs only the noise."""
        gaussian = noise.square().mul_(-0.5).sub_(0.5 * math.log(2 * math.pi))
        squash = torch.log((1.0 + TANH_EPS) - action.square())
        return (gaussian - log_std - squash).sum(-1)

    def unroll(self, obs: torch.Tensor, previous: torch.Tensor, length: int, deterministic: bool = False) -> torch.Tensor:
        """``length`` actions (B, length, act_dim), each fed back as the next input."""
        hidden, actions = self.initial_hidden(obs), []
        for _ in range(length):
            hidden, previous, _ = self.step(hidden, previous, deterministic)
            actions.append(previous)
        return torch.stack(actions, dim=1)


class DynamicsModel(nn.Module):
    """``s' = s + f(s, a)``: predicting the change keeps the untrained model near the identity."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden, obs_dim)
        self._linears = [m for m in self.net if isinstance(m, nn.Linear)]

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return obs + mlp_forward(self._linears, torch.cat([obs, action], dim=-1))


# ---------------------------------------------------------------------------- the learner


class SRL(SAC):
    """SRL-J: a GRU sequence actor trained by temporal recall through a learned model; SRL-1 is SAC."""

    name = "srl"
    default_num_envs = 1

    def __init__(
        self,
        cfg: SRLCfg,
        observation_space: gymnasium.Space,
        action_space: gymnasium.spaces.Box,
        num_envs: int,
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(cfg.J, bool) or not isinstance(cfg.J, int) or cfg.J < 1:
            raise ValueError(f"SRL's J (actions per decision) must be an int >= 1, got {cfg.J!r}")
        every = cfg.actor_every
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 0):
            raise ValueError(
                f"SRL's actor_every must be None (ceil(J / 8)), an int >= 1, or 0 for once per decision; got {every!r}"
            )
        if isinstance(cfg.model_every, bool) or not isinstance(cfg.model_every, int) or cfg.model_every < 1:
            raise ValueError(f"SRL's model_every must be an int >= 1, got {cfg.model_every!r}")
        starts = cfg.actor_starts
        if starts is not None and (isinstance(starts, bool) or not isinstance(starts, int) or not 0 <= starts <= cfg.batch_size):
            raise ValueError(
                f"SRL's actor_starts must be None, 0 (batch_size // J) or an int in 1..batch_size ({cfg.batch_size}); got {starts!r}"
            )
        # Under the rate adapter with action_sequence the env's action space is (J, act_dim):
        # everything inside the learner works on one primitive action.
        if isinstance(action_space, gymnasium.spaces.Box) and len(action_space.shape) == 2:
            action_space = gymnasium.spaces.Box(action_space.low[0], action_space.high[0], dtype=action_space.dtype)
        super().__init__(cfg, observation_space, action_space, num_envs, device)
        self.J = cfg.J
        self.actor_every = math.ceil(self.J / 8) if every is None else every or self.J
        """Gradient steps per temporal-recall actor step (``cfg.actor_every`` resolved)."""
        per_unroll = min(cfg.batch_size, max(1, cfg.batch_size * self.actor_every // self.J))
        self.actor_starts = cfg.batch_size if starts is None else starts or per_unroll
        """States that start each temporal-recall unroll (``cfg.actor_starts`` resolved)."""
        self.emits_sequences = self.J > 1
        """The FAS evaluator's sequence-policy flag (``policies/fas.py``); SRL-1 acts like SAC."""
        if self.J == 1:
            return  # SAC, untouched

        dev, act_dim = self.device, self.act_dim
        self.obs_dim = obs_dim = flat_box_dim(observation_space, "observation", "SRL")
        # Replace SAC's MLP actor (and its optimiser) by the sequence actor.
        self.actor = GRUSequenceActor(obs_dim, act_dim, cfg.hidden_sizes, cfg.gru_size).to(dev)
        actor_groups = [(list(self.actor.parameters()), cfg.policy_lr)]
        if cfg.autotune:
            actor_groups.append(([self.log_alpha], cfg.alpha_lr))
        self.actor_opt = make_adam(actor_groups, cfg.fused_optimizer)
        self._actor_params = [p for params, _ in actor_groups for p in params]

        self.model = DynamicsModel(obs_dim, act_dim, cfg.model_hidden_sizes).to(dev)
        self.model_target = copy.deepcopy(self.model).requires_grad_(False)
        self.model_opt = make_adam([(list(self.model.parameters()), cfg.model_lr)], cfg.fused_optimizer)
        self._model_params = list(self.model.parameters())
        self._model_target_params = list(self.model_target.parameters())

        # Stored "observations" are (state, previous action): the GRU's first input travels with the state.
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim + act_dim, act_dim, dev)
        self.prev_action = torch.zeros(num_envs, act_dim, device=dev)
        """Per env, the last normalised action played (zeros at an episode start)."""
        self.primitive_steps = 0
        """Primitive steps played, valid or not (the warm-up's unit); ``num_transitions`` counts the stored ones."""
        self._model_loss = torch.zeros((), device=dev)

    @classmethod
    def required_adapters(cls, cfg: SRLCfg) -> dict[str, Any]:
        """SRL-J decides every J primitive steps and plays its J distinct actions."""
        return {"rate": {"steps": cfg.J, "action_sequence": True}} if cfg.J > 1 else {}

    # ------------------------------------------------------------------ acting
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """SRL-1: SAC's (num_envs, act_dim) actions. SRL-J: (num_envs, J, act_dim) sequences in env units."""
        if self.J == 1:
            return super().act(obs, deterministic)
        return self.act_sequence(obs, self.J, deterministic)

    def act_sequence(self, obs: torch.Tensor, length: int, deterministic: bool = False) -> torch.Tensor:
        """(num_envs, length, act_dim) actions in env units: the GRU unrolled ``length`` steps.

        Uniform random before ``learning_starts`` (training only). SRL-1 repeats SAC's action,
        as the SAC baselines do. The last action becomes the next decision's first GRU input;
        :meth:`episodes_ended` (called by the loop and by ``evaluate``) resets it at episode ends.
        """
        obs = obs.to(self.device, torch.float32)
        n = obs.shape[0]
        if self.J == 1:
            return super().act(obs, deterministic).unsqueeze(1).expand(n, length, self.act_dim)
        if self.prev_action.shape[0] != n:  # another batch of envs (evaluation): start afresh
            self.prev_action = torch.zeros(n, self.act_dim, device=self.device)
        if not deterministic and not self.ready_to_update() and not self._policy_loaded:
            normalised = torch.rand(n, length, self.act_dim, device=self.device) * 2.0 - 1.0
        else:
            with torch.no_grad():
                normalised = self.actor.unroll(obs, self.prev_action, length, deterministic)
        self.prev_action = normalised[:, -1].clone()
        return normalised * self.action_scale + self.action_bias

    def episodes_ended(self, done: torch.Tensor) -> None:
        """A new episode's first decision starts the GRU from a zero previous action."""
        if self.J > 1 and self.prev_action.shape[0] == done.shape[0]:
            keep = ~done.to(self.device).unsqueeze(-1)
            self.prev_action = self.prev_action * keep

    # ------------------------------------------------------------------ storing
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
        """SRL-1: SAC's. SRL-J: store every valid primitive transition of ``info["primitive"]``."""
        if self.J == 1:
            return super().observe(obs, action, reward, next_obs, terminated, truncated, info)
        prim = (info or {}).get("primitive")
        if prim is None:
            raise ValueError(
                "SRL with J > 1 trains on the primitive steps inside each decision, which the decision-rate "
                "adapter reports in info['primitive'] (tensor observations); run it under "
                f"adapters {self.required_adapters(self.cfg)}"
            )
        dev = self.device
        played = ((prim["action"].to(dev) - self.action_bias) / self.action_scale).clamp(-1.0, 1.0)  # (n, k, A)
        n = played.shape[0]
        if self.prev_action.shape[0] != n:
            self.prev_action = torch.zeros(n, self.act_dim, device=dev)
        before = torch.cat([self.prev_action.unsqueeze(1), played[:, :-1]], dim=1)  # each step's previous action
        valid = prim["valid"].to(dev)
        self.buffer.add(
            torch.cat([prim["obs"].to(dev), before], dim=-1)[valid],
            played[valid],
            prim["reward"].to(dev)[valid],
            torch.cat([prim["next_obs"].to(dev), played], dim=-1)[valid],
            prim["terminated"].to(dev)[valid],
        )
        self.num_transitions += int(valid.sum())
        self.primitive_steps += valid.numel()
        done = (terminated | truncated).to(dev)
        self.prev_action = torch.where(done.unsqueeze(-1), torch.zeros_like(played[:, -1]), played[:, -1])

    def ready_to_update(self) -> bool:
        if self.J == 1:
            return super().ready_to_update()
        return self.primitive_steps >= self.cfg.learning_starts

    # ------------------------------------------------------------------ the algorithm
    def update(self) -> dict[str, float]:
        """SRL-1: SAC's. SRL-J: ``updates_per_step * J`` gradient steps (one per primitive transition)."""
        if self.J == 1:
            return super().update()
        log = self.num_updates % self.cfg.metrics_interval == 0
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(self.cfg.updates_per_step * self.J):
            metrics = self._gradient_step(log)
        self.num_updates += 1
        if log:
            values = torch.stack(list(metrics.values())).tolist()  # one host sync
            self._metrics = dict(zip(metrics, values, strict=True))
        return dict(self._metrics)

    def _gradient_step(self, log: bool) -> dict[str, torch.Tensor]:
        if self.J == 1:
            return super()._gradient_step(log)
        cfg, split = self.cfg, (self.obs_dim, self.act_dim)
        batch = self.buffer.sample(cfg.batch_size)
        obs, prev = batch.obs.split(split, dim=-1)
        next_obs, next_prev = batch.next_obs.split(split, dim=-1)

        # Critic: SAC's soft Bellman target on the primitive transition; the next action is the
        # GRU's first, started as acting would start it (its input: the action just played).
        with torch.no_grad():
            _, next_action, next_log_prob = self.actor.step(self.actor.initial_hidden(next_obs), next_prev)
            next_q = self.qf_target(next_obs, next_action).amin(0)
            next_v = torch.addcmul(next_q, self.alpha, next_log_prob, value=-1.0)
            target = torch.addcmul(batch.reward, 1.0 - batch.terminated, next_v, value=cfg.gamma)
        q = self.qf(obs, batch.action)
        qf_loss = F.mse_loss(q, target.expand_as(q)) * q.shape[0]
        _zero_grad(self._q_params)
        qf_loss.backward()
        self.q_opt.step()

        # Model: one-step MSE on the same real transitions (every ``model_every``-th step).
        update_model = self.num_gradient_steps % cfg.model_every == 0
        if update_model:
            model_loss = F.mse_loss(self.model(obs, batch.action), next_obs)
            _zero_grad(self._model_params)
            model_loss.backward()
            self.model_opt.step()
            self._model_loss = model_loss.detach()

        metrics: dict[str, torch.Tensor] = {}
        if self.num_gradient_steps % (cfg.policy_frequency * self.actor_every) == 0:
            k = self.actor_starts
            metrics = self._actor_steps(lambda: self._temporal_recall_loss(obs[:k], prev[:k]), log)  # a random sample

        if self.num_gradient_steps % cfg.target_network_frequency == 0:
            polyak_update(self._q_target_params, self._q_params, cfg.tau)
        if update_model:  # the target lags by the same number of model updates at any model_every
            polyak_update(self._model_target_params, self._model_params, cfg.model_tau)
        self.num_gradient_steps += 1

        if log:
            qf_losses = (q.detach() - target).pow(2).mean(1)
            metrics |= {
                "losses/qf1_values": q[0].detach().mean(),
                "losses/qf2_values": q[1].detach().mean(),
                "losses/qf_loss": qf_losses.mean(),
                "losses/model_loss": self._model_loss,  # the latest model update's
                "losses/alpha": self.alpha,
            }
        return metrics

    def _temporal_recall_loss(self, obs: torch.Tensor, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mean_B sum_j alpha log pi(a_j) - min Q(s_j, a_j)`` and the log-probs (J, B).

        s_0 is real; s_{j+1} = target_model(s_j, a_j), whose weights the actor never changes.
        Gradients reach a_j directly and, through the GRU, from every later step; with
        ``model_gradient`` also through s_{j+1}, s_{j+2}, ... from the later Q-values. The J critic
        evaluations run as one batch.
        """
        hidden, action, state = self.actor.initial_hidden(obs), prev, obs
        # One noise draw and one log-prob over the whole sequence: per-step small ops dominate here.
        noise = torch.randn(self.J, *prev.shape, device=prev.device)
        states, actions, log_stds = [], [], []
        for j in range(self.J):
            hidden, action, log_std = self.actor.sample_step(hidden, action, noise[j])
            states.append(state)
            actions.append(action)
            log_stds.append(log_std)
            if j < self.J - 1:
                with torch.set_grad_enabled(self.cfg.model_gradient):
                    state = self.model_target(state, action)
        action_seq = torch.stack(actions)  # (J, B, A)
        q = self.qf(torch.cat(states), action_seq.flatten(0, 1), detach_params=True).amin(0)  # (J * B,)
        log_prob = self.actor.log_prob(noise, torch.stack(log_stds), action_seq)  # (J, B)
        loss = (self.alpha * log_prob - q.view_as(log_prob)).sum(0).mean()
        return loss, log_prob

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.J > 1:
            state |= {
                "model": self.model.state_dict(),
                "model_target": self.model_target.state_dict(),
                "model_opt": self.model_opt.state_dict(),
                "prev_action": self.prev_action.clone(),
                "primitive_steps": self.primitive_steps,
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.J > 1:
            self.model.load_state_dict(state["model"])
            self.model_target.load_state_dict(state["model_target"])
            self.model_opt.load_state_dict(state["model_opt"])
            self.prev_action = state["prev_action"].to(self.device).clone()
            # Checkpoints from before the counter existed: stored transitions are a lower bound.
            self.primitive_steps = int(state.get("primitive_steps", self.num_transitions))

    # ------------------------------------------------------------------ rollout workers
    # The driver's observe() derives everything it stores from the played primitive steps, so
    # SRL needs no act records; a worker's copy keeps the GRU's first input per env (its memory)
    # and learns from the rollout state when learning has started.
    def rollout_state(self) -> dict[str, Any]:
        return {**super().rollout_state(), "primitive_steps": self.primitive_steps}

    def load_rollout_state(self, state: dict[str, Any]) -> None:
        super().load_rollout_state(state)
        self.primitive_steps = int(state["primitive_steps"])

    def act_memory(self) -> dict[str, torch.Tensor]:
        return {"prev_action": self.prev_action.clone()}

    def load_act_memory(self, state: dict[str, torch.Tensor]) -> None:
        self.prev_action = state["prev_action"].to(self.device).clone()
