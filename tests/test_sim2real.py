"""The sim-to-real adapters, each checked on known inputs against a reference env stepped by hand.

Every adapter test runs on each task in ``TASKS`` (add a family's task with one line). The
reference is the same task made with the same seed: the adapters that draw randomness
(noise) use their own generator, so the reference sees the same initial states.
"""

from __future__ import annotations

import copy
import json
import math
import time
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import embodied
from embodied.config import ConfigError, apply_overrides
from embodied.sim.env import BatchedEnv, TaskCfg
from embodied.sim2real import (
    ActionLatency,
    ActionLimiter,
    ActionSafety,
    AdaptersCfg,
    DecisionRate,
    DomainRandomization,
    Hardware,
    HardwareError,
    LatencyCfg,
    NoiseCfg,
    ObservationNoise,
    RandomizeCfg,
    RateCfg,
    SafetyCfg,
    SimulatedHardware,
    run_policy,
    wrap,
)
from embodied.sim2real.image_augment import full_augmentation

TASKS = [
    "Control/Pendulum-v0",  # torch, never terminates (short episodes force truncations)
    "Control/InvertedPendulum-v0",  # MuJoCo, terminates as soon as the pole falls
    "Beam/OrbitCorrection-CM1-v0",  # cheetah, terminates on success, machine errors as DR parameters
]
task_ids = pytest.mark.parametrize("task_id", TASKS, ids=TASKS)


def make(task_id: str, num_envs: int = 4, seed: int = 0, episode: int | None = None) -> BatchedEnv:
    env = embodied.make(task_id, num_envs=num_envs, seed=seed)
    if episode is not None:
        env.max_episode_steps = episode
    return env


def random_actions(env: BatchedEnv, steps: int, seed: int = 1, scale: float = 1.0) -> list[torch.Tensor]:
    """Fixed actions within ``scale`` times the action space, from a generator of their own."""
    g = torch.Generator().manual_seed(seed)
    env = env.unwrapped  # primitive actions, whatever the wrappers
    low, high = env.action_low.cpu(), env.action_high.cpu()
    shape = (env.num_envs, *env.single_action_space.shape)
    mid, half = (low + high) / 2, (high - low) / 2
    return [(mid + scale * half * (2 * torch.rand(shape, generator=g) - 1)).to(env.device) for _ in range(steps)]


def record_applied(env: BatchedEnv) -> list[torch.Tensor]:
    """Spy on the physics: the list fills with every action the task's ``_apply_action`` receives."""
    base, applied = env.unwrapped, []
    original = base._apply_action

    def spy(action: torch.Tensor) -> None:
        applied.append(action.clone())
        original(action)

    base._apply_action = spy  # type: ignore[method-assign]
    return applied


def assert_same_step(a: tuple, b: tuple) -> None:
    """Two ``step`` results are identical (obs, reward, flags, final_obs, episode counters)."""
    obs_a, rew_a, te_a, tr_a, info_a = a
    obs_b, rew_b, te_b, tr_b, info_b = b
    assert torch.equal(obs_a, obs_b)
    assert torch.equal(rew_a, rew_b)
    assert torch.equal(te_a, te_b) and torch.equal(tr_a, tr_b)
    assert torch.equal(info_a["final_obs"], info_b["final_obs"])
    assert torch.equal(info_a["episode_length"], info_b["episode_length"])


# ====================================================================== latency
@task_ids
def test_latency_applies_the_action_from_k_steps_ago(task_id):
    k = 2
    env = ActionLatency(make(task_id, episode=7), LatencyCfg(steps=k))
    ref = make(task_id, episode=7)
    actions = random_actions(env, 30)
    env.reset(seed=3)
    ref.reset(seed=3)
    since_reset = torch.zeros(env.num_envs, dtype=torch.long)
    dones = 0
    for t, action in enumerate(actions):
        # Reference: zeros for the first k steps of each episode, then the action from k steps ago.
        delayed = actions[t - k] if t >= k else torch.zeros_like(action)
        expected = torch.where((since_reset >= k)[:, None], delayed, torch.zeros_like(action))
        out, out_ref = env.step(action), ref.step(expected)
        assert_same_step(out, out_ref)
        done = out[2] | out[3]
        since_reset = torch.where(done, 0, since_reset + 1)
        dones += int(done.sum())
    assert dones > 0, "the test should cross episode boundaries"


@task_ids
def test_latency_hold_refills_the_queue_with_the_last_applied_action(task_id):
    env = ActionLatency(make(task_id), LatencyCfg(steps=3, initial_action="hold"))
    applied = record_applied(env)
    env.reset(seed=0)
    actions = random_actions(env, 5, scale=0.05)
    for action in actions:
        env.step(action)
    last = applied[-1].clone()
    assert torch.equal(last, actions[1])  # the action from 3 steps before the 5th step
    env.reset(env_ids=torch.tensor([0, 2]))
    new = random_actions(env, 1, seed=9)[0]
    env.step(new)
    assert torch.equal(applied[-1][[0, 2]], last[[0, 2]]), "reset envs hold their last applied action"
    assert torch.equal(applied[-1][[1, 3]], actions[2][[1, 3]]), "other envs keep their queue"


