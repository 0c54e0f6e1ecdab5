"""The one training loop, for every learner and every task.

    run_dir = train("Control/Pendulum-v0", "sac", TrainCfg(total_steps=20_000))
    train(..., resume=run_dir)          # continue a killed run exactly where it left off

The loop builds the task through the registry, wraps it in the sim-to-real adapters the run
asks for, and drives the learner through the ``Learner`` interface. It logs to TensorBoard
(CleanRL's tags: ``charts/episodic_return``, ``charts/SPS``, ``losses/*``) in
``runs/<task>__<algo>__<seed>__<time>/`` with a live progress bar, writes
``checkpoint.pt`` atomically every ``checkpoint_every`` env steps and on Ctrl-C/SIGTERM, and
ends with an evaluation written to ``eval.json``. The loop never branches on a task or an
algorithm: what differs lives in their configs.

Experience comes from a rollout source: by default the task's envs stepped here, acting with
the learner itself (:class:`LocalRollout`); with ``TrainCfg.workers`` N rollout workers, Ray
actors or the same workers run one after another here
(``embodied.policies.scaleout.workers``). Either way the loop sees one batched step at a time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import gymnasium
import torch

from embodied.config import apply_overrides, to_dict
from embodied.policies import LEARNERS
from embodied.policies.base import Learner, ValidationPlan
from embodied.policies.checkpoint import load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from embodied.sim.env import BatchedEnv
from embodied.tasks import registry

log = logging.getLogger(__name__)


@dataclass
class TrainCfg:
    """How long and where to train; the task's and the learner's own settings live in their configs."""

    total_steps: int = 0
    """Primitive environment steps to train for, summed over all envs (a decision that plays k
    primitive steps counts k), so methods with different decision rates get the same budget.
    0 takes the learner's default (100k; TBSAC 10k, its paper's early-stopped budget)."""
    num_envs: int = 0
    """Parallel envs; 0 takes the learner's default (SAC 1, PPO 16)."""
    seed: int = 1
    device: str = "cpu"
    """Torch device for the env and the learner ("cpu", "cuda", "cuda:1")."""
    torch_threads: int = 1
    """torch intra-op threads; 1 is fastest for small networks on few cores (OpenMP spin-waits)."""
    run_dir: str = ""
    """Output folder; empty: runs/<task>__<algo>__<seed>__<unix time>."""
    checkpoint_every: int = 10_000
    """Write checkpoint.pt every this many env steps (0: only at the end)."""
    log_every: int = 1_000
    """Log learner metrics every this many env steps."""
    eval_episodes: int = 10
    """Episodes of the final deterministic evaluation (0: skip)."""
    progress: bool = True
    """Show a progress bar."""
    tensorboard: bool = True
    workers: int = 0
    """Rollout workers sharing the ``num_envs`` envs (each its own batch); 0: the envs step in
    this process. Workers act with a copy of the policy, sent once per round."""
    worker_mode: Literal["ray", "serial"] = "ray"
    """``ray``: workers are Ray actors; ``serial``: the same workers run one after another in
    this process, no Ray (a debug mode, bit-identical to ``ray``)."""
    ray_address: str = ""
    """HOST:PORT of a Ray cluster's head; empty: a private Ray instance on 127.0.0.1."""
    round_steps: int = 0
    """Steps per env in a worker round; 0: the learner's rollout length (PPO's ``num_steps``),
    else 64."""
    distributed: bool = False
    """Data-parallel learner under ``torchrun``: every rank its own envs (seed + rank), rank 0's
    initial weights, gradients averaged over ranks; rank r > 0 writes to ``<run_dir>/rank<r>``."""


@dataclass
class RunSpec:
    """Everything that defines a run; stored in every checkpoint as JSON-ready dicts."""

    task_id: str
    algo: str
    train: dict[str, Any]
    task_overrides: dict[str, Any]
    """The task's resolved config (every field), applied as overrides when the env is rebuilt."""
    learner_cfg: dict[str, Any]
    adapters: dict[str, Any]
    """The resolved ``AdaptersCfg`` (``{}``: no adapters)."""


class Step(NamedTuple):
    """One batched env step as the learner observes it (``info["final_obs"]`` is the next obs)."""

    obs: Any
    action: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    info: dict[str, Any]


