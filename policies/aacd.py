"""Asymmetric actor-critic distillation (AACD, from TacSL; Akinola et al. 2024) and plain AAC.

Tactile policies are slow to learn from images alone: the critic must judge states it cannot
see well. AACD splits the work in two stages, both PPO, both behind the one ``Learner``
protocol, so ``embodied train ID --algo aacd`` runs them in one go:

* **Stage 1 (teacher)**: PPO whose actor and critic both see the privileged state
  (``privileged_keys`` of the dict observation, flattened: e.g. peg and socket poses, contact
  forces, plus proprioception). This *is* :class:`~embodied.policies.ppo.PPO`, run on that
  flat vector.
* **Stage 2 (student)**: after ``teacher_steps`` env steps (or at once, from the stage-1
  checkpoint named by ``teacher_checkpoint``), a fresh tactile actor takes over:
  a CNN per finger ending in spatial soft-argmax keypoints, concatenated with
  proprioception, a recurrent core (LSTM or GRU) and an MLP head. It is trained with PPO while
  the critic (still privileged) starts from stage 1's weights, ``critic_mode="frozen"``
  (weights, observation and return statistics fixed) or ``"finetune"`` (trained on).
* **AAC** (``--algo aac``), the baseline: the same student actor and privileged critic,
  trained together from scratch (stage 2 from step 0 with a fresh critic).

The recurrent student is trained with truncated back-propagation through time over each
rollout chunk: the memory at the chunk's start is stored, and the replay clears it wherever
an episode started (``Learner.episodes_ended``), exactly as acting did. Minibatches split the
envs, never the time axis. The PPO loss itself is PPO's (:meth:`PPO._minibatch_step`); only
what the actor and critic are fed differs.

The run's ``--total-steps`` covers both stages: the student trains for ``total_steps -
teacher_steps``. A run that ends exactly at ``teacher_steps`` still acts with the teacher
(the switch happens at the next training step), so its evaluation is the teacher's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import gymnasium
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from embodied.policies.nets import GaussianActor, RunningMeanStd, mlp, mlp_forward
from embodied.policies.ppo import PPO, PPOCfg


@dataclass
class AACDCfg(PPOCfg):
    """PPO's hyperparameters (both stages) plus the stages and the student's architecture."""

    teacher_steps: int = 1_000_000
    """Env steps of stage 1 (privileged teacher); the student trains for the rest of the run.
    0 with no ``teacher_checkpoint`` trains the student and a fresh critic together (AAC)."""
    teacher_checkpoint: str = ""
    """A checkpoint (or run folder) of an ``aacd`` run: skip stage 1 and take its teacher,
    critic and statistics (loaded at the first training step)."""
    critic_mode: Literal["frozen", "finetune"] = "frozen"
    """Stage 2's critic: stage 1's weights kept fixed, or trained on with the student."""
    critic_learning_rate: float | None = None
    """Stage 2's critic learning rate (scheduled like ``learning_rate``); None: ``learning_rate``. Set, the
    critic also gets its own gradient clip, so its early errors do not shrink the student's steps
    (TacSL's critic has its own optimiser: Adam at 1e-4, clip 1.0)."""
    keep_teacher_stats: bool = False
    """With ``critic_mode="finetune"`` from a teacher: keep the critic's observation and return statistics
    at stage 1's values (as frozen does), so the loaded weights' inputs and targets do not drift."""
    tactile_input: Literal["image", "force_field"] = "image"
    """The student's touch input: tactile images or tactile force fields, per finger."""
    privileged_keys: tuple[str, ...] = ("privileged", "proprio")
    """Observation keys the teacher and the critic see, flattened and concatenated."""
    proprio_key: str = "proprio"
    """Observation key of proprioception, which the student sees besides touch."""
    image_key: str = "tactile_image"
    """Observation key of the tactile images, (num_envs, fingers, 3, H, W) uint8."""
    force_field_key: str = "force_field"
    """Observation key of the force fields, (num_envs, fingers, rows, cols, 3) float."""
    conv_channels: tuple[int, ...] = (16, 32)
    """Output channels of the student's conv layers (ReLU), before the keypoint layer."""
    conv_kernels: tuple[int, ...] = (5, 3)
    """Kernel size of each conv layer."""
    conv_strides: tuple[int, ...] = (2, 1)
    """Stride of each conv layer."""
    num_keypoints: int = 16
    """Soft-argmax keypoints per finger (a 1x1 conv makes one feature map per keypoint)."""
    image_pool: int = 1
    """Average-pool the touch input by this factor before the convolutions (2 makes a 60x80
    image 30x40: about 4x less CNN work, for CPU budgets)."""
    rnn: Literal["lstm", "gru"] = "lstm"
    """The student's recurrent core."""
    rnn_size: int = 128
    """Hidden size of the recurrent core."""
    head_sizes: tuple[int, ...] = (128,)
    """Hidden layers of the student's MLP head (tanh)."""
    student_init_log_std: float = 0.0
    """Initial log standard deviation of the student's Gaussian, in normalised action units."""
    sequence_minibatches: int = 4
    """Stage 2 splits the envs into this many minibatches of whole rollout sequences."""


@dataclass
class AACCfg(AACDCfg):
    """Plain asymmetric actor-critic: the student and a fresh privileged critic from step 0."""

    teacher_steps: int = 0
    critic_mode: Literal["frozen", "finetune"] = "finetune"


CPU_STUDENT: dict[str, Any] = {
    # Stage 2 sized for one CPU core (bench/tactile_learning.py, the shipped student): the 60x80
    # images pooled to 30x40, a 64-unit LSTM, 4 epochs per 64-step rollout.
    "image_pool": 2,
    "conv_channels": [16, 32],
    "conv_kernels": [5, 3],
    "conv_strides": [2, 1],
    "num_keypoints": 16,
    "rnn_size": 64,
    "head_sizes": [64],
    "num_steps": 64,
    "update_epochs": 4,
    "learning_rate": 1e-3,
    "sequence_minibatches": 4,
}
"""Learner overrides for a tactile-image student trained on a CPU."""


# ---------------------------------------------------------------------------- student networks


def spatial_soft_argmax(features: torch.Tensor, temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Expected image position of each feature map's softmax: (B, K, H, W) -> (B, K, 2) as (x, y).

    Coordinates are in [-1, 1]: column 0 is x = -1, column W-1 is x = 1 (rows likewise for y),
    so one dominant pixel gives exactly its own position.
    """
    b, k, h, w = features.shape
    weights = torch.softmax(features.reshape(b, k, h * w) / temperature, dim=-1).reshape(b, k, h, w)
    xs = torch.linspace(-1.0, 1.0, w, device=features.device, dtype=features.dtype)
    ys = torch.linspace(-1.0, 1.0, h, device=features.device, dtype=features.dtype)
    x = (weights.sum(dim=2) * xs).sum(-1)  # marginal over rows, then the mean column
    y = (weights.sum(dim=3) * ys).sum(-1)
    return torch.stack([x, y], dim=-1)


class KeypointEncoder(nn.Module):
    """Conv layers, a 1x1 conv to ``num_keypoints`` maps, and spatial soft-argmax: (B, C, H, W) -> (B, 2K)."""

    def __init__(
        self,
        in_channels: int,
        channels: tuple[int, ...],
        kernels: tuple[int, ...],
        strides: tuple[int, ...],
        num_keypoints: int,
        pool: int = 1,
    ) -> None:
        super().__init__()
        if pool < 1:
            raise ValueError(f"image_pool must be >= 1, got {pool}")
        self.pool = pool
        if not len(channels) == len(kernels) == len(strides):
            raise ValueError(
                f"conv_channels {channels}, conv_kernels {kernels} and conv_strides {strides} must have one entry per layer"
            )
        layers: list[nn.Module] = []
        for c_in, c_out, k, s in zip((in_channels, *channels[:-1]), channels, kernels, strides, strict=True):
            layers += [nn.Conv2d(c_in, c_out, k, s), nn.ReLU()]
        layers.append(nn.Conv2d(channels[-1] if channels else in_channels, num_keypoints, 1))
        self.net = nn.Sequential(*layers)
        self.log_temperature = nn.Parameter(torch.zeros(()))
        """The softmax's temperature is learned: sharp maps make precise keypoints."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        return spatial_soft_argmax(self.net(x), self.log_temperature.exp()).flatten(1)


class TactileActor(nn.Module):
    """The student: per-finger keypoints (a shared encoder) + proprioception -> LSTM/GRU -> MLP -> Gaussian.

    The memory is one tensor (B, memory_size): an LSTM's (h, c) side by side, or a GRU's h.
    """

    def __init__(self, tactile_shape: tuple[int, ...], proprio_dim: int, act_dim: int, cfg: AACDCfg) -> None:
        super().__init__()
        fingers, channels = tactile_shape[0], tactile_shape[1]
        self.encoder = KeypointEncoder(
            channels, cfg.conv_channels, cfg.conv_kernels, cfg.conv_strides, cfg.num_keypoints, cfg.image_pool
        )
        core_in = fingers * 2 * cfg.num_keypoints + proprio_dim
        self.lstm = cfg.rnn == "lstm"
        self.core = nn.LSTMCell(core_in, cfg.rnn_size) if self.lstm else nn.GRUCell(core_in, cfg.rnn_size)
        self.rnn_size = cfg.rnn_size
        self.memory_size = 2 * cfg.rnn_size if self.lstm else cfg.rnn_size
        self.head = mlp(cfg.rnn_size, cfg.head_sizes, act_dim, nn.Tanh, orthogonal_gain=0.01)
        self._linears = [m for m in self.head if isinstance(m, nn.Linear)]
        self.log_std = nn.Parameter(torch.full((act_dim,), float(cfg.student_init_log_std)))

    def initial_memory(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(n, self.memory_size, device=device)

    def features(self, tactile: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """Core inputs (B, core_in) from float tactile input (B, F, C, H, W) and proprio (B, P)."""
        b, f = tactile.shape[:2]
        keypoints = self.encoder(tactile.flatten(0, 1)).reshape(b, -1)  # fingers share the encoder
        return torch.cat([keypoints, proprio], dim=-1)

    def _cell(self, x: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.lstm:
            h, c = self.core(x, tuple(memory.chunk(2, dim=-1)))
            return h, torch.cat([h, c], dim=-1)
        h = self.core(x, memory)
        return h, h

    def _dist(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = mlp_forward(self._linears, h, torch.tanh_)
        return mean, self.log_std.exp().expand_as(mean)

    def step(
        self, tactile: torch.Tensor, proprio: torch.Tensor, memory: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step for a batch: mean and std (B, act_dim) and the next memory (B, memory_size)."""
        h, memory = self._cell(self.features(tactile, proprio), memory)
        return (*self._dist(h), memory)

    def unroll(
        self, tactile: torch.Tensor, proprio: torch.Tensor, starts: torch.Tensor, memory: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Replay sequences (T, B, ...) from ``memory`` (B, M); memory is cleared where ``starts`` (T, B).

        Returns mean and std (T, B, act_dim). The convolutions run on all T*B frames at once.
        """
        t_len, b = starts.shape
        x = self.features(tactile.flatten(0, 1), proprio.flatten(0, 1)).reshape(t_len, b, -1)
        keep = (~starts).unsqueeze(-1).to(memory.dtype)
        hs = []
        for t in range(t_len):
            h, memory = self._cell(x[t], memory * keep[t])
            hs.append(h)
        return self._dist(torch.stack(hs))


class _Sequences(NamedTuple):
    """A minibatch of whole rollout sequences for stage 2 (all (T, b, ...) but ``memory0`` (b, M))."""

    tactile: torch.Tensor
    proprio: torch.Tensor
    starts: torch.Tensor
    memory0: torch.Tensor
    privileged: torch.Tensor


class _StudentView(nn.Module):
    """What PPO's loss calls as ``self.actor`` in stage 2: sequences in, flat (T*b, act_dim) out."""

    def __init__(self, student: TactileActor, to_float: Any) -> None:
        super().__init__()
        self.student = student
        self.to_float = to_float

    def forward(self, seq: _Sequences) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.student.unroll(self.to_float(seq.tactile), seq.proprio, seq.starts, seq.memory0)
        return mean.flatten(0, 1), std.flatten(0, 1)


class _CriticView(nn.Module):
    """What PPO's loss calls as ``self.critic`` in stage 2: the privileged critic on the sequences."""

    def __init__(self, critic: nn.Module) -> None:
        super().__init__()
        self.critic = critic

    def forward(self, seq: _Sequences) -> torch.Tensor:
        return self.critic(seq.privileged.flatten(0, 1))


# ---------------------------------------------------------------------------- the learner


class AACD(PPO):
    """Two-stage AACD on dict observations (see the module docstring); ``stage`` is 1 or 2."""

    name = "aacd"
    default_num_envs = 16

    def __init__(
        self,
        cfg: AACDCfg,
        observation_space: gymnasium.Space,
        action_space: gymnasium.spaces.Box,
        num_envs: int,
        device: str | torch.device = "cpu",
    ) -> None:
        spaces = _check_dict_space(observation_space, cfg, type(self).__name__)
        if cfg.teacher_steps == 0 and not cfg.teacher_checkpoint and cfg.critic_mode == "frozen":
            raise ValueError(
                f"{type(self).__name__}: critic_mode='frozen' needs a trained critic: set teacher_steps > 0 or "
                "teacher_checkpoint, or use critic_mode='finetune' (plain AAC)"
            )
        if cfg.critic_learning_rate is not None and not cfg.critic_learning_rate > 0:
            raise ValueError(f"{type(self).__name__}: critic_learning_rate={cfg.critic_learning_rate} must be positive")
        if cfg.critic_learning_rate is not None and cfg.critic_mode == "frozen":
            raise ValueError(f"{type(self).__name__}: critic_learning_rate is set but a frozen critic has no learning "
                             "rate; use critic_mode='finetune'")
        if cfg.keep_teacher_stats and not (cfg.teacher_steps or cfg.teacher_checkpoint):
            raise ValueError(f"{type(self).__name__}: keep_teacher_stats needs a teacher (teacher_steps > 0 or "
                             "teacher_checkpoint) whose statistics to keep")
        if cfg.sequence_minibatches > num_envs:
            raise ValueError(
                f"{type(self).__name__}: sequence_minibatches={cfg.sequence_minibatches} exceeds num_envs={num_envs}; "
                "stage 2 splits envs (whole sequences) into minibatches"
            )
        privileged_dim = sum(int(np.prod(spaces[k].shape)) for k in cfg.privileged_keys)
        flat = gymnasium.spaces.Box(-np.inf, np.inf, (privileged_dim,), np.float32)
        # Stage 1 is PPO on the flat privileged vector: build exactly that, then add the student.
        super().__init__(cfg, flat, action_space, num_envs, device)
        self.observation_space = observation_space
        self.teacher, self.value_net = self.actor, self.critic
        dev = self.device

        self.tactile_key = cfg.image_key if cfg.tactile_input == "image" else cfg.force_field_key
        self.force_rms: RunningMeanStd | None = None
        self.student: TactileActor | None = None
        """None when the observation has no touch entry: a teacher-only run (a cheaper task config)."""
        self.tactile_dtype = torch.uint8 if cfg.tactile_input == "image" else torch.float32
        self.tactile_shape: tuple[int, ...] = ()
        proprio_dim = int(np.prod(spaces[cfg.proprio_key].shape))
        if self.tactile_key in spaces:
            shape = spaces[self.tactile_key].shape
            if cfg.tactile_input == "image":
                self.tactile_shape = tuple(shape)  # (fingers, 3, H, W)
            else:
                fingers, rows, cols, comps = shape
                self.tactile_shape = (fingers, comps, rows, cols)  # force components become channels
                self.force_rms = RunningMeanStd((comps,), dev)
            act_dim = int(np.prod(action_space.shape))
            self.student = TactileActor(self.tactile_shape, proprio_dim, act_dim, cfg).to(dev)
        self.proprio_rms = RunningMeanStd((proprio_dim,), dev)
        self.stage = 1
        memory_size = self.student.memory_size if self.student is not None else 0
        self.memory = torch.zeros(num_envs, memory_size, device=dev)
        """The student's memory per training env."""
        self.reset_pending = torch.zeros(num_envs, dtype=torch.bool, device=dev)
        """Envs whose episode ended since the last ``act``: their memory clears at the next one."""
        self._eval_memory: torch.Tensor | None = None
        self._mode = "train"
        self._seq: dict[str, torch.Tensor] | None = None
        """Stage 2's per-step student inputs of the rollout (allocated when first needed)."""
        self._critic_frozen = False
        self._critic_stats_fixed = False
        """The critic's observation and return statistics stay stage 1's (frozen, or ``keep_teacher_stats``)."""
        self._record: dict[str, torch.Tensor] | None = None
        """The last training act's record for a rollout worker (see :meth:`act_record`)."""

    # ------------------------------------------------------------------ observations
    def _privileged_raw(self, obs: Any) -> torch.Tensor:
        if not isinstance(obs, dict):
            return obs.to(self.device, torch.float32)
        parts = [obs[k].to(self.device, torch.float32).flatten(1) for k in self.cfg.privileged_keys]
        return torch.cat(parts, dim=-1)

    def _normalize_obs(self, obs: Any) -> torch.Tensor:
        return super()._normalize_obs(self._privileged_raw(obs))

    def _proprio(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        proprio = obs[self.cfg.proprio_key].to(self.device, torch.float32).flatten(1)
        return self.proprio_rms.normalize(proprio, self.cfg.clip_obs) if self.cfg.norm_obs else proprio

    def _tactile(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The student's touch input as stored: images uint8 (B, F, 3, H, W), force fields normalised float."""
        if self.cfg.tactile_input == "image":
            return obs[self.cfg.image_key].to(self.device)
        field = obs[self.cfg.force_field_key].to(self.device, torch.float32)
        field = self.force_rms.normalize(field, self.cfg.clip_obs)  # per component (normal, 2 shear)
        return field.permute(0, 1, 4, 2, 3)

    @staticmethod
    def _to_float(tactile: torch.Tensor) -> torch.Tensor:
        return tactile.float().div_(255.0).sub_(0.5) if tactile.dtype == torch.uint8 else tactile

    # ------------------------------------------------------------------ stages
    def _maybe_start_student(self) -> None:
        """At a rollout boundary, switch to stage 2 once stage 1's budget is spent (or from a checkpoint)."""
        if self.stage != 1 or self.buffer.step != 0:
            return
        cfg = self.cfg
        if cfg.teacher_checkpoint:
            self._load_teacher(cfg.teacher_checkpoint)
        elif self.num_transitions < cfg.teacher_steps:
            return
        self._enter_stage_2(from_teacher=bool(cfg.teacher_checkpoint or cfg.teacher_steps))

    def _enter_stage_2(self, from_teacher: bool) -> None:
        """A fresh student takes over; the critic keeps stage 1's weights (trained on or frozen)."""
        cfg = self.cfg
        if self.student is None:
            raise ValueError(
                f"{type(self).__name__}: stage 2 needs the touch entry {self.tactile_key!r} in the observation, which "
                f"has only {sorted(self.observation_space.spaces)}; keep it in the task's obs_terms (a teacher-only run "
                "may drop it if total_steps <= teacher_steps)"
            )
        self.stage = 2
        self._critic_frozen = from_teacher and cfg.critic_mode == "frozen"
        self._critic_stats_fixed = self._critic_frozen or (from_teacher and cfg.keep_teacher_stats)
        self.value_net.requires_grad_(not self._critic_frozen)
        student, critic = [*self.student.parameters()], [*self.value_net.parameters()]
        if self._critic_frozen:
            groups = [{"params": student}]
        elif cfg.critic_learning_rate is None:
            groups = [{"params": student + critic}]
        else:  # its own rate and (PPO clips per group) its own gradient clip
            groups = [{"params": student}, {"params": critic, "lr_scale": cfg.critic_learning_rate / cfg.learning_rate}]
        self._params = [p for group in groups for p in group["params"]]
        self.optimizer = torch.optim.Adam(groups, lr=cfg.learning_rate, eps=1e-5)
        self.actor = _StudentView(self.student, self._to_float)
        self.critic = _CriticView(self.value_net)
        self.memory.zero_()
        self.reset_pending.zero_()
        self._last = None

    def _load_teacher(self, path: str) -> None:
        from embodied.policies.checkpoint import load_checkpoint

        state = load_checkpoint(path, map_location=self.device)
        if state["algo"] not in ("aacd", "aac") or "teacher" not in state["learner"]:
            raise ValueError(f"teacher_checkpoint {path} is a {state['algo']} checkpoint, not an aacd run")
        learner = state["learner"]
        self.teacher.load_state_dict(learner["teacher"])
        self.value_net.load_state_dict(learner["critic"])
        self.obs_rms.load_state_dict(learner["obs_rms"])
        self.return_rms.load_state_dict(learner["return_rms"])

    # ------------------------------------------------------------------ acting and storing
    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = False) -> torch.Tensor:
        """Actions (num_envs, act_dim) in env units: the teacher's in stage 1, the student's in stage 2."""
        if not deterministic:
            self._maybe_start_student()
        if self.stage == 1:
            self._mode = "eval" if deterministic else "train"
            return super().act(obs, deterministic)
        tactile, proprio = self._tactile(obs), self._proprio(obs)
        if deterministic:
            n = proprio.shape[0]
            if self._mode != "eval" or self._eval_memory is None or self._eval_memory.shape[0] != n:
                self._eval_memory = self.student.initial_memory(n, self.device)  # a fresh evaluation
            self._mode = "eval"
            mean, _, self._eval_memory = self.student.step(self._to_float(tactile), proprio, self._eval_memory)
            return self._to_env(mean)
        self._mode = "train"
        if self.buffer.step == 0:
            self._sequences()["memory0"].copy_(self.memory)  # truncated BPTT starts from here
        starts = self.reset_pending.clone()
        memory_before = self.memory
        memory = self.memory * (~starts).unsqueeze(-1).to(self.memory.dtype)
        mean, std, self.memory = self.student.step(self._to_float(tactile), proprio, memory)
        self.reset_pending.zero_()
        sample = torch.addcmul(mean, std, torch.randn_like(mean))
        env_action = self._to_env(sample)
        log_prob = GaussianActor.log_prob(mean, std, sample)
        self._record = {"memory": memory_before, "proprio": proprio, "sample": sample, "log_prob": log_prob}
        self._keep_for_observe(obs, env_action, sample, log_prob, tactile, proprio, starts)
        return env_action

    def _keep_for_observe(self, obs: Any, env_action: torch.Tensor, sample: torch.Tensor, log_prob: torch.Tensor,
                          tactile: torch.Tensor, proprio: torch.Tensor, starts: torch.Tensor) -> None:
        """What stage 2's ``observe`` stores of the step just acted (the value is this learner's)."""
        privileged = self._normalize_obs(obs)
        self._last = (env_action, privileged, sample, log_prob, self.value_net(privileged), tactile, proprio, starts)

    # ------------------------------------------------------------------ rollout workers
    def rollout_state(self) -> dict[str, Any]:
        # Workers' rounds start at rollout boundaries: this learner switches stage here, since
        # with workers its own act() is never called.
        self._maybe_start_student()
        return super().rollout_state()

    def act_memory(self) -> dict[str, torch.Tensor]:
        return {"memory": self.memory.clone(), "reset_pending": self.reset_pending.clone(),
                "stage": torch.tensor(self.stage)}

    def load_act_memory(self, state: dict[str, torch.Tensor]) -> None:
        if int(state["stage"]) == 2 and self.stage == 1:  # before the memory: entering stage 2 clears it
            self._enter_stage_2(from_teacher=bool(self.cfg.teacher_checkpoint or self.cfg.teacher_steps))
        self.memory.copy_(state["memory"])
        self.reset_pending.copy_(state["reset_pending"])

    def act_record(self) -> dict[str, torch.Tensor] | None:
        """Stage 2: the student's memory before the step, its (normalised) proprioception input,
        the sampled pre-squash action and its log-probability. Stage 1 (PPO) needs none."""
        if self.stage == 1 or self._mode != "train":
            return None
        return self._record

    @torch.no_grad()
    def take_act_record(self, obs: Any, action: torch.Tensor, record: dict[str, torch.Tensor]) -> None:
        """Stage 2: store what act() would have (the value is this learner's, as in act())."""
        if self.stage == 1:
            return
        dev = self.device
        self._mode = "train"
        if self.buffer.step == 0:
            self._sequences()["memory0"].copy_(record["memory"].to(dev))
        starts = self.reset_pending.clone()
        self.reset_pending.zero_()
        self._keep_for_observe(obs, action, record["sample"].to(dev), record["log_prob"].to(dev), self._tactile(obs),
                               record["proprio"].to(dev), starts)

    def episodes_ended(self, done: torch.Tensor) -> None:
        """Clear the student's memory of envs whose episode ended (training: at the next ``act``)."""
        done = done.to(self.device)
        if self._mode == "train":
            self.reset_pending |= done
        elif self._eval_memory is not None and self._eval_memory.shape[0] == done.shape[0]:
            self._eval_memory[done] = 0.0

    def _scale_reward(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        if not self._critic_stats_fixed:
            return super()._scale_reward(reward, done)
        # A critic kept on stage 1's statistics predicts returns in stage 1's scale: keep that scale.
        if not self.cfg.norm_reward:
            return reward
        return (reward / self.return_rms.std).clamp(-self.cfg.clip_reward, self.cfg.clip_reward)

    @torch.no_grad()
    def observe(
        self,
        obs: Any,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: Any,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Store one batched step (stage 1: PPO's on the privileged vector)."""
        if self.stage == 1:
            super().observe(
                self._privileged_raw(obs), action, reward, self._privileged_raw(next_obs), terminated, truncated, info
            )
            return
        if self._last is None or self._last[0] is not action:
            raise ValueError(
                f"{type(self).__name__} stage 2 stores only actions from its own act(): the recurrent student's "
                "memory has already moved on, so other actions cannot be evaluated"
            )
        _, privileged, sample, log_prob, value, tactile, proprio, starts = self._last
        self._last = None
        dev = self.device
        terminated, truncated = terminated.to(dev), truncated.to(dev)
        if self.cfg.norm_obs:
            if not self._critic_stats_fixed:
                self.obs_rms.update(self._privileged_raw(obs))
            self.proprio_rms.update(obs[self.cfg.proprio_key].to(dev, torch.float32).flatten(1))
        if self.force_rms is not None:
            self.force_rms.update(
                obs[self.cfg.force_field_key].to(dev, torch.float32).reshape(-1, self.tactile_shape[1])
            )
        reward = self._scale_reward(reward.to(dev, torch.float32), terminated | truncated)
        next_value = self.value_net(self._normalize_obs(next_obs))
        t = self.buffer.step
        seq = self._sequences()
        seq["tactile"][t] = tactile
        seq["proprio"][t] = proprio
        seq["starts"][t] = starts
        self.buffer.add(privileged, sample, log_prob, value, reward, terminated, truncated, next_value)
        self.num_transitions += self.num_envs

    def _sequences(self) -> dict[str, torch.Tensor]:
        if self._seq is None:
            t, n, dev = self.num_steps, self.num_envs, self.device
            self._seq = {
                "tactile": torch.zeros(t, n, *self.tactile_shape, dtype=self.tactile_dtype, device=dev),
                "proprio": torch.zeros(t, n, self.proprio_rms.mean.shape[0], device=dev),
                "starts": torch.zeros(t, n, dtype=torch.bool, device=dev),
                "memory0": self.student.initial_memory(n, dev),
            }
        return self._seq

    # ------------------------------------------------------------------ the algorithm
    def update(self) -> dict[str, float]:
        """Stage 1: PPO's update. Stage 2: PPO's loss on minibatches of whole env sequences."""
        if self.stage == 1:
            return super().update()
        cfg = self.cfg
        lr = self.set_learning_rate()
        advantages, returns = self.buffer.advantages_and_returns(cfg.gae_lambda)
        buf, seq = self.buffer, self._sequences()
        sums: dict[str, torch.Tensor] = {}
        count = 0
        for _ in range(cfg.update_epochs):
            for idx in torch.randperm(self.num_envs, device=self.device).tensor_split(cfg.sequence_minibatches):
                batch = _Sequences(
                    seq["tactile"][:, idx],
                    seq["proprio"][:, idx],
                    seq["starts"][:, idx],
                    seq["memory0"][idx],
                    buf.obs[:, idx],
                )
                stats = self._minibatch_step(
                    batch,
                    buf.actions[:, idx].flatten(0, 1),
                    buf.logprobs[:, idx].flatten(),
                    buf.values[:, idx].flatten(),
                    advantages[:, idx].flatten(),
                    returns[:, idx].flatten(),
                )
                for key, value in stats.items():
                    sums[key] = sums[key] + value if key in sums else value
                count += 1
            if cfg.target_kl is not None and float(stats["losses/approx_kl"]) > cfg.target_kl:
                break
        explained_var = 1.0 - (returns - buf.values).var() / returns.var().clamp_min(1e-8)
        buf.reset()
        self.num_updates += 1
        keys = list(sums)
        values = torch.stack([sums[k] / count for k in keys] + [explained_var]).tolist()
        metrics = dict(zip([*keys, "losses/explained_variance"], values, strict=True))
        metrics["charts/learning_rate"] = lr
        metrics["charts/aacd_stage"] = 2.0
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # PPO's: actor/critic are the current stage's views
        del state["actor"], state["critic"]
        state.update(
            {
                "stage": self.stage,
                "teacher": self.teacher.state_dict(),
                "critic": self.value_net.state_dict(),
                "proprio_rms": self.proprio_rms.state_dict(),
                "memory": self.memory.clone(),
                "reset_pending": self.reset_pending.clone(),
            }
        )
        if self.student is not None:
            state["student"] = self.student.state_dict()
        if self.force_rms is not None:
            state["force_rms"] = self.force_rms.state_dict()
        if self.stage == 2:
            state["sequences"] = {k: v.clone() for k, v in self._sequences().items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["stage"]) == 2 and self.stage == 1:
            self._enter_stage_2(from_teacher=bool(self.cfg.teacher_checkpoint or self.cfg.teacher_steps))
        self.teacher.load_state_dict(state["teacher"])
        self.value_net.load_state_dict(state["critic"])
        if self.student is not None:
            self.student.load_state_dict(state["student"])
        self.proprio_rms.load_state_dict(state["proprio_rms"])
        if self.force_rms is not None:
            self.force_rms.load_state_dict(state["force_rms"])
        self.memory.copy_(state["memory"])
        self.reset_pending.copy_(state["reset_pending"])
        if self.stage == 2:
            for key, value in self._sequences().items():
                value.copy_(state["sequences"][key])
        super().load_state_dict({**state, "actor": self.actor.state_dict(), "critic": self.critic.state_dict()})

    def policy_state_dict(self) -> dict[str, Any]:
        """The acting part of the current stage: teacher or student, and the statistics it reads."""
        state: dict[str, Any] = {
            "stage": self.stage,
            "obs_rms": self.obs_rms.state_dict(),
            "proprio_rms": self.proprio_rms.state_dict(),
        }
        if self.stage == 1:
            state["teacher"] = self.teacher.state_dict()
        else:
            state["student"] = self.student.state_dict()
        if self.force_rms is not None:
            state["force_rms"] = self.force_rms.state_dict()
        return state

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["stage"]) == 2:
            if self.stage == 1:
                self._enter_stage_2(from_teacher=bool(self.cfg.teacher_checkpoint or self.cfg.teacher_steps))
            self.student.load_state_dict(state["student"])
        else:
            self.teacher.load_state_dict(state["teacher"])
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.proprio_rms.load_state_dict(state["proprio_rms"])
        if self.force_rms is not None:
            self.force_rms.load_state_dict(state["force_rms"])


class AAC(AACD):
    """Plain asymmetric actor-critic: :class:`AACD`'s student and privileged critic trained together from scratch."""

    name = "aac"

    def __init__(
        self,
        cfg: AACCfg,
        observation_space: gymnasium.Space,
        action_space: gymnasium.spaces.Box,
        num_envs: int,
        device: str | torch.device = "cpu",
    ) -> None:
        if cfg.teacher_steps or cfg.teacher_checkpoint or cfg.critic_mode != "finetune":
            raise ValueError(
                "AAC trains its critic from scratch with the student: teacher_steps must be 0, teacher_checkpoint "
                f"empty and critic_mode 'finetune' (got {cfg.teacher_steps}, {cfg.teacher_checkpoint!r}, "
                f"{cfg.critic_mode!r}); use --algo aacd for a teacher"
            )
        super().__init__(cfg, observation_space, action_space, num_envs, device)


def _check_dict_space(space: gymnasium.Space, cfg: AACDCfg, learner: str) -> dict[str, gymnasium.spaces.Box]:
    """The dict observation's Box spaces, or a clear error naming the missing or malformed key."""
    if not isinstance(space, gymnasium.spaces.Dict):
        raise TypeError(f"{learner} needs a Dict observation space (privileged state, proprio, touch), got {space!r}")
    tactile_key = cfg.image_key if cfg.tactile_input == "image" else cfg.force_field_key
    needed = (*cfg.privileged_keys, cfg.proprio_key)
    missing = [k for k in needed if k not in space.spaces]
    if missing:
        raise KeyError(
            f"{learner}: observation has no key(s) {missing}; it has {sorted(space.spaces)} "
            "(set privileged_keys / proprio_key / image_key / force_field_key)"
        )
    boxes = {k: space.spaces[k] for k in (*needed, tactile_key) if k in space.spaces}  # touch: stage 2 only
    for key, box in boxes.items():
        if not isinstance(box, gymnasium.spaces.Box):
            raise TypeError(f"{learner}: observation key {key!r} must be a Box, got {box!r}")
        if key == tactile_key and len(box.shape) != 4:
            layout = "(fingers, 3, H, W) uint8" if cfg.tactile_input == "image" else "(fingers, rows, cols, 3)"
            raise ValueError(f"{learner}: observation key {key!r} has shape {box.shape}; expected {layout} per env")
    if cfg.tactile_input == "image" and tactile_key in boxes and boxes[tactile_key].dtype != np.uint8:
        raise TypeError(f"{learner}: {tactile_key!r} must be uint8 images, got dtype {boxes[tactile_key].dtype}")
    return boxes