@task_ids
def test_latency_zero_steps_passes_actions_through(task_id):
    env, ref = ActionLatency(make(task_id), LatencyCfg(steps=0)), make(task_id)
    env.reset(seed=0)
    ref.reset(seed=0)
    for action in random_actions(env, 10):
        assert_same_step(env.step(action), ref.step(action))


def test_latency_set_steps_changes_the_delay_live_without_a_stale_or_zero_command():
    env = ActionLatency(make("Control/Pendulum-v0", num_envs=2), LatencyCfg(steps=2))
    applied = record_applied(env)
    env.reset(seed=0)
    a = random_actions(env, 8, scale=0.5)
    for action in a[:4]:
        env.step(action)
    assert torch.equal(applied[-1], a[1])
    env.set_steps(4)  # longer: the last applied action is held until the queued ones come out
    for action in a[4:6]:
        env.step(action)
    assert torch.equal(applied[-2], a[1]) and torch.equal(applied[-1], a[1])
    env.step(a[6])
    assert torch.equal(applied[-1], a[2]), "then the queue plays on: a[2] was queued before the change"
    env.set_steps(1)  # shorter: only the newest queued action stays
    env.step(a[7])
    assert torch.equal(applied[-1], a[6])
    env.set_steps(0)
    env.step(a[0])
    assert torch.equal(applied[-1], a[0])
    with pytest.raises(ValueError, match="steps"):
        env.set_steps(-1)


def test_noise_set_std_changes_the_noise_live():
    noisy, clean = ObservationNoise(make("Control/Pendulum-v0"), NoiseCfg()), make("Control/Pendulum-v0")
    obs, ref = noisy.reset(seed=0)[0], clean.reset(seed=0)[0]
    assert torch.equal(obs, ref)
    noisy.set_std(0.5)
    action = random_actions(noisy, 1)[0]
    obs, ref = noisy.step(action)[0], clean.step(action)[0]
    assert 0.1 < float((obs - ref).std()) < 1.5
    with pytest.raises(ValueError, match="std"):
        noisy.set_std(float("nan"))


def test_latency_rejects_bad_configs_and_actions():
    env = make("Control/Pendulum-v0")
    with pytest.raises(ValueError, match="steps"):
        ActionLatency(env, LatencyCfg(steps=-1))
    with pytest.raises(ValueError, match="initial_action"):
        ActionLatency(env, LatencyCfg(initial_action="last"))  # type: ignore[arg-type]
    wrapped = ActionLatency(env, LatencyCfg(steps=1))
    wrapped.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        wrapped.step(torch.zeros(4, 2))


# ====================================================================== decision rate
@task_ids
def test_rate_equals_k_manual_primitive_steps_with_summed_reward(task_id):
    k = 4
    env = DecisionRate(make(task_id, episode=10), RateCfg(steps=k))
    ref = make(task_id, episode=10)
    env.reset(seed=5)
    ref.reset(seed=5)
    finished_part_way = 0
    for action in random_actions(env, 12):
        obs, reward, terminated, truncated, info = env.step(action)
        # Reference, as documented: sum while in the episode, stop at the first finish,
        # then reset envs that finished before the last primitive step.
        n = ref.num_envs
        active, restart = torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
        total, final = torch.zeros(n), None
        te_ref, tr_ref = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
        length = torch.zeros(n, dtype=torch.long)
        for i in range(k):
            o, r, te, tr, inf = ref.step(action)
            total += torch.where(active, r, 0.0)
            final = inf["final_obs"].clone() if final is None else torch.where(active[:, None], inf["final_obs"], final)
            length = torch.where(active, inf["episode_length"], length)
            fin = active & (te | tr)
            te_ref |= fin & te
            tr_ref |= fin & tr
            if i < k - 1:
                restart |= fin
            active &= ~fin
        if restart.any():
            fresh, _ = ref.reset(env_ids=restart.nonzero().squeeze(-1))
            o = torch.where(restart[:, None], fresh, o)
        finished_part_way += int(restart.sum())
        assert torch.equal(obs, o)
        assert torch.allclose(reward, total, atol=1e-5)
        assert torch.equal(terminated, te_ref) and torch.equal(truncated, tr_ref)
        assert torch.equal(info["final_obs"], final)
        assert torch.equal(info["episode_length"], length)
        assert (env.unwrapped.episode_length[restart] == 0).all(), "restarted envs begin a clean episode"
    assert finished_part_way > 0, "the test should finish episodes part-way through a decision"


