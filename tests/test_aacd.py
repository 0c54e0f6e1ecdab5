"""AACD and plain AAC (policies/aacd.py) on a small synthetic touch task, and their building blocks.

``Test/TouchReach-v0`` (defined here) is a learnable stand-in for peg insertion with the same
observation keys: a point must reach a hidden goal. ``privileged`` holds the goal, so a
teacher learns it fast; the student sees it only through a noisy ``tactile_image`` whose blob
sits at the goal's offset from the point (a keypoint, as soft-argmax reads it), optionally
with per-episode image augmentation (colour-channel swap, colour jitter, shift).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from embodied.policies import LEARNERS
from embodied.policies.aacd import AAC, AACD, AACCfg, AACDCfg, spatial_soft_argmax
from embodied.policies.checkpoint import first_difference, load_checkpoint
from embodied.policies.train import TrainCfg, build_env, evaluate, load_policy, train
from embodied.sim.env import BatchedEnv, TaskCfg
from embodied.tasks import registry

TASK = "Test/TouchReach-v0"
FINGERS, H, W = 2, 12, 16


@dataclass
class TouchReachCfg(TaskCfg):
    step_size: float = 0.25
    """How far one full action moves the point (per axis)."""
    image_noise: float = 10.0
    """Std of the per-pixel noise on the tactile image (uint8 units)."""
    blob_jitter: float = 0.05
    """Std of the blob's position noise, in goal units."""
    blob_width: float = 0.25
    """Width of the blob (image units; the image spans [-1, 1])."""
    augment: bool = False
    """Per-episode image augmentation: colour-channel permutation, colour gain, 1-2 pixel shift."""