class RolloutSource(Protocol):
    """Where the loop's experience comes from, one batched step at a time."""

    num_envs: int
    primitive_steps_per_step: int
    single_observation_space: gymnasium.Space
    single_action_space: gymnasium.spaces.Box

    def next_step(self, learner: Learner) -> Step: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class LocalRollout:
    """The task's envs stepped in this process, acting with the learner itself (the default)."""

    def __init__(self, env: BatchedEnv, seed: int) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.primitive_steps_per_step = env.primitive_steps_per_step
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self.seed = seed
        self.obs: Any = None

    def next_step(self, learner: Learner) -> Step:
        if self.obs is None:
            self.obs, _ = self.env.reset(seed=self.seed)
        with torch.no_grad():
            action = learner.act(self.obs)
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        step = Step(self.obs, action, reward, terminated, truncated, info)
        self.obs = next_obs
        return step

    def state_dict(self) -> dict[str, Any]:
        return {"env": self.env.state_dict(), "obs": self.obs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env.load_state_dict(state["env"])
        self.obs = state["obs"]

    def close(self) -> None:
        self.env.close()


def learner_classes(algo: str) -> tuple[type[Learner], type]:
    if algo not in LEARNERS:
        raise KeyError(f"unknown algorithm {algo!r}; available: {', '.join(sorted(LEARNERS))}")
    cls_path, cfg_path = LEARNERS[algo]
    return registry.load(cls_path), registry.load(cfg_path)


def build_env(
    task_id: str,
    num_envs: int,
    device: str,
    seed: int | None,
    task_overrides: Mapping[str, Any] | None = None,
    adapters: Mapping[str, Any] | None = None,
) -> BatchedEnv:
    """The task from the registry, wrapped in the sim-to-real adapters named in ``adapters``."""
    env = registry.make(task_id, num_envs=num_envs, device=device, seed=seed, **dict(task_overrides or {}))
    if adapters:
        from embodied.sim2real.adapters import AdaptersCfg, wrap

        env = wrap(env, apply_overrides(AdaptersCfg(), adapters))
    return env


def _resolve_adapters(adapters: Mapping[str, Any] | None) -> dict[str, Any]:
    """The adapters' full config as a JSON-ready dict (``{}`` when none is asked for)."""
    if not adapters:
        return {}
    from embodied.sim2real.adapters import AdaptersCfg

    return to_dict(apply_overrides(AdaptersCfg(), adapters))


def build_learner(
    algo: str, env: BatchedEnv | RolloutSource, device: str, learner_cfg: Mapping[str, Any] | Any = None
) -> Learner:
    learner_cls, cfg_cls = learner_classes(algo)
    if not dataclasses.is_dataclass(learner_cfg):
        learner_cfg = apply_overrides(cfg_cls(), dict(learner_cfg or {}))
    return learner_cls(learner_cfg, env.single_observation_space, env.single_action_space, env.num_envs, device)


def _default_run_dir(task_id: str, algo: str, seed: int) -> Path:
    return Path("runs") / f"{task_id.replace('/', '_')}__{algo}__{seed}__{int(time.time())}"



def train(
    task_id: str,
    algo: str,
    cfg: TrainCfg | None = None,
    task_overrides: Mapping[str, Any] | None = None,
    learner_overrides: Mapping[str, Any] | None = None,
    adapters: Mapping[str, Any] | None = None,
    resume: str | Path | None = None,
    total_steps: int | None = None,
) -> Path:
    """Train ``algo`` on ``task_id``; returns the run folder (checkpoint.pt, eval.json, TensorBoard).

    With ``resume`` (a run folder or checkpoint file) every setting comes from the checkpoint
    and training continues bit-identically from its step; ``total_steps`` may move the end.
    """
    if resume is not None:
        state = load_checkpoint(resume)
        run = RunSpec(**state["run"])
        if (task_id, algo) != (run.task_id, run.algo):
            raise ValueError(f"{resume} is a {run.algo} run on {run.task_id}, not {algo} on {task_id}")
        if total_steps is not None:
            run.train["total_steps"] = int(total_steps)
        cfg = apply_overrides(TrainCfg(), run.train)
        run_dir = Path(resume) if Path(resume).is_dir() else Path(resume).parent
    else:
        state = None
        cfg = cfg or TrainCfg()
        registry.spec(task_id)  # unknown ids fail before anything is built
        learner_cls, cfg_cls = learner_classes(algo)
        learner_cfg = apply_overrides(cfg_cls(), dict(learner_overrides or {}))
        cfg = dataclasses.replace(cfg, num_envs=cfg.num_envs or learner_cls.default_num_envs,
                                  total_steps=cfg.total_steps or learner_cls.default_total_steps)
        run_dir = Path(cfg.run_dir) if cfg.run_dir else _default_run_dir(task_id, algo, cfg.seed)
        # Store resolved configs, not the overrides: the run keeps its settings if defaults change later.
        task_cfg = to_dict(registry.load_cfg(task_id, **dict(task_overrides or {})))
        adapters_cfg = _resolve_adapters({**learner_cls.required_adapters(learner_cfg), **dict(adapters or {})})
        run = RunSpec(task_id, algo, to_dict(cfg), task_cfg, to_dict(learner_cfg), adapters_cfg)
    rank = 0
    if cfg.distributed:
        from embodied.policies.scaleout.distributed import join_process_group

        if state is not None:
            raise ValueError("--resume of a --distributed run is not supported yet")
        rank = join_process_group(cfg.device)
        run_dir = run_dir / f"rank{rank}" if rank else run_dir
    seed = cfg.seed + rank  # each rank its own envs and sampling noise
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps(dataclasses.asdict(run), indent=2))

    torch.set_num_threads(cfg.torch_threads)
    seed_everything(seed)
    source = _rollout_source(run, cfg, seed)
    learner = build_learner(run.algo, source, cfg.device, run.learner_cfg)
    if cfg.distributed:
        from embodied.policies.scaleout.distributed import average_gradients

        average_gradients(learner)
    global_step, start_step = 0, 0
    if state is not None:
        learner.load_state_dict(state["learner"])
        source.load_state_dict(state)
        global_step = start_step = state["global_step"]
        set_rng_state(state["rng"])
        log.info("resumed %s at step %d", run_dir, global_step)

    def checkpoint() -> None:
        save_checkpoint(
            run_dir / "checkpoint.pt",
            {
                "task_id": run.task_id,
                "algo": run.algo,
                "run": dataclasses.asdict(run),
                "learner": learner.state_dict(),
                **source.state_dict(),
                "global_step": global_step,
                "rng": rng_state(),
            },
        )

    # Early stopping (Learner.validation): every plan.every steps the deterministic policy plays a
    # fixed held-out env; the best validation so far, by the learner's judgement, goes to best_policy.pt.
    plan = learner.validation()
    validation = ValidationPlan(*plan) if plan is not None else None

    def validate() -> None:
        assert validation is not None
        summary = evaluate(run.task_id, learner, validation.episodes * validation.episodes_per_env,
                           seed=validation.seed, device=cfg.device, num_envs=validation.episodes,
                           task_overrides=run.task_overrides, adapters=run.adapters)
        if learner.on_validation(summary, global_step):
            save_checkpoint(run_dir / "best_policy.pt", {
                "task_id": run.task_id, "algo": run.algo, "run": dataclasses.asdict(run), "policy_only": True,
                "learner": learner.policy_state_dict(), "global_step": global_step,
                "validation": {k: summary[k] for k in ("success_rate", "return_mean", "length_mean") if k in summary}})
        if writer is not None:
            writer.add_scalar("charts/validation_return", summary["return_mean"], global_step)

    validated = global_step // validation.every if validation is not None else 0
    # Validations fall on multiples of validation.every steps, the same ones after a resume.
    writer = _summary_writer(run_dir) if cfg.tensorboard else None
    bar = _progress_bar(cfg, start_step)
    stop = _StopSignals()
    last_log, last_ckpt, t0, recent_returns = global_step, global_step, time.perf_counter(), []
    try:
        while global_step < cfg.total_steps:
            obs, action, reward, terminated, truncated, info = source.next_step(learner)
            learner.observe(obs, action, reward, info["final_obs"], terminated, truncated, info)
            done = terminated | truncated
            learner.episodes_ended(done)
            global_step += source.num_envs * source.primitive_steps_per_step
            if done.any():
                returns = info["episode_return"][done].tolist()
                recent_returns = (recent_returns + returns)[-20:]
                if writer is not None:
                    for r, n in zip(returns, info["episode_length"][done].tolist(), strict=True):
                        writer.add_scalar("charts/episodic_return", r, global_step)
                        writer.add_scalar("charts/episodic_length", n, global_step)
            metrics = learner.update() if learner.ready_to_update() else {}
            if global_step - last_log >= cfg.log_every or global_step >= cfg.total_steps:
                sps = (global_step - start_step) / max(time.perf_counter() - t0, 1e-9)
                if writer is not None:
                    for key, value in metrics.items():
                        writer.add_scalar(key, value, global_step)
                    writer.add_scalar("charts/SPS", sps, global_step)
                if bar is not None:
                    mean_ret = sum(recent_returns) / len(recent_returns) if recent_returns else float("nan")
                    bar.set_postfix(ret=f"{mean_ret:.1f}", sps=f"{sps:.0f}")
                    bar.update(global_step - last_log)
                last_log = global_step
            if validation is not None and global_step // validation.every > validated:
                validated = global_step // validation.every
                validate()
            if cfg.checkpoint_every and global_step - last_ckpt >= cfg.checkpoint_every:
                checkpoint()
                last_ckpt = global_step
            if stop.requested:
                # Stop only between steps, so the checkpoint is a consistent state to resume from.
                checkpoint()
                log.warning("stopped by signal at step %d; checkpoint in %s (resume with --resume)", global_step, run_dir)
                raise KeyboardInterrupt
    except BaseException:
        source.close()  # rollout workers end with the run
        raise
    finally:
        stop.restore()
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    checkpoint()
    source.close()
    if cfg.eval_episodes:
        summary = evaluate(run.task_id, learner, cfg.eval_episodes, seed=cfg.seed + 10_000, device=cfg.device,
                           task_overrides=run.task_overrides, adapters=run.adapters)
        summary["train_steps"] = global_step
        (run_dir / "eval.json").write_text(json.dumps(summary, indent=2))
    return run_dir