def test_rate_without_episode_ends_is_exactly_k_steps():
    env, ref = DecisionRate(make("Control/Pendulum-v0"), RateCfg(steps=4)), make("Control/Pendulum-v0")
    env.reset(seed=0)
    ref.reset(seed=0)
    for action in random_actions(env, 5):
        obs, reward, *_ , info = env.step(action)
        steps = [ref.step(action) for _ in range(4)]
        assert torch.equal(obs, steps[-1][0])
        assert torch.allclose(reward, sum(s[1] for s in steps), atol=1e-6)
        expected_terms = sum(s[4]["reward_terms"]["swing_up"] for s in steps)
        assert torch.allclose(info["reward_terms"]["swing_up"], expected_terms, atol=1e-6)


@task_ids
def test_rate_plays_action_sequences(task_id):
    k = 3
    env = DecisionRate(make(task_id), RateCfg(steps=k, action_sequence=True))
    assert env.single_action_space.shape == (k, *env.unwrapped.single_action_space.shape)
    assert env.action_space.shape == (env.num_envs, k, *env.unwrapped.single_action_space.shape)
    assert env.random_action().shape == (env.num_envs, k, *env.unwrapped.single_action_space.shape)
    ref = make(task_id)
    applied = record_applied(env)
    env.reset(seed=0)
    ref.reset(seed=0)
    seq = torch.stack(random_actions(env, k, scale=0.05), dim=1)
    obs, *_ = env.step(seq)
    for i in range(k):
        assert torch.equal(applied[i], seq[:, i])
        ref_obs, *_ = ref.step(seq[:, i])
    assert torch.equal(obs, ref_obs)
    assert env.check_action(seq).shape == seq.shape


@task_ids
def test_rate_reports_the_primitive_transitions_of_a_manual_rollout(task_id):
    k = 4
    env = DecisionRate(make(task_id, episode=10), RateCfg(steps=k, action_sequence=True))
    ref = make(task_id, episode=10)
    obs, _ = env.reset(seed=2)
    ref_obs, _ = ref.reset(seed=2)
    partial = 0
    for t in range(10):
        seq = torch.stack(random_actions(env, k, seed=t), dim=1)
        next_obs, *_, info = env.step(seq)
        prim = info["primitive"]
        n = ref.num_envs
        assert prim["obs"].shape == (n, k, *obs.shape[1:]) and prim["action"].shape == seq.shape
        active = torch.ones(n, dtype=torch.bool)
        for i in range(k):
            o, r, te, tr, inf = ref.step(seq[:, i])
            assert torch.equal(prim["obs"][:, i], ref_obs)
            assert torch.equal(prim["action"][:, i], seq[:, i])
            assert torch.equal(prim["reward"][:, i], r)
            assert torch.equal(prim["next_obs"][:, i], inf["final_obs"])
            assert torch.equal(prim["terminated"][:, i], te)
            assert torch.equal(prim["valid"][:, i], active)
            if i < k - 1:
                partial += int((active & (te | tr)).sum())
            active &= ~(te | tr)
            ref_obs = o
        part_way = ~prim["valid"][:, -1]  # the wrapper restarts envs that finished part-way: follow it
        if part_way.any():
            fresh, _ = ref.reset(env_ids=part_way.nonzero().squeeze(-1))
            ref_obs = torch.where(part_way[:, None], fresh, ref_obs)
        assert torch.equal(next_obs, ref_obs)
    assert partial > 0, "the test should finish episodes part-way through a decision"


def test_rate_rejects_bad_configs_and_actions():
    env = make("Control/Pendulum-v0")
    for steps in (0, -2):
        with pytest.raises(ValueError, match="steps"):
            DecisionRate(env, RateCfg(steps=steps))
    wrapped = DecisionRate(env, RateCfg(steps=3))
    wrapped.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        wrapped.step(torch.zeros(4, 2, 1))
    assert wrapped.single_action_space == env.single_action_space


# ====================================================================== observation noise
@task_ids
def test_noise_off_leaves_observations_unchanged(task_id):
    env, ref = ObservationNoise(make(task_id, episode=6), NoiseCfg()), make(task_id, episode=6)
    assert torch.equal(env.reset(seed=0)[0], ref.reset(seed=0)[0])
    for action in random_actions(env, 15):
        assert_same_step(env.step(action), ref.step(action))


@task_ids
def test_noise_gaussian_statistics(task_id):
    std = 0.1
    env, ref = ObservationNoise(make(task_id, num_envs=32), NoiseCfg(std=std)), make(task_id, num_envs=32)
    diffs = [env.reset(seed=0)[0] - ref.reset(seed=0)[0]]
    for action in random_actions(env, 40):
        obs, _, te, tr, info = env.step(action)
        ref_obs, _, _, _, ref_info = ref.step(action)
        done = te | tr  # (the final observation of other envs is obs itself)
        diffs += [obs - ref_obs, (info["final_obs"] - ref_info["final_obs"])[done]]
    d = torch.cat(diffs).flatten().double()
    assert abs(d.mean().item()) < 5 * std / math.sqrt(d.numel())
    assert abs(d.std().item() / std - 1) < 0.05