class TouchReachEnv(BatchedEnv):
    """Reach a hidden goal g in [-1, 1]^2 from p; reward -|p - g|; success when |p - g| < 0.15."""

    default_max_episode_steps = 16

    def __init__(self, cfg: TouchReachCfg, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        f32 = np.float32
        self._set_spaces(
            gymnasium.spaces.Dict(
                {
                    "proprio": gymnasium.spaces.Box(-2, 2, (2,), f32),
                    "tactile_image": gymnasium.spaces.Box(0, 255, (FINGERS, 3, H, W), np.uint8),
                    "force_field": gymnasium.spaces.Box(-np.inf, np.inf, (FINGERS, 4, 5, 3), f32),
                    "privileged": gymnasium.spaces.Box(-2, 2, (2,), f32),
                }
            ),
            gymnasium.spaces.Box(-1, 1, (2,), f32),
        )
        n, dev = self.num_envs, self.device
        self.p, self.g = torch.zeros(n, 2, device=dev), torch.zeros(n, 2, device=dev)
        self.perm = torch.arange(3, device=dev).repeat(n, 1)
        self.gain = torch.ones(n, 3, device=dev)
        self.shift = torch.zeros(n, 2, dtype=torch.long, device=dev)

    def _reset_envs(self, env_ids: torch.Tensor) -> None:
        k, gen, dev = len(env_ids), self.generator, self.device
        self.p[env_ids] = torch.rand(k, 2, generator=gen, device=dev) * 2 - 1
        self.g[env_ids] = torch.rand(k, 2, generator=gen, device=dev) * 2 - 1
        if self.cfg.augment:
            self.perm[env_ids] = torch.rand(k, 3, generator=gen, device=dev).argsort(-1)
            self.gain[env_ids] = 0.5 + torch.rand(k, 3, generator=gen, device=dev)
            self.shift[env_ids] = torch.randint(-2, 3, (k, 2), generator=gen, device=dev)

    def _apply_action(self, action: torch.Tensor) -> None:
        self.p = (self.p + self.cfg.step_size * action).clamp(-1.5, 1.5)

    def _observe(self) -> dict[str, torch.Tensor]:
        n, gen, dev = self.num_envs, self.generator, self.device
        offset = (self.g - self.p) / 2 + self.cfg.blob_jitter * torch.randn(n, 2, generator=gen, device=dev)
        cols = torch.linspace(-1, 1, W, device=dev)
        rows = torch.linspace(-1, 1, H, device=dev)
        d2 = (cols.view(1, 1, W) - offset[:, 0].view(n, 1, 1)) ** 2 + (
            rows.view(1, H, 1) - offset[:, 1].view(n, 1, 1)
        ) ** 2
        blob = torch.exp(-d2 / self.cfg.blob_width**2)  # (n, H, W)
        colour = torch.tensor([220.0, 120.0, 30.0], device=dev)
        background = torch.tensor([20.0, 60.0, 110.0], device=dev)
        img = background.view(1, 3, 1, 1) + (colour - background).view(1, 3, 1, 1) * blob.unsqueeze(1)
        img = torch.gather(img, 1, self.perm.view(n, 3, 1, 1).expand(n, 3, H, W)) * self.gain.view(n, 3, 1, 1)
        if self.cfg.augment:
            img = torch.stack(
                [torch.roll(im, tuple(s.tolist()), dims=(1, 2)) for im, s in zip(img, self.shift, strict=True)]
            )
        images = torch.stack([img, torch.full_like(img, 40.0)], dim=1)  # the second finger touches nothing
        images = images + self.cfg.image_noise * torch.randn(images.shape, generator=gen, device=dev)
        field = torch.zeros(n, FINGERS, 4, 5, 3, device=dev)
        field[:, 0, 0, :2, :2] = offset.view(n, 1, 2)  # a crude "force" reading of the same offset
        return {
            "proprio": self.p.clone(),
            "tactile_image": images.clamp(0, 255).to(torch.uint8),
            "force_field": field,
            "privileged": self.g.clone(),
        }

    def _reward_and_termination(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        dist = (self.p - self.g).norm(dim=-1)
        self.success = dist < 0.15
        return {"distance": -dist}, torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)

    def step(self, actions):
        obs, reward, terminated, truncated, info = super().step(actions)
        info["success"] = self.success
        return obs, reward, terminated, truncated, info

    def _sim_state(self) -> dict[str, Any]:
        return {k: getattr(self, k).clone() for k in ("p", "g", "perm", "gain", "shift")}

    def _load_sim_state(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v.clone())


@pytest.fixture(scope="module", autouse=True)
def touch_task():
    registry.register(
        TASK,
        vector_entry_point=f"{__name__}:TouchReachEnv",
        cfg_entry_point=f"{__name__}:TouchReachCfg",
        max_episode_steps=16,
        backends=("torch",),
        obs_kinds=("state", "tactile_image", "force_field", "privileged"),
    )
    yield
    registry.unregister(TASK)


SMALL = {
    "hidden_sizes": [32, 32],
    "conv_channels": [8],
    "conv_kernels": [3],
    "conv_strides": [1],
    "num_keypoints": 4,
    "rnn_size": 32,
    "head_sizes": [32],
    "num_steps": 16,
    "num_minibatches": 4,
    "sequence_minibatches": 2,
    "update_epochs": 4,
}


def make(algo: str = "aacd", num_envs: int = 4, seed: int = 0, task: dict | None = None, **overrides: Any):
    """An env of the touch task and a learner on it, with small networks."""
    torch.manual_seed(seed)
    env = build_env(TASK, num_envs, "cpu", seed, task)
    cls, cfg_cls = (AAC, AACCfg) if algo == "aac" else (AACD, AACDCfg)
    from embodied.config import apply_overrides

    cfg = apply_overrides(cfg_cls(), {**SMALL, "sequence_minibatches": 2, **overrides})
    return env, cls(cfg, env.single_observation_space, env.single_action_space, num_envs)


def run(learner: AACD, env: BatchedEnv, steps: int, obs: Any = None) -> tuple[Any, list[float]]:
    """The training loop's calls for ``steps`` batched steps; returns the last obs and finished returns."""
    obs = env.reset(seed=0)[0] if obs is None else obs
    returns: list[float] = []
    for _ in range(steps):
        action = learner.act(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        learner.observe(obs, action, reward, info["final_obs"], terminated, truncated, info)
        done = terminated | truncated
        learner.episodes_ended(done)
        returns += info["episode_return"][done].tolist()
        obs = next_obs
        if learner.ready_to_update():
            learner.update()
    return obs, returns


# ---------------------------------------------------------------------------- soft-argmax


@pytest.mark.parametrize("row,col", [(0, 0), (0, 15), (11, 0), (11, 15), (5, 7), (3, 12)])
def test_soft_argmax_returns_a_single_bright_pixel_exactly(row, col):
    features = torch.zeros(1, 1, H, W)
    features[0, 0, row, col] = 200.0  # every other pixel weighs exp(-200): nothing
    xy = spatial_soft_argmax(features)[0, 0]
    # Exactly the pixel's grid coordinate (float32 linspace), which is col/row mapped onto [-1, 1].
    assert torch.equal(xy, torch.stack([torch.linspace(-1, 1, W)[col], torch.linspace(-1, 1, H)[row]]))
    torch.testing.assert_close(xy, torch.tensor([-1 + 2 * col / (W - 1), -1 + 2 * row / (H - 1)]))


def test_soft_argmax_matches_a_numpy_expectation():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 5, 7, 9))
    t = 0.7
    got = spatial_soft_argmax(torch.as_tensor(maps), t).numpy()
    p = np.exp(maps / t - (maps / t).max(axis=(2, 3), keepdims=True))
    p /= p.sum(axis=(2, 3), keepdims=True)
    ys, xs = np.meshgrid(np.linspace(-1, 1, 7), np.linspace(-1, 1, 9), indexing="ij")
    want = np.stack([(p * xs).sum(axis=(2, 3)), (p * ys).sum(axis=(2, 3))], axis=-1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # A uniform map sits at the centre.
    assert torch.allclose(spatial_soft_argmax(torch.zeros(1, 2, 6, 8)), torch.zeros(1, 2, 2), atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 9),
    st.integers(1, 9),
    st.floats(1e-3, 1e3),
    st.floats(-1e4, 1e4, allow_nan=False),
    st.integers(0, 2**31),
)
def test_soft_argmax_stays_inside_the_image_for_any_map(h, w, temperature, scale, seed):
    maps = scale * torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))
    xy = spatial_soft_argmax(maps, temperature)
    assert xy.shape == (2, 3, 2) and torch.isfinite(xy).all() and xy.abs().max() <= 1.0 + 1e-6


