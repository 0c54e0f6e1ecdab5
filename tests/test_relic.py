"""ReLIC: the KV cache is exact, Sink-KV learns from zero, refreshed caches match recomputation, a 64k
context fits, resume through the one loop is bit-identical, and a short run learns in context."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

import embodied
from embodied.policies import LEARNERS
from embodied.policies.checkpoint import first_difference, load_checkpoint
from embodied.policies.kv_transformer import CausalTransformer, context_mask
from embodied.policies.relic import LSTMNav, LSTMNavCfg, ReLIC, ReLICCfg
from embodied.policies.train import TrainCfg, build_env, load_policy, train

TASK = "Nav/Darkroom-v0"


def random_tokens(b: int, n: int, obs_dim: int = 10, actions: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.cat(
        [
            torch.randn(b, n, obs_dim, generator=g),
            torch.randint(0, actions + 1, (b, n, 1), generator=g).float(),
            torch.randint(0, 2, (b, n, 1), generator=g).float(),
            torch.randint(0, 200, (b, n, 1), generator=g).float(),
        ],
        dim=-1,
    )


def model(sink_kv: bool, nonzero_sink: bool = True) -> CausalTransformer:
    torch.manual_seed(0)
    m = CausalTransformer(10, 5, 32, 2, 4, 4, sink_kv, 128)
    if sink_kv and nonzero_sink:  # a trained sink, so the test sees it act
        for block in m.blocks:
            torch.nn.init.normal_(block.attn.sink_k)
            torch.nn.init.normal_(block.attn.sink_v)
    return m


def segments(b: int, n: int) -> torch.Tensor:
    """Trial ids: env 0 one trial, env 1 a new trial at 20, env 2 at 7 and 30."""
    seg = torch.zeros(b, n, dtype=torch.long)
    seg[1, 20:] = 1
    seg[2, 7:] = 1
    seg[2, 30:] = 2
    return seg


@pytest.mark.parametrize("sink_kv", [False, True], ids=["no_sink", "sink_kv"])
def test_kv_cached_steps_equal_full_recomputation(sink_kv):
    m, (b, n) = model(sink_kv), (3, 40)
    raw, seg = random_tokens(b, n), segments(b, n)
    with torch.no_grad():
        full_logits, full_values = m(raw, context_mask(seg, 0, n))
        cache = m.new_cache(b, 64)
        steps = [m(raw[:, t : t + 1], context_mask(seg, t, t + 1), cache, t) for t in range(n)]
        # The training path: a chunk attending over the cached past, without writing.
        chunk_logits, chunk_values = m(raw[:, 25:], context_mask(seg, 25, n), cache, 25, write=False)
    logits = torch.cat([s[0] for s in steps], dim=1)
    values = torch.cat([s[1] for s in steps], dim=1)
    torch.testing.assert_close(logits, full_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, full_values, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunk_logits, full_logits[:, 25:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunk_values, full_values[:, 25:], atol=1e-5, rtol=1e-5)


def test_trials_do_not_attend_to_each_other():
    m, (b, n) = model(True), (3, 40)
    raw, seg = random_tokens(b, n), segments(b, n)
    changed = raw.clone()
    changed[2, :7, :10] += 1.0  # the observations of env 2's first trial
    with torch.no_grad():
        a, _ = m(raw, context_mask(seg, 0, n))
        c, _ = m(changed, context_mask(seg, 0, n))
    assert torch.equal(a[2, 7:], c[2, 7:]) and not torch.equal(a[2, :7], c[2, :7])


def test_sink_kv_starts_at_zero_and_gets_gradients():
    m, (b, n) = model(True, nonzero_sink=False), (3, 40)
    sinks = [p for blk in m.blocks for p in (blk.attn.sink_k, blk.attn.sink_v)]
    assert all(torch.equal(p, torch.zeros_like(p)) for p in sinks)
    logits, values = m(random_tokens(b, n), context_mask(segments(b, n), 0, n))
    (logits.square().sum() + values.square().sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sinks)
    assert all(not hasattr(blk.attn, "sink_q") for blk in m.blocks)  # the sink has no query


def darkroom_learner(cls=ReLIC, cfg=None, num_envs: int = 4):
    env = embodied.make(TASK, num_envs=num_envs, seed=0, trial_episodes=2)
    learner = cls(
        cfg or ReLICCfg(max_context=512, update_every=50),
        env.single_observation_space,
        env.single_action_space,
        num_envs,
    )
    return env, learner


def play(learner, env, steps: int, update: bool = True) -> torch.Tensor:
    """The training loop's calls for ``steps`` batched steps from a reset (updates when ready if ``update``);
    returns the last observation."""
    obs, _ = env.reset(seed=0)
    for _ in range(steps):
        action = learner.act(obs)
        obs, reward, term, trunc, info = env.step(action)
        learner.observe(obs, action, reward, info["final_obs"], term, trunc, info)
        learner.episodes_ended(term | trunc)
        if update and learner.ready_to_update():
            learner.update()
    return obs


def test_refreshed_cache_equals_recomputation_with_new_weights():
    torch.manual_seed(0)
    env, learner = darkroom_learner()
    obs = play(learner, env, 130, update=False)  # across an episode boundary
    ctx, p = learner.ctx, learner.ctx.p
    with torch.no_grad():
        for param in learner.model.parameters():
            param.add_(0.05 * torch.randn_like(param))
        learner._core_refresh(ctx)
        logits, values = learner.model(ctx.tokens[:, :p], context_mask(ctx.seg, 0, p))
        fresh = learner.model.new_cache(4, p)
        learner.model(ctx.tokens[:, :p], context_mask(ctx.seg, 0, p), fresh, 0)
    torch.testing.assert_close(ctx.values[:, :p], values, atol=1e-5, rtol=1e-5)
    for old, new in zip(ctx.cache.k + ctx.cache.v, fresh.k + fresh.v, strict=True):
        torch.testing.assert_close(old[:, :, : 1 + p], new[:, :, : 1 + p], atol=1e-5, rtol=1e-5)
    # The next cached step after the refresh equals a full recomputation with the new weights.
    step_logits = learner.act(obs)  # noqa: F841 (advances the context by one cached step)
    with torch.no_grad():
        full, _ = learner.model(ctx.tokens[:, : p + 1], context_mask(ctx.seg, 0, p + 1))
        cached, _ = learner.model(ctx.tokens[:, p : p + 1], context_mask(ctx.seg, p, p + 1), ctx.cache, p)
    torch.testing.assert_close(cached[:, 0], full[:, p], atol=1e-5, rtol=1e-5)
    del logits


@pytest.mark.parametrize("across", [True, False], ids=["trial_returns", "episode_returns"])
def test_returns_cross_episode_ends_only_when_asked(across):
    """GAE's done: only the trial's end (RL^2), or every episode end too (ReLIC's own trainer)."""
    env, learner = darkroom_learner(cfg=ReLICCfg(max_context=512, update_every=50, gae_across_episodes=across))
    play(learner, env, 130, update=False)  # the trial's first episode ends at step 100
    expected = torch.zeros(4, 130)
    if not across:
        expected[:, 99] = 1.0
    assert torch.equal(learner.ctx.dones[:, :130], expected)


@pytest.mark.parametrize("cls", [ReLIC, LSTMNav])
def test_full_update_learns_from_the_whole_rollout(cls):
    """Every ``full_update_every``-th update spans every step since the last full one (two 50-step
    chunks here); its old policy is the acting one, as in ReLIC (the clip bounds how far the partial
    and the full update move it together), and its values are the current weights'."""
    torch.manual_seed(0)
    cfg_cls = LSTMNavCfg if cls is LSTMNav else ReLICCfg
    env, learner = darkroom_learner(cls, cfg_cls(max_context=256, update_every=50, full_update_every=2))
    spans, old_logprobs_by_update = [], []
    minibatch_step = learner._minibatch_step

    def recording_step(chunk, actions, old_logprobs, old_values, *rest):
        if not spans or spans[-1][2] != learner.num_updates:  # the update's first minibatch
            spans.append((chunk.start, learner.ctx.p, learner.num_updates))
            old_logprobs_by_update.append(torch.zeros(4, learner.ctx.p - chunk.start))
            with torch.no_grad():
                _, _, values = learner._evaluate_actions(chunk, actions)
            torch.testing.assert_close(old_values, values, atol=1e-5, rtol=1e-5)
        old_logprobs_by_update[-1][chunk.rows] = old_logprobs.view(len(chunk.rows), -1)
        return minibatch_step(chunk, actions, old_logprobs, old_values, *rest)

    learner._minibatch_step = recording_step
    play(learner, env, 200)  # one trial of two 100-step episodes: four updates
    assert [(start, p) for start, p, _ in spans] == [(0, 50), (0, 100), (100, 150), (100, 200)]
    partial, full = old_logprobs_by_update[0], old_logprobs_by_update[1]
    assert torch.equal(full[:, :50], partial)  # the acting log-probabilities, not refreshed
    assert learner.ctx.p == 0  # the trial ended with the rollout: nothing left to keep


def test_partial_updates_can_backpropagate_through_the_whole_rollout():
    """``partial_backprop="rollout"``: a partial update recomputes every step since the last full update
    with gradients (ReLIC's trainer). The forward pass is the cached one's (the cache was refreshed with
    these weights), the loss covers the same steps, only the gradient reaches further back."""
    seen = {}
    for reach in ("chunk", "rollout"):
        torch.manual_seed(0)
        env, learner = darkroom_learner(cfg=ReLICCfg(max_context=512, update_every=50, full_update_every=4,
                                                     partial_backprop=reach))
        spans, first = [], {}
        core_chunk, evaluate, step = learner._core_chunk, learner._evaluate_actions, learner.optimizer.step

        def recording_chunk(ctx, rows, start, end, spans=spans, core_chunk=core_chunk):
            spans.append((start, end))
            return core_chunk(ctx, rows, start, end)

        def recording_evaluate(chunk, actions, first=first, evaluate=evaluate, learner=learner):
            out = evaluate(chunk, actions)
            if learner.num_updates == 1 and "logprobs" not in first:  # update 2's first minibatch
                first["logprobs"] = out[0].detach().clone()
            return out

        def recording_step(*args, first=first, step=step, learner=learner):
            if learner.num_updates == 1 and "grads" not in first:
                first["grads"] = torch.cat([p.grad.flatten() for p in learner._params if p.grad is not None])
            return step(*args)

        learner._core_chunk, learner._evaluate_actions, learner.optimizer.step = (
            recording_chunk, recording_evaluate, recording_step)
        play(learner, env, 150)  # three partial updates
        assert learner.num_updates == 3
        seen[reach] = (sorted(set(spans)), first["logprobs"], first["grads"])
    assert seen["chunk"][0] == [(0, 50), (50, 100), (100, 150)]
    assert seen["rollout"][0] == [(0, 50), (0, 100), (0, 150)]
    torch.testing.assert_close(seen["chunk"][1], seen["rollout"][1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(seen["chunk"][2], seen["rollout"][2], atol=1e-6)


def test_full_update_span_must_fit_the_context():
    with pytest.raises(ValueError, match="must fit in max_context"):
        darkroom_learner(cfg=ReLICCfg(max_context=128, update_every=50, full_update_every=3))


def test_64k_context_fits_and_steps():
    """One env, the default model (2 layers, hidden 64, fp32): the cache of 65,536 steps is 64 MiB."""
    torch.set_num_threads(1)
    env, learner = darkroom_learner(num_envs=1)
    learner.cfg.eval_max_context = 65_536
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(learner.act(obs, deterministic=True))
    ctx = learner.eval_ctx
    assert ctx.capacity == learner.cfg.max_context  # an evaluation starts small and doubles as its trials run
    while ctx.grow():
        pass
    assert ctx.capacity == 65_536
    assert ctx.cache.nbytes() <= 2 * 2 * 4 * (65_536 + 2) * 16 * 4  # 2 (k, v) x layers x heads x slots x dim x fp32
    assert ctx.cache.nbytes() / 2**20 < 65
    ctx.p = 65_530  # a long-running trial (zero tokens: the cost does not depend on their values)
    ctx.seg[:, : ctx.p] = ctx.trial_id
    t0 = time.perf_counter()
    for _ in range(6):
        obs, *_ = env.step(learner.act(obs, deterministic=True))
    assert ctx.p == 65_536 and torch.isfinite(ctx.values[:, 65_530:65_536]).all()
    assert time.perf_counter() - t0 < 10.0
    learner.act(obs, deterministic=True)  # full: the oldest half is dropped (sliding window)
    assert ctx.p == 65_536 // 2 + 1


def test_evaluation_context_grows_without_changing_a_step():
    """An evaluation context doubles when full (64 -> 128 -> 256 steps) and acts exactly as one
    allocated at full size from the start; at its limit it slides (keeps the newest half)."""
    cfg = ReLICCfg(max_context=64, update_every=32, full_update_every=2, eval_max_context=256)
    env, growing = darkroom_learner(cfg=cfg)
    _, full = darkroom_learner(cfg=cfg)
    full.model.load_state_dict(growing.model.state_dict())
    obs, _ = env.reset(seed=0)
    full.act(obs, deterministic=True)  # into evaluation mode, then a context allocated whole
    full.eval_ctx = full._new_context(env.num_envs, 256)
    capacities = set()
    for _ in range(300):
        torch.manual_seed(0)
        a = growing.act(obs, deterministic=True)
        torch.manual_seed(0)
        b = full.act(obs, deterministic=True)
        assert torch.equal(a, b)
        capacities.add(growing.eval_ctx.capacity)
        obs, *_ = env.step(a)
    assert capacities == {64, 128, 256}
    torch.testing.assert_close(growing.eval_ctx.values[:, :200], full.eval_ctx.values[:, :200], atol=0, rtol=0)


def test_bfloat16_cache_halves_memory_and_stays_close():
    env, learner = darkroom_learner(cfg=ReLICCfg(max_context=512, update_every=50, cache_dtype="bfloat16"))
    _, ref = darkroom_learner()
    ref.model.load_state_dict(learner.model.state_dict())
    assert learner.ctx.cache.nbytes() * 2 == ref.ctx.cache.nbytes()
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        a, b = learner.act(obs), ref.act(obs)
        obs, *_ = env.step(b)
        learner.ctx.actions[:, learner.ctx.p - 1] = ref.ctx.actions[:, ref.ctx.p - 1]
        learner.ctx.prev_action = ref.ctx.prev_action.clone()
    torch.testing.assert_close(learner.ctx.values[:, :20], ref.ctx.values[:, :20], atol=0.05, rtol=0.05)
    del a


def small_run_cfg(run_dir: Path, total: int) -> TrainCfg:
    return TrainCfg(
        total_steps=total,
        num_envs=4,
        seed=3,
        run_dir=str(run_dir),
        checkpoint_every=0,
        eval_episodes=2,
        progress=False,
        tensorboard=False,
    )


@pytest.mark.parametrize("algo", ["relic", "lstm_nav"])
def test_resume_through_the_loop_is_bit_identical(tmp_path, algo):
    assert algo in LEARNERS
    overrides = {"update_every": 30, "full_update_every": 2, "max_context": 128, "hidden": 32}
    tasks = {"trial_episodes": 2}
    ref = load_checkpoint(train(TASK, algo, small_run_cfg(tmp_path / "a", 4 * 260), tasks, overrides))
    first = load_checkpoint(train(TASK, algo, small_run_cfg(tmp_path / "b", 4 * 115), tasks, overrides))
    assert first["learner"]["context"]["p"] > first["learner"]["context"]["p0"]  # stopped mid-chunk
    resumed = load_checkpoint(train(TASK, algo, resume=tmp_path / "b", total_steps=4 * 260))
    assert first_difference(ref["learner"], resumed["learner"]) is None, first_difference(
        ref["learner"], resumed["learner"]
    )
    assert first_difference(ref["rng"], resumed["rng"]) is None
    policy, _ = load_policy(tmp_path / "a" / "checkpoint.pt")
    assert isinstance(policy, (ReLIC, LSTMNav))


def test_lstm_baseline_builds_and_acts():
    env, learner = darkroom_learner(LSTMNav, LSTMNavCfg(max_context=256, update_every=50))
    obs, _ = env.reset(seed=0)
    action = learner.act(obs)
    assert action.shape == (4, 5) and set(action.unique().tolist()) <= {-1.0, 1.0}


def test_short_run_improves(tmp_path):
    """A 5x5 Darkroom, trials of 3 episodes: after 100k steps (about a minute on one CPU core) ReLIC
    plays held-out-goal trials far better than a random policy (measured: return 51-58 per episode
    against 3.5-4.4, seeds 1 and 2). In-context gains over a trial need millions of steps on the
    10x10 grid: bench/nav_learning.py and docs/nav_relic.md."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from nav_learning import trial_curve

    torch.set_num_threads(1)
    tasks = {"trial_episodes": 3, "size": 5}
    run = train(
        TASK,
        "relic",
        TrainCfg(
            total_steps=100_000,
            num_envs=16,
            seed=1,
            run_dir=str(tmp_path / "r"),
            checkpoint_every=0,
            eval_episodes=0,
            progress=False,
            tensorboard=False,
        ),
        tasks,
        {"update_every": 50, "max_context": 512},
    )
    learner, _ = load_policy(run / "checkpoint.pt")
    trained = trial_curve(learner, 64, 3, seed=5, goals="heldout", task_overrides={"size": 5})
    random = trial_curve(None, 64, 3, seed=5, goals="heldout", task_overrides={"size": 5})
    for mine, theirs in zip(trained["return_by_episode"], random["return_by_episode"], strict=True):
        assert mine > theirs + 20, (trained, random)


@pytest.mark.parametrize("algo", ["relic", "lstm_nav"])
def test_in_context_learners_act_in_rollout_workers(tmp_path, algo):
    """Through two (serial) rollout workers: the driver's context gets the workers' timeline (tokens,
    actions, log-probabilities) without running the core, so re-running the core over the chunk
    gives the log-probabilities the workers acted with; its block-filled cache (or memory) matches
    the workers' step-by-step one; after an update each worker refreshes and compacts as the driver
    does; a run stopped mid-round resumes bit-identically (contexts compacted on the way)."""
    from embodied.policies.scaleout.workers import WorkerRollout
    from embodied.policies.train import RunSpec, build_learner

    overrides = {"update_every": 30, "full_update_every": 2, "max_context": 128, "hidden": 32}
    tasks = {"trial_episodes": 2}

    def cfg(run_dir, total):
        return TrainCfg(total_steps=total, num_envs=4, seed=3, run_dir=str(run_dir), checkpoint_every=0,
                        eval_episodes=0, progress=False, tensorboard=False, workers=2, worker_mode="serial")

    run_dir = train(TASK, algo, cfg(tmp_path / "a", 4 * 60), tasks, overrides)  # two rounds, two updates
    run = RunSpec(**load_checkpoint(run_dir)["run"])
    source = WorkerRollout(run, cfg(tmp_path / "b", 0))
    learner = build_learner(algo, source, "cpu", run.learner_cfg)
    learner.load_state_dict(load_checkpoint(run_dir)["learner"])
    source.load_state_dict(load_checkpoint(run_dir))
    for _ in range(30):  # the third round
        obs, action, reward, terminated, truncated, info = source.next_step(learner)
        learner.observe(obs, action, reward, info["final_obs"], terminated, truncated, info)
        learner.episodes_ended(terminated | truncated)
    ctx, workers = learner.ctx, source.pool.workers
    assert learner.ready_to_update() and not learner._core_filled
    p0, p = ctx.p0, ctx.p
    for w, worker in enumerate(workers):  # the same timeline as each worker's own context, env by env
        theirs = worker.learner.ctx
        assert (theirs.p0, theirs.p) == (p0, p)
        for name in ("tokens", "seg", "actions", "logprobs", "values"):
            assert torch.equal(getattr(ctx, name)[2 * w : 2 * w + 2, :p], getattr(theirs, name)[:, :p]), name
    with torch.no_grad():
        logits, _ = learner._core_chunk(ctx, torch.arange(4), p0, p)
    logp = torch.distributions.Categorical(logits=logits).log_prob(ctx.actions[:, p0:p])
    torch.testing.assert_close(logp, ctx.logprobs[:, p0:p], atol=1e-5, rtol=1e-5)
    learner._core_fill(ctx, p0, p)
    for w, worker in enumerate(workers):
        theirs = worker.learner.ctx
        if algo == "relic":
            for mine, its in zip(ctx.cache.k + ctx.cache.v, theirs.cache.k + theirs.cache.v, strict=True):
                torch.testing.assert_close(mine[2 * w : 2 * w + 2, :, : 1 + p], its[:, :, : 1 + p], atol=1e-5, rtol=1e-5)
        else:
            torch.testing.assert_close(ctx.memory[2 * w : 2 * w + 2], theirs.memory, atol=1e-5, rtol=1e-5)
    source.close()

    reference = load_checkpoint(train(TASK, algo, cfg(tmp_path / "c", 4 * 300), tasks, overrides))
    train(TASK, algo, cfg(tmp_path / "d", 4 * (30 * 5 + 7)), tasks, overrides)
    assert load_checkpoint(tmp_path / "d")["workers"]["next_index"] == 7
    resumed = load_checkpoint(train(TASK, algo, resume=tmp_path / "d", total_steps=4 * 300))
    assert reference["learner"]["counters"]["num_updates"] == 10
    assert first_difference(reference["learner"], resumed["learner"]) is None
    assert first_difference(reference["workers"], resumed["workers"]) is None


def test_validation_plays_whole_trials_and_keeps_the_best_policy(tmp_path, monkeypatch):
    """``validate_every``: whole trials (every episode of each, one env per trial) on the training
    goals; the best mean return so far is saved as best_policy.pt and survives a checkpoint."""
    import embodied.policies.train as train_module

    calls, real = [], train_module.evaluate

    def recording(task_id, learner, episodes, **kwargs):
        summary = real(task_id, learner, episodes, **kwargs)
        calls.append((episodes, kwargs["num_envs"], summary["return_mean"]))
        return summary

    monkeypatch.setattr(train_module, "evaluate", recording)
    torch.set_num_threads(1)
    overrides = {"update_every": 50, "max_context": 512, "validate_every": 2000, "validation_trials": 4,
                 "validation_trial_episodes": 3}
    run = train(
        TASK,
        "relic",
        TrainCfg(total_steps=6000, num_envs=4, seed=1, run_dir=str(tmp_path / "r"), checkpoint_every=0,
                 eval_episodes=0, progress=False, tensorboard=False),
        {"trial_episodes": 3, "size": 5},
        overrides,
    )
    assert [(episodes, envs) for episodes, envs, _ in calls] == [(12, 4)] * 3
    best = load_checkpoint(run / "best_policy.pt")
    assert best["validation"]["return_mean"] == max(score for *_, score in calls)
    learner, _ = load_policy(run / "checkpoint.pt")
    assert learner.best_return == best["validation"]["return_mean"]
    policy, _ = load_policy(run / "best_policy.pt")
    obs, _ = build_env(TASK, 4, "cpu", 0, {"trial_episodes": 3, "size": 5}).reset(seed=0)
    assert policy.act(obs, deterministic=True).shape == (4, 5)