@task_ids
def test_noise_bias_is_constant_per_episode_and_redrawn_at_reset(task_id):
    bias_std = 0.5
    env = ObservationNoise(make(task_id, num_envs=64, episode=5), NoiseCfg(bias_std=bias_std))
    ref = make(task_id, num_envs=64, episode=5)
    offset = env.reset(seed=0)[0] - ref.reset(seed=0)[0]
    offsets = [offset]
    for action in random_actions(env, 12):
        obs, _, te, tr, info = env.step(action)
        ref_obs, _, _, _, ref_info = ref.step(action)
        done = (te | tr)[:, None]
        # The finishing observation keeps the old episode's bias; the new episode's first one has a new bias.
        assert torch.allclose(info["final_obs"] - ref_info["final_obs"], offset, atol=1e-5)
        new_offset = obs - ref_obs
        assert torch.allclose(torch.where(done, offset, new_offset), offset, atol=1e-5)
        assert (torch.where(done, (new_offset - offset).abs(), torch.ones(1)) > 0).all()
        offset = new_offset
        offsets.append(offset)
    assert abs(torch.stack(offsets).std().item() / bias_std - 1) < 0.15


@task_ids
@pytest.mark.parametrize("fill", ["hold", "zero"])
def test_noise_dropout(task_id, fill):
    p = 0.3
    env = ObservationNoise(make(task_id, num_envs=32), NoiseCfg(dropout=p, dropout_fill=fill))
    ref = make(task_id, num_envs=32)
    prev, _ = env.reset(seed=0)
    ref.reset(seed=0)
    lost = total = 0
    for action in random_actions(env, 30):
        obs, _, te, tr, info = env.step(action)
        clean, _, _, _, ref_info = ref.step(action)
        assert torch.equal(info["final_obs"][~(te | tr)], obs[~(te | tr)])
        fill_value = prev if fill == "hold" else torch.zeros_like(obs)
        noisy, clean_final = info["final_obs"], ref_info["final_obs"]
        assert ((noisy == clean_final) | (noisy == fill_value)).all()
        changed = clean_final != fill_value
        lost += int(((noisy == fill_value) & changed).sum())
        total += int(changed.sum())
        prev = obs
    assert abs(lost / total - p) < 0.03


def test_noise_partial_reset_keeps_the_other_envs_readings():
    env = ObservationNoise(make("Control/Pendulum-v0"), NoiseCfg(std=0.1, bias_std=0.1))
    env.reset(seed=0)
    obs, *_ = env.step(torch.zeros(4, 1))
    after, _ = env.reset(env_ids=torch.tensor([1]))
    assert torch.equal(after[[0, 2, 3]], obs[[0, 2, 3]]) and not torch.equal(after[1], obs[1])


def test_noise_is_reproducible_with_the_reset_seed():
    def rollout(seed: int) -> list[torch.Tensor]:
        env = ObservationNoise(make("Control/Pendulum-v0", seed=seed), NoiseCfg(std=0.1, bias_std=0.1, dropout=0.1))
        out = [env.reset(seed=11)[0]]
        out += [env.step(a)[0] for a in random_actions(env, 10)]
        return out

    for a, b in zip(rollout(0), rollout(1), strict=True):
        assert torch.equal(a, b)