def _rollout_source(run: RunSpec, cfg: TrainCfg, seed: int) -> RolloutSource:
    """The run's envs in this process, or its rollout workers (``cfg.workers``)."""
    if cfg.workers:
        from embodied.policies.scaleout.workers import WorkerRollout

        return WorkerRollout(run, dataclasses.replace(cfg, seed=seed))
    env = build_env(run.task_id, cfg.num_envs, cfg.device, seed, run.task_overrides, run.adapters)
    return LocalRollout(env, seed)


def evaluate(
    task_id: str,
    learner: Learner,
    episodes: int = 10,
    seed: int = 0,
    device: str = "cpu",
    num_envs: int | None = None,
    deterministic: bool = True,
    task_overrides: Mapping[str, Any] | None = None,
    adapters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` full episodes and summarise returns, lengths and success (if the task reports it)."""
    # Each env contributes the same number of episodes, so short episodes are not over-counted.
    num_envs = num_envs or min(episodes, 16)
    quota = -(-episodes // num_envs)
    env = build_env(task_id, num_envs, device, seed, task_overrides, adapters)
    obs, _ = env.reset(seed=seed)
    counts = torch.zeros(num_envs, dtype=torch.long, device=env.device)
    returns: list[float] = []
    lengths: list[int] = []
    successes: list[float] = []
    while bool((counts < quota).any()):
        with torch.no_grad():
            action = learner.act(obs, deterministic=deterministic)
        obs, _, terminated, truncated, info = env.step(action)
        ended = terminated | truncated
        episodes_ended = getattr(learner, "episodes_ended", None)  # foreign policies (SB3, random) have none
        if episodes_ended is not None:
            episodes_ended(ended)
        done = ended & (counts < quota)
        if done.any():
            counts += done.long()
            returns += info["episode_return"][done].tolist()
            lengths += info["episode_length"][done].tolist()
            if "success" in info:
                successes += info["success"][done].float().tolist()
    env.close()
    returns, lengths = returns[:episodes], lengths[:episodes]
    mean = sum(returns) / len(returns)
    summary: dict[str, Any] = {
        "task_id": task_id,
        "algo": learner.name,
        "episodes": len(returns),
        "return_mean": mean,
        "return_std": (sum((r - mean) ** 2 for r in returns) / len(returns)) ** 0.5,
        "return_min": min(returns),
        "return_max": max(returns),
        "length_mean": sum(lengths) / len(lengths),
        "returns": returns,
    }
    if successes:
        summary["success_rate"] = sum(successes[:episodes]) / len(successes[:episodes])
    return summary


def load_policy(path: str | Path, device: str = "cpu") -> tuple[Learner, dict[str, Any]]:
    """A learner ready to act, from a training checkpoint or a shipped policy file."""
    state = load_checkpoint(path, map_location=device)
    run = RunSpec(**state["run"])
    # Built as in training (same num_envs), so per-env learner state such as PPO's return statistics fits.
    env = build_env(run.task_id, run.train.get("num_envs") or 1, device, 0, run.task_overrides, run.adapters)
    learner = build_learner(run.algo, env, device, run.learner_cfg)
    env.close()
    if state.get("policy_only"):
        learner.load_policy_state_dict(state["learner"])
    else:
        learner.load_state_dict(state["learner"])
    return learner, dataclasses.asdict(run)


def export_policy(checkpoint_path: str | Path, out_path: str | Path) -> Path:
    """Write a small policy-only file (no replay buffer, optimiser or env state) from a checkpoint."""
    state = load_checkpoint(checkpoint_path)
    learner, run = load_policy(checkpoint_path)
    return save_checkpoint(
        out_path,
        {"task_id": state["task_id"], "algo": state["algo"], "run": run, "policy_only": True,
         "learner": learner.policy_state_dict(), "global_step": state.get("global_step", 0)},
    )


# ---------------------------------------------------------------------- plumbing
def _summary_writer(run_dir: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir))


def _progress_bar(cfg: TrainCfg, start: int) -> Any:
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.total_steps, initial=start, unit="step", dynamic_ncols=True)


class _StopSignals:
    """SIGINT/SIGTERM set a flag the loop checks between steps; a second signal stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[int, Any] = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not in the main thread: leave signals alone
                pass

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