# ---------------------------------------------------------------------------- the recurrent student


def test_student_memory_resets_at_episode_ends_and_replays_as_acted():
    env, learner = make("aac", num_envs=4)
    obs, _ = run(learner, env, 5)  # stage 2 from the first step; memory is now non-zero
    student = learner.student
    before = learner.memory.clone()
    assert before.abs().sum(-1).gt(0).all()
    learner.episodes_ended(torch.tensor([True, False, True, False]))
    learner.act(obs)
    tactile, proprio = learner._to_float(learner._tactile(obs)), learner._last[6]
    with torch.no_grad():
        fresh = student.step(tactile, proprio, torch.zeros_like(before))[2]
        carried = student.step(tactile, proprio, before)[2]
    assert torch.equal(learner.memory[[0, 2]], fresh[[0, 2]])
    assert torch.equal(learner.memory[[1, 3]], carried[[1, 3]])
    learner._last = None

    # Deterministic acting (evaluation) keeps its own memory, cleared by episode ends too.
    learner.act(obs, deterministic=True)
    learner.act(obs, deterministic=True)
    assert learner._eval_memory.abs().sum() > 0
    learner.episodes_ended(torch.tensor([True, True, False, False]))
    assert learner._eval_memory[:2].abs().sum() == 0 and learner._eval_memory[2:].abs().sum() > 0
    assert torch.equal(learner.memory, fresh.where(torch.tensor([1, 0, 1, 0]).bool()[:, None], carried))

    # A rollout that crosses episode ends (16-step episodes, 12-step rollouts: the second one
    # holds the end of step 16): the truncated-BPTT replay gives exactly the log-probabilities acting stored.
    env, learner = make("aac", num_envs=4, num_steps=12)
    obs, _ = run(learner, env, 12 + 11)
    action = learner.act(obs)
    _, reward, terminated, truncated, info = env.step(action)
    learner.observe(obs, action, reward, info["final_obs"], terminated, truncated, info)
    assert learner.ready_to_update()
    seq = learner._sequences()
    assert seq["starts"][4].all() and not seq["starts"][:4].any() and not seq["starts"][5:].any()
    with torch.no_grad():
        mean, std = learner.student.unroll(
            learner._to_float(seq["tactile"]), seq["proprio"], seq["starts"], seq["memory0"]
        )
    from embodied.policies.nets import GaussianActor

    logp = GaussianActor.log_prob(mean, std, learner.buffer.actions)
    torch.testing.assert_close(logp, learner.buffer.logprobs, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- the stages


@pytest.mark.parametrize("mode", ["frozen", "finetune", "finetune_own_rate_teacher_stats"])
def test_stage_2_critic_starts_from_stage_1_and_is_frozen_or_trained(mode):
    own = {"critic_learning_rate": 1e-4, "keep_teacher_stats": True} if mode.endswith("stats") else {}
    env, learner = make(num_envs=4, num_steps=16, teacher_steps=128, critic_mode=mode[:8], **own)
    obs, _ = run(learner, env, 32)  # two teacher rollouts: 128 transitions, stage 1 still acts
    assert learner.stage == 1 and learner.num_updates == 2
    critic = {k: v.clone() for k, v in learner.value_net.state_dict().items()}
    teacher = {k: v.clone() for k, v in learner.teacher.state_dict().items()}
    stats = (learner.obs_rms.mean.clone(), learner.return_rms.var.clone())
    obs, _ = run(learner, env, 1, obs)  # the next training step starts the student
    assert learner.stage == 2
    assert first_difference(critic, learner.value_net.state_dict()) is None  # stage 1's weights, as they were
    run(learner, env, 48, obs)  # three student updates
    assert learner.num_updates == 5
    unchanged = first_difference(critic, learner.value_net.state_dict()) is None
    assert unchanged == (mode == "frozen")
    if mode != "finetune":  # the critic's input and return scales are stage 1's too
        assert torch.equal(stats[0], learner.obs_rms.mean) and torch.equal(stats[1], learner.return_rms.var)
    else:
        assert not torch.equal(stats[0], learner.obs_rms.mean)
    assert first_difference(teacher, learner.teacher.state_dict()) is None  # the teacher rests
    # The critic's own rate follows the schedule beside the student's; its own group means its own clip.
    lrs = [group["lr"] for group in learner.optimizer.param_groups]
    lr = learner.cfg.learning_rate
    assert lrs == ([lr] if mode in ("frozen", "finetune") else [lr, pytest.approx(1e-4)])


def test_a_critic_with_its_own_group_is_clipped_on_its_own(monkeypatch):
    env, learner = make(num_envs=4, num_steps=16, teacher_steps=16, critic_mode="finetune", critic_learning_rate=1e-4,
                        max_grad_norm=1e-3)
    obs, _ = run(learner, env, 17)  # one teacher rollout, then the student starts
    assert learner.stage == 2
    student, critic = (group["params"] for group in learner.optimizer.param_groups)
    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(params, max_norm):
        total = clip(params, max_norm)
        norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
        return total

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    run(learner, env, 16, obs)
    # Each group's gradient was brought to the clip by itself (a joint clip would leave one below it).
    assert len(norms) == 2 * learner.cfg.update_epochs * learner.cfg.sequence_minibatches
    torch.testing.assert_close(torch.stack(norms), torch.full((len(norms),), 1e-3), rtol=1e-3, atol=0)
    assert len(student) + len(critic) == len(learner._params)


def test_force_field_student_trains():
    env, learner = make("aac", num_envs=4, num_steps=8, tactile_input="force_field")
    assert learner.tactile_shape == (FINGERS, 3, 4, 5)
    before = {k: v.clone() for k, v in learner.student.state_dict().items()}
    run(learner, env, 16)
    assert learner.num_updates == 2 and first_difference(before, learner.student.state_dict()) is not None
    assert learner._sequences()["tactile"].dtype == torch.float32


def test_bad_configs_fail_naming_the_problem():
    env = build_env(TASK, 2, "cpu", 0)
    obs_space, act_space = env.single_observation_space, env.single_action_space
    with pytest.raises(ValueError, match="frozen.*needs a trained critic"):
        AACD(AACDCfg(teacher_steps=0), obs_space, act_space, 2)
    with pytest.raises(ValueError, match="critic_learning_rate=0.0 must be positive"):
        AACD(AACDCfg(critic_learning_rate=0.0, critic_mode="finetune"), obs_space, act_space, 2)
    with pytest.raises(ValueError, match="a frozen critic has no learning rate"):
        AACD(AACDCfg(critic_learning_rate=1e-4), obs_space, act_space, 2)
    with pytest.raises(ValueError, match="keep_teacher_stats needs a teacher"):
        AAC(AACCfg(keep_teacher_stats=True), obs_space, act_space, 2)
    with pytest.raises(ValueError, match="AAC trains its critic from scratch"):
        AAC(AACCfg(teacher_steps=100), obs_space, act_space, 2)
    with pytest.raises(KeyError, match="no key.*'socket'"):
        AACD(AACDCfg(privileged_keys=("privileged", "socket")), obs_space, act_space, 2)
    with pytest.raises(TypeError, match="Dict observation"):
        AACD(AACDCfg(), obs_space["proprio"], act_space, 2)
    with pytest.raises(ValueError, match="sequence_minibatches=4 exceeds num_envs=2"):
        AACD(AACDCfg(), obs_space, act_space, 2)
    # A teacher-only observation (no touch entry) trains stage 1 and refuses stage 2 clearly.
    teacher_only = gymnasium.spaces.Dict({k: obs_space[k] for k in ("proprio", "privileged")})
    learner = AACD(
        AACDCfg(**{**SMALL, "sequence_minibatches": 2, "teacher_steps": 0, "critic_mode": "finetune"}),
        teacher_only,
        act_space,
        2,
    )
    with pytest.raises(ValueError, match="stage 2 needs the touch entry 'tactile_image'"):
        learner.act({k: torch.zeros(2, *obs_space[k].shape) for k in ("proprio", "privileged")})


# ---------------------------------------------------------------------------- learning and checkpoints

LEARN = {"learning_rate": 1e-3, "num_steps": 16}


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A stage-1-only run (total_steps == teacher_steps): its checkpoint teaches the students below."""
    run_dir = tmp_path_factory.mktemp("teacher")
    cfg = TrainCfg(
        total_steps=10240,
        num_envs=16,
        seed=1,
        run_dir=str(run_dir),
        checkpoint_every=0,
        eval_episodes=32,
        progress=False,
        tensorboard=False,
    )
    return train(TASK, "aacd", cfg, learner_overrides={**SMALL, **LEARN, "teacher_steps": 10240})


def test_teacher_learns_and_the_student_improves_with_the_loaded_critic(teacher_run):
    teacher_eval = json.loads((teacher_run / "eval.json").read_text())
    assert load_checkpoint(teacher_run)["learner"]["stage"] == 1  # evaluated as the teacher
    assert teacher_eval["success_rate"] >= 0.9, teacher_eval

    env, learner = make(num_envs=16, seed=2, **LEARN, update_epochs=8, teacher_checkpoint=str(teacher_run))
    learner.act(env.reset(seed=0)[0])  # the first training step loads the teacher and starts the student
    learner._last = None
    assert learner.stage == 2 and learner._critic_frozen
    taught = load_checkpoint(teacher_run)["learner"]["critic"]
    assert first_difference(taught, learner.value_net.state_dict()) is None
    start = evaluate(TASK, learner, 64, seed=7)
    run(learner, env, 40 * 16)  # 40 updates, 10,240 env steps
    end = evaluate(TASK, learner, 64, seed=7)
    assert first_difference(taught, learner.value_net.state_dict()) is None  # frozen throughout
    # A fresh student wanders (return about -15, success ~0); with the teacher's critic it learns to reach
    # (measured: return -4 to -6 after these 40 updates; success 0.1-0.5, so only its rise is asserted).
    print(
        f"student return {start['return_mean']:.2f} -> {end['return_mean']:.2f}, "
        f"success {start['success_rate']:.2f} -> {end['success_rate']:.2f}"
    )
    assert end["return_mean"] > start["return_mean"] + 5.0, (start["return_mean"], end["return_mean"])
    assert end["success_rate"] > start["success_rate"], (start["success_rate"], end["success_rate"])


def test_two_stage_run_resumes_bit_identically_and_exports_a_student(tmp_path):
    overrides = {**SMALL, "num_steps": 8, "teacher_steps": 64, "critic_mode": "finetune"}

    def cfg(name: str, total: int) -> TrainCfg:
        return TrainCfg(
            total_steps=total,
            num_envs=4,
            seed=3,
            run_dir=str(tmp_path / name),
            checkpoint_every=0,
            eval_episodes=0,
            progress=False,
            tensorboard=False,
        )

    reference = load_checkpoint(train(TASK, "aacd", cfg("a", 192), learner_overrides=overrides))
    assert reference["learner"]["stage"] == 2
    # Stop mid-rollout in stage 2 (a checkpoint with a partial sequence store), then resume.
    first = load_checkpoint(train(TASK, "aacd", cfg("b", 100), learner_overrides=overrides))
    assert first["learner"]["stage"] == 2 and 0 < first["learner"]["buffer"]["step"] < 8
    resumed = load_checkpoint(train(TASK, "aacd", resume=tmp_path / "b", total_steps=192))
    assert first_difference(reference["learner"], resumed["learner"]) is None, first_difference(
        reference["learner"], resumed["learner"]
    )
    assert first_difference(reference["rng"], resumed["rng"]) is None

    # The exported policy is the student; it acts like the trained learner.
    from embodied.policies.train import export_policy

    policy_file = export_policy(tmp_path / "a" / "checkpoint.pt", tmp_path / "policy.pt")
    policy, _ = load_policy(policy_file)
    learner, _ = load_policy(tmp_path / "a")
    assert policy.stage == learner.stage == 2
    obs = build_env(TASK, 4, "cpu", 0).reset(seed=0)[0]
    for _ in range(3):
        assert torch.equal(policy.act(obs, deterministic=True), learner.act(obs, deterministic=True))


def test_cli_trains_both_stages(tmp_path, capsys):
    from embodied.cli import main

    args = [
        "train",
        TASK,
        "--algo",
        "aacd",
        "--num-envs",
        "4",
        "--total-steps",
        "96",
        "--run-dir",
        str(tmp_path),
        "--no-progress",
        "algo.teacher_steps=32",
        "algo.num_steps=8",
        "algo.sequence_minibatches=2",
        "algo.num_minibatches=4",
        "algo.rnn=gru",
        "algo.image_pool=2",
        "algo.conv_channels=[4]",
        "algo.conv_kernels=[3]",
        "algo.conv_strides=[2]",
        "tensorboard=false",
        "eval_episodes=4",
    ]
    assert main(args) == 0
    state = load_checkpoint(tmp_path)
    assert state["learner"]["stage"] == 2 and state["learner"]["counters"]["num_updates"] == 3
    assert json.loads((tmp_path / "eval.json").read_text())["algo"] == "aacd"
    assert set(LEARNERS) >= {"aacd", "aac"}


# ---------------------------------------------------------------------------- rollout workers


def _worker_cfg(run_dir, total: int) -> TrainCfg:
    return TrainCfg(total_steps=total, num_envs=4, seed=3, run_dir=str(run_dir), checkpoint_every=0, eval_episodes=0,
                    progress=False, tensorboard=False, workers=2, worker_mode="serial")


def test_the_student_acts_in_rollout_workers_and_its_sequences_replay_as_acted(tmp_path):
    """AACD through two (serial) rollout workers: the stage switch happens at a round start, each
    worker's student carries its envs' memory across episode ends (16-step episodes, 24-step rounds),
    and the driver stores the workers' act records so that its truncated-BPTT replay gives exactly
    the log-probabilities the workers acted with; a run stopped mid-round resumes bit-identically."""
    from embodied.policies.nets import GaussianActor
    from embodied.policies.scaleout.workers import WorkerRollout
    from embodied.policies.train import RunSpec, build_learner

    overrides = {**SMALL, "num_steps": 24, "teacher_steps": 96, "critic_mode": "finetune"}
    # 4 envs x 24 steps = 96 transitions a round: round 1 is the teacher's, round 2 the student's.
    run_dir = train(TASK, "aacd", _worker_cfg(tmp_path / "a", total=96), learner_overrides=overrides)
    run = RunSpec(**load_checkpoint(run_dir)["run"])
    source = WorkerRollout(run, _worker_cfg(tmp_path / "b", total=0))
    learner = build_learner("aacd", source, "cpu", run.learner_cfg)
    learner.load_state_dict(load_checkpoint(run_dir)["learner"])
    assert learner.stage == 1 and learner.num_transitions == 96
    for _ in range(24):
        obs, action, reward, terminated, truncated, info = source.next_step(learner)
        learner.observe(obs, action, reward, info["final_obs"], terminated, truncated, info)
        learner.episodes_ended(terminated | truncated)
    assert learner.stage == 2 and learner.ready_to_update()
    seq = learner._sequences()
    assert seq["starts"][16].all() and not seq["starts"][:16].any()  # the episode ends inside the round
    with torch.no_grad():
        mean, std = learner.student.unroll(learner._to_float(seq["tactile"]), seq["proprio"], seq["starts"],
                                           seq["memory0"])
    logp = GaussianActor.log_prob(mean, std, learner.buffer.actions)
    torch.testing.assert_close(logp, learner.buffer.logprobs, rtol=1e-5, atol=1e-5)
    memory = [state["memory"]["memory"] for state in source.pool.states]
    assert all(m.abs().sum() > 0 for m in memory)  # each worker's student remembers its own envs
    source.close()

    reference = load_checkpoint(train(TASK, "aacd", _worker_cfg(tmp_path / "c", total=384), learner_overrides=overrides))
    train(TASK, "aacd", _worker_cfg(tmp_path / "d", total=4 * (24 * 2 + 5)), learner_overrides=overrides)
    assert load_checkpoint(tmp_path / "d")["workers"]["next_index"] == 5
    resumed = load_checkpoint(train(TASK, "aacd", resume=tmp_path / "d", total_steps=384))
    assert resumed["learner"]["stage"] == reference["learner"]["stage"] == 2
    assert first_difference(reference["learner"], resumed["learner"]) is None
    assert first_difference(reference["workers"], resumed["workers"]) is None