class DictObsEnv(BatchedEnv):
    """A tiny env with a dict observation: a float position and an integer counter."""

    default_max_episode_steps = 4

    def __init__(self, cfg: TaskCfg, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        self._set_spaces(
            gymnasium.spaces.Dict(
                {
                    "pos": gymnasium.spaces.Box(-10, 10, (2,), np.float32),
                    "count": gymnasium.spaces.Box(0, 100, (1,), np.int64),
                }
            ),
            gymnasium.spaces.Box(-1, 1, (2,), np.float32),
        )
        self.pos = torch.zeros(self.num_envs, 2)

    def _reset_envs(self, env_ids: torch.Tensor) -> None:
        self.pos[env_ids] = torch.rand((len(env_ids), 2), generator=self.generator)

    def _apply_action(self, action: torch.Tensor) -> None:
        self.pos = self.pos + action

    def _observe(self) -> dict[str, torch.Tensor]:
        return {"pos": self.pos.clone(), "count": self.episode_length[:, None].clone()}

    def _reward_and_termination(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {"stay": -self.pos.norm(dim=-1)}, torch.zeros(self.num_envs, dtype=torch.bool)


def test_noise_on_dict_observations_perturbs_float_entries_only():
    env = ObservationNoise(DictObsEnv(TaskCfg(), num_envs=8, seed=0), NoiseCfg(std=0.5))
    ref = DictObsEnv(TaskCfg(), num_envs=8, seed=0)
    obs, _ = env.reset(seed=0)
    ref_obs, _ = ref.reset(seed=0)
    for _ in range(6):
        assert not torch.equal(obs["pos"], ref_obs["pos"])
        assert torch.equal(obs["count"], ref_obs["count"])
        action = torch.full((8, 2), 0.1)
        obs, _, te, tr, info = env.step(action)
        ref_obs, *_ = ref.step(action)
        keep = ~(te | tr)
        for key in ("pos", "count"):
            assert torch.equal(info["final_obs"][key][keep], obs[key][keep])
    with pytest.raises(ValueError, match="not a float"):
        ObservationNoise(DictObsEnv(TaskCfg()), NoiseCfg(keys=("count",)))
    with pytest.raises(ValueError, match="entries"):
        ObservationNoise(DictObsEnv(TaskCfg()), NoiseCfg(keys=("velocity",)))
    only_pos = ObservationNoise(DictObsEnv(TaskCfg()), NoiseCfg(std=0.1, keys=("pos",)))
    assert list(only_pos.keys) == ["pos"]


@pytest.mark.parametrize(
    "cfg, match",
    [
        (NoiseCfg(std=-0.1), "std"),
        (NoiseCfg(bias_std=-1.0), "bias_std"),
        (NoiseCfg(std=float("nan")), "std"),
        (NoiseCfg(dropout=1.5), "dropout"),
        (NoiseCfg(dropout=-0.1), "dropout"),
        (NoiseCfg(keys=("obs",)), "dict observations"),
    ],
)
def test_noise_rejects_bad_configs(cfg, match):
    with pytest.raises(ValueError, match=match):
        ObservationNoise(make("Control/Pendulum-v0"), cfg)


# ====================================================================== safety
finite = st.floats(-1e6, 1e6, width=32)
anything = st.one_of(finite, st.sampled_from([float("nan"), float("inf"), -float("inf"), 3e38, -3e38]))


@st.composite
def limiter_case(draw):
    dim = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 4))
    centres = draw(st.lists(st.floats(-5, 5, width=32), min_size=dim, max_size=dim))
    widths = draw(st.lists(st.floats(0, 5, width=32), min_size=dim, max_size=dim))
    deltas = draw(st.lists(st.floats(2**-10, 3, width=32), min_size=dim, max_size=dim))
    actions = draw(st.lists(anything, min_size=batch * dim, max_size=batch * dim))
    prev = draw(st.lists(finite, min_size=batch * dim, max_size=batch * dim))
    has_prev = draw(st.lists(st.booleans(), min_size=batch, max_size=batch))
    safe_action = draw(st.sampled_from(["hold", "zero"]))
    return dim, batch, centres, widths, deltas, actions, prev, has_prev, safe_action


@settings(max_examples=300, deadline=None)
@given(limiter_case())
def test_limiter_never_lets_an_unsafe_value_through(case):
    dim, batch, centres, widths, deltas, actions, prev, has_prev, safe_action = case
    low = torch.tensor(centres) - torch.tensor(widths)
    high = torch.tensor(centres) + torch.tensor(widths)
    delta = torch.tensor(deltas)
    limiter = ActionLimiter(low, high, delta, safe_action)
    action = torch.tensor(actions).reshape(batch, dim)
    prev_t = torch.tensor(prev).reshape(batch, dim)
    has = torch.tensor(has_prev)
    out, report = limiter.limit(action, prev_t, has)
    assert torch.isfinite(out).all()
    assert ((out >= low) & (out <= high)).all()
    prev_in = prev_t.clamp(low, high)
    assert ((out - prev_in).abs() <= delta)[has].all()
    nonfinite = ~torch.isfinite(action).all(1)
    assert torch.equal(report["nonfinite"], nonfinite)
    # Nothing is changed that did not need to be.
    fine = torch.isfinite(action) & (action >= low) & (action <= high)
    fine &= ~has[:, None] | ((action - prev_in).abs() <= delta)
    fine &= ~nonfinite[:, None]
    assert torch.equal(out[fine], action[fine])
    changed = report["bound_clipped"] | report["rate_limited"]
    assert torch.equal(changed[~nonfinite], (out != action)[~nonfinite])
    assert torch.equal(report["num_bound_clipped"], report["bound_clipped"].sum(1))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(anything, min_size=2, max_size=2), min_size=1, max_size=12), st.sampled_from(["hold", "zero"]))
def test_safety_wrapper_never_passes_an_unsafe_action_to_the_physics(rows, safe_action):
    cfg = SafetyCfg(low=-1.5, high=1.0, max_delta=0.25, safe_action=safe_action)
    env = ActionSafety(make("Control/Pendulum-v0", num_envs=2, episode=5), cfg)
    applied = record_applied(env)
    env.reset(seed=0)
    prev = torch.zeros(2, 1)
    for row in rows:
        action = torch.tensor(row).reshape(2, 1)
        _, _, te, tr, info = env.step(action)
        a = applied[-1]
        assert torch.isfinite(a).all() and (a >= -1.5).all() and (a <= 1.0).all()
        assert ((a - prev).abs() <= 0.25).all()
        assert torch.equal(info["safety"]["applied"], a)
        assert torch.equal(info["safety"]["nonfinite"], ~torch.isfinite(action).all(1))
        prev = torch.where((te | tr)[:, None], 0.0, a)  # each episode starts from rest


@task_ids
def test_safety_replaces_nan_and_reports_every_clip(task_id):
    env = ActionSafety(make(task_id, num_envs=3), SafetyCfg(max_delta=0.5, safe_action="hold"))
    dim = env.single_action_space.shape[0]

    def rows(*values):  # one value per env, the same in every action component
        return torch.tensor(values, dtype=torch.float32)[:, None].expand(-1, dim)

    env.reset(seed=0)
    high = float(env.unwrapped.action_high[0])
    _, _, _, _, info = env.step(rows(0.3, 10.0, -0.2))
    assert torch.allclose(info["safety"]["applied"], rows(0.3, 0.5, -0.2))
    assert info["safety"]["rate_limited"].tolist() == [[False] * dim, [True] * dim, [False] * dim]
    assert info["safety"]["bound_clipped"].tolist() == [[False] * dim, [True] * dim, [False] * dim]
    _, _, _, _, info = env.step(rows(float("nan"), float("inf"), -high))
    assert info["safety"]["nonfinite"].tolist() == [True, True, False]
    assert torch.allclose(info["safety"]["applied"], rows(0.3, 0.5, -0.7))
    assert info["safety"]["num_rate_limited"].tolist() == [0, 0, dim]
    assert env.totals() == {"nonfinite": 2, "bound_clipped": dim, "rate_limited": 2 * dim}
    zero = ActionSafety(make(task_id, num_envs=1), SafetyCfg(safe_action="zero"))
    zero.reset(seed=0)
    zero.step(rows(1.0)[:1])
    assert (zero.step(rows(float("nan"))[:1])[4]["safety"]["applied"] == 0.0).all()


def test_safety_counts_add_up_over_a_decision():
    env = DecisionRate(ActionSafety(make("Control/Pendulum-v0", num_envs=2), SafetyCfg(max_delta=0.1)), RateCfg(steps=4))
    env.reset(seed=0)
    _, _, _, _, info = env.step(torch.tensor([[1.0], [0.05]]))
    assert info["safety"]["num_rate_limited"].tolist() == [4, 0]
    assert torch.allclose(info["safety"]["applied"], torch.tensor([[0.4], [0.05]]))


@pytest.mark.parametrize(
    "cfg, match",
    [
        (SafetyCfg(low=-5.0), "within the action space"),
        (SafetyCfg(low=1.0, high=0.5), "low must not exceed high"),
        (SafetyCfg(max_delta=0.0), "max_delta must be positive"),
        (SafetyCfg(max_delta=-1.0), "max_delta must be positive"),
        (SafetyCfg(high=(1.0, 1.0)), "expected 1"),
        (SafetyCfg(safe_action="last"), "safe_action"),  # type: ignore[arg-type]
    ],
)
def test_safety_rejects_bad_configs(cfg, match):
    with pytest.raises(ValueError, match=match):
        ActionSafety(make("Control/Pendulum-v0"), cfg)


# ====================================================================== domain randomisation
def dr_ranges(env: BatchedEnv) -> dict[str, tuple[float, float]]:
    """The middle half of every range the task declares."""
    out = {}
    for name, p in env.unwrapped.randomizable_params().items():
        quarter = (p.high - p.low) / 4
        out[name] = (p.low + quarter, p.high - quarter)
    return out


@task_ids
def test_randomize_draws_within_range_at_every_reset(task_id):
    base = make(task_id, episode=4)
    ranges = dr_ranges(base)
    assert ranges, f"{task_id} declares no randomisable parameters"
    calls: list[tuple[torch.Tensor, dict[str, torch.Tensor]]] = []
    original = base.set_params

    def spy(env_ids, values):
        calls.append((env_ids.clone(), {k: v.clone() for k, v in values.items()}))
        original(env_ids, values)

    base.set_params = spy  # type: ignore[method-assign]
    env = DomainRandomization(base, RandomizeCfg(ranges=ranges))
    env.reset(seed=0)
    assert len(calls) == 1 and torch.equal(calls[0][0], torch.arange(4))
    env.reset(env_ids=torch.tensor([1, 3]))
    assert torch.equal(calls[-1][0], torch.tensor([1, 3]))
    for action in random_actions(env, 8):
        _, _, te, tr, _ = env.step(action)
        if (te | tr).any():
            assert torch.equal(calls[-1][0], (te | tr).nonzero().squeeze(-1)), "autoresets randomise too"
    assert len(calls) >= 4
    for _, values in calls:
        assert set(values) == set(ranges)
        for name, v in values.items():
            lo, hi = ranges[name]
            assert ((v >= lo - 1e-6) & (v <= hi + 1e-6)).all()
    for name in ranges:
        drawn = torch.cat([values[name] for _, values in calls])
        assert drawn.unique().numel() == drawn.numel(), "every reset draws new values"
        assert torch.equal(env.values[name], env.values[name].clamp(*ranges[name]))


def test_randomize_changes_the_pendulum_physics():
    env = DomainRandomization(make("Control/Pendulum-v0"), RandomizeCfg(ranges={"mass": (0.5, 2.0), "length": (1.0, 1.0)}))
    env.reset(seed=0)
    base = env.unwrapped
    assert torch.equal(base.mass, env.values["mass"]) and ((base.mass >= 0.5) & (base.mass <= 2.0)).all()
    assert (base.length == 1.0).all() and base.mass.unique().numel() == 4


@task_ids
def test_randomize_is_reproducible_with_the_seed(task_id):
    def drawn(seed: int) -> dict[str, torch.Tensor]:
        env = DomainRandomization(make(task_id, seed=seed, episode=3), RandomizeCfg(ranges=dr_ranges(make(task_id))))
        env.reset(seed=7)
        for action in random_actions(env, 5):
            env.step(action)
        return env.values

    a, b, c = drawn(0), drawn(1), drawn(7)
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    env = DomainRandomization(make(task_id), RandomizeCfg(ranges=dr_ranges(make(task_id))))
    env.reset(seed=8)
    assert not any(torch.equal(a[k], env.values[k]) for k in a)


@task_ids
def test_randomize_rejects_unknown_names_and_bad_ranges(task_id):
    env = make(task_id)
    declared = env.randomizable_params()
    name, p = next(iter(declared.items()))
    with pytest.raises(ValueError, match="declares") as err:
        DomainRandomization(env, RandomizeCfg(ranges={"gravity_typo": (1.0, 2.0)}))
    assert all(n in str(err.value) for n in declared)
    with pytest.raises(ValueError, match="supports"):
        DomainRandomization(env, RandomizeCfg(ranges={name: (p.low - 1.0, p.high)}))
    with pytest.raises(ValueError, match="low <= high"):
        DomainRandomization(env, RandomizeCfg(ranges={name: (p.high, p.low)}))
    assert env.reset_hooks == [], "a rejected config installs nothing"


def test_randomize_close_removes_its_hook():
    env = make("Control/Pendulum-v0")
    wrapped = DomainRandomization(env, RandomizeCfg(ranges={"mass": (1.0, 2.0)}))
    assert len(env.reset_hooks) == 1
    wrapped.close()
    assert env.reset_hooks == []


# ====================================================================== hardware
class FakeDevice(Hardware):
    """A device driver that records what reaches it."""

    name = "fake"

    def __init__(self, safety: SafetyCfg | None = None) -> None:
        self.sent: list[torch.Tensor] = []
        super().__init__(safety)

    @property
    def observation_space(self) -> gymnasium.Space:
        return gymnasium.spaces.Box(-1, 1, (2,), np.float32)

    @property
    def action_space(self) -> gymnasium.spaces.Box:
        return gymnasium.spaces.Box(-2, 2, (2,), np.float32)

    def _connect(self) -> None:
        self.sent.clear()

    def _disconnect(self) -> None:
        pass

    def _read(self) -> torch.Tensor:
        return torch.zeros(2)

    def _send(self, action: torch.Tensor) -> None:
        self.sent.append(action)


def test_hardware_protocol_needs_a_connection():
    dev = FakeDevice()
    assert dev.features["action"].shape == (2,) and not dev.is_connected
    for call in (dev.read_observation, lambda: dev.send_action([0.0, 0.0]), dev.disconnect):
        with pytest.raises(HardwareError, match="connect"):
            call()
    dev.connect()
    with pytest.raises(HardwareError, match="already connected"):
        dev.connect()
    dev.disconnect()
    with pytest.raises(RuntimeError), dev:
        assert dev.is_connected
        raise RuntimeError("policy crashed")
    assert not dev.is_connected, "the context manager disconnects even on error"


def test_hardware_send_action_returns_what_was_sent():
    dev = FakeDevice(SafetyCfg(low=-1.0, high=1.0, max_delta=0.5))
    with dev:
        assert dev.send_action([5.0, -0.2]).tolist() == pytest.approx([0.5, -0.2])
        assert dev.send_action([5.0, float("nan")]).tolist() == pytest.approx([0.5, -0.2])  # held
        assert bool(dev.last_safety["nonfinite"])
        with pytest.raises(ValueError, match="shape"):
            dev.send_action([1.0])
    assert [a.tolist() for a in dev.sent] == [pytest.approx([0.5, -0.2])] * 2


@task_ids
def test_simulated_hardware_matches_the_batched_task(task_id):
    hw = SimulatedHardware(task_id, seed=4, safety=SafetyCfg(max_delta=0.2))
    assert hw.features["observation"] == embodied.make(task_id).single_observation_space
    with pytest.raises(HardwareError):
        hw.read_observation()
    ref = make(task_id, num_envs=1, seed=4)
    ref_obs, _ = ref.reset(seed=4)
    limiter = ActionLimiter.from_cfg(SafetyCfg(max_delta=0.2), ref.single_action_space)
    prev = limiter.zero[None]
    with hw:
        for action in random_actions(ref, 6, scale=0.5):
            assert torch.equal(hw.read_observation(), ref_obs[0])
            sent = hw.send_action(action[0])
            expected, _ = limiter.limit(action, prev)
            assert torch.equal(sent, expected[0])
            ref_obs, reward, te, tr, _ = ref.step(expected)
            prev = expected  # a device has no episodes: its rate limit runs on across the task's resets
            assert hw.last_step["reward"] == pytest.approx(float(reward[0]))
    assert not hw.is_connected
    with pytest.raises(ValueError, match="num_envs"):
        SimulatedHardware(make(task_id, num_envs=2))


def test_run_policy_drives_simulation_and_keeps_the_rate():
    hw = SimulatedHardware("Control/Pendulum-v0", seed=0, safety=SafetyCfg(high=1.0))
    seen: list[torch.Tensor] = []

    def policy(obs: torch.Tensor) -> torch.Tensor:
        seen.append(obs)
        return torch.tensor([2.0 if len(seen) % 2 else float("nan")])

    start = time.perf_counter()
    stats = run_policy(policy, hw, steps=10, rate_hz=200.0)
    assert time.perf_counter() - start >= 9 / 200
    assert stats.steps == 10 and stats.clipped == 5 and stats.nonfinite == 5
    assert len(seen) == 10 and seen[0].shape == (3,)
    assert not hw.is_connected, "run_policy disconnects a device it connected"
    with hw:
        run_policy(lambda obs: torch.zeros(1), hw, steps=3)
        assert hw.is_connected, "and leaves a connected one connected"
    with pytest.raises(ValueError, match="rate_hz"):
        run_policy(policy, hw, steps=1, rate_hz=0.0)


# ====================================================================== AdaptersCfg, wrap, checkpoints
def full_cfg(task_id: str) -> AdaptersCfg:
    return AdaptersCfg(
        randomize=RandomizeCfg(ranges=dr_ranges(make(task_id))),
        safety=SafetyCfg(max_delta=0.5),
        latency=LatencyCfg(steps=2, initial_action="hold"),
        rate=RateCfg(steps=3),
        noise=NoiseCfg(std=0.05, bias_std=0.05, dropout=0.1),
    )


def test_wrap_applies_adapters_in_the_documented_order():
    env = make("Control/Pendulum-v0")
    assert wrap(env, AdaptersCfg()) is env, "no adapter is on by default"
    wrapped = wrap(env, full_cfg("Control/Pendulum-v0"))
    description = wrapped.describe()
    assert description["adapters"] == [
        "DomainRandomization", "ActionSafety", "ActionLatency", "DecisionRate", "ObservationNoise"
    ]
    assert description["adapter_cfgs"]["latency"] == {"steps": 2, "initial_action": "hold"}
    json.dumps(description)
    assert wrapped.unwrapped is env


def test_image_augmentation_is_the_outermost_adapter_and_seeded():
    cfg = AdaptersCfg(noise=NoiseCfg(std=0.01), image_augment=full_augmentation())
    plain = embodied.make("Tactile/PegInsert-v0", num_envs=2, seed=0)
    runs = []
    for _ in range(2):
        env = wrap(embodied.make("Tactile/PegInsert-v0", num_envs=2, seed=0), cfg)
        assert env.describe()["adapters"][-1] == "ImageAugmentation"
        runs.append(env.reset(seed=5)[0]["tactile_image"])
    reference = plain.reset(seed=5)[0]["tactile_image"]
    assert torch.equal(runs[0], runs[1]), "augmentation follows the reset seed"
    assert not torch.equal(runs[0], reference)
    assert runs[0].shape == reference.shape and runs[0].dtype == torch.uint8


def test_adapters_cfg_takes_overrides():
    cfg = apply_overrides(AdaptersCfg(), {"noise": {"std": 0.01}, "latency": '{"steps": 2}', "rate": {}})
    assert cfg.noise == NoiseCfg(std=0.01) and cfg.latency == LatencyCfg(steps=2) and cfg.rate == RateCfg()
    assert cfg.safety is None
    with pytest.raises(ConfigError, match="did you mean"):
        apply_overrides(AdaptersCfg(), {"noize": {"std": 0.01}})


def test_adapters_cfg_takes_dotted_overrides():
    cfg = apply_overrides(AdaptersCfg(), {"noise.std": 0.01, "latency.steps": 2})
    assert cfg.noise == NoiseCfg(std=0.01) and cfg.latency == LatencyCfg(steps=2)


@task_ids
def test_state_dict_round_trip_of_the_full_stack_continues_identically(task_id):
    env = wrap(make(task_id, seed=0, episode=8), full_cfg(task_id))
    env.reset(seed=2)
    actions = random_actions(env, 16, scale=1.5)
    for action in actions[:8]:
        env.step(action)
    state = copy.deepcopy(env.state_dict())
    first = [env.step(action) for action in actions[8:]]
    resumed = wrap(make(task_id, seed=123, episode=8), full_cfg(task_id))
    resumed.reset(seed=99)
    resumed.load_state_dict(state)
    for expected, action in zip(first, actions[8:], strict=True):
        got = resumed.step(action)
        assert_same_step(got, expected)
        assert torch.equal(got[4]["safety"]["applied"], expected[4]["safety"]["applied"])
