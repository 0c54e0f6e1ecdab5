"""``embodied sweep``: tasks x algorithms x seeds x config overrides, as Ray Tune trials.

Each trial is one run of the one training loop (``policies/train.py``), trained in
``report_every``-step pieces: after each, the suite's own ``checkpoint.pt`` goes to Tune as
the trial's checkpoint, with the evaluation so far as its metrics. A driver killed mid-sweep
is resumed with ``embodied sweep --resume NAME``: ``Tuner.restore`` restarts the unfinished
trials from their last checkpoints, and resuming a run is bit-identical to never stopping.

When the sweep ends, every finished trial's evaluation is written as one JSON file per trial
(``<results>/<task>__<algo>__<seed>[__<overrides>].json``), the pieces the bench scripts
write; trials that raised are listed with their errors and leave the others running.

    embodied sweep --tasks Control/Pendulum-v0 --algos sac,ppo --seeds 1,2,3 --total-steps 20000 \\
        --grid algo.learning_rate=3e-4,1e-3 --results bench/results/pendulum_sweep
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embodied.config import apply_overrides
from embodied.policies.train import TrainCfg, learner_classes, train
from embodied.tasks import registry

log = logging.getLogger(__name__)

_DISTRIBUTIONS = ("uniform", "loguniform", "choice")


@dataclass
class SweepCfg:
    """What a sweep trains, and where it keeps its trials and results."""

    name: str
    """The sweep's folder under ``storage`` (and its name for ``--resume``)."""
    tasks: list[str]
    algos: list[str]
    seeds: list[int] = field(default_factory=lambda: [1])
    grid: dict[str, list[Any]] = field(default_factory=dict)
    """Overrides crossed with every task, algorithm and seed: ``{"algo.learning_rate": [3e-4, 1e-3]}``
    (prefixes as on the ``train`` command line: ``task.``, ``algo.``, ``adapters.``)."""
    sample: dict[str, str] = field(default_factory=dict)
    """Random search: overrides drawn per trial, ``"loguniform:1e-4:1e-2"``, ``"uniform:0:1"``,
    ``"choice:a,b"``; ``num_samples`` draws per task x algorithm x seed x grid point."""
    num_samples: int = 1
    train: dict[str, Any] = field(default_factory=dict)
    """``TrainCfg`` settings of every trial (``total_steps``, ``num_envs``, ...)."""
    report_every: int = 0
    """Env steps between a trial's checkpoints and reports; 0: a quarter of its total steps."""
    storage: str = "runs/sweeps"
    """Where Tune keeps the sweep (trials, checkpoints, the state ``--resume`` needs)."""
    results: str = ""
    """Folder of the per-trial JSON results; empty: ``<storage>/<name>/results``."""
    cpus_per_trial: float = 1.0
    max_concurrent: int = 0
    """Trials running at once; 0: as many as the cluster's CPUs allow."""

    @property
    def sweep_dir(self) -> Path:
        return Path(self.storage).resolve() / self.name

    @property
    def results_dir(self) -> Path:
        return Path(self.results).resolve() if self.results else self.sweep_dir / "results"


def check_sweep(cfg: SweepCfg) -> None:
    """Fail before anything starts on an unknown task, algorithm, override key or distribution."""
    if not cfg.tasks or not cfg.algos or not cfg.seeds:
        raise ValueError("a sweep needs at least one task (--tasks), algorithm (--algos) and seed (--seeds)")
    for task_id in cfg.tasks:
        registry.spec(task_id)  # KeyError with "did you mean" for an unknown id
    for algo in cfg.algos:
        learner_classes(algo)
    apply_overrides(TrainCfg(), cfg.train)
    for key, spec in cfg.sample.items():
        kind = spec.split(":", 1)[0]
        if kind not in _DISTRIBUTIONS:
            raise ValueError(f"--sample {key}={spec}: the distribution must be one of {', '.join(_DISTRIBUTIONS)}")
    for key in [*cfg.grid, *cfg.sample]:
        if key.partition(".")[0] not in ("task", "algo", "adapters"):
            raise ValueError(f"sweep override {key!r} must start with task., algo. or adapters.")


def run_sweep(cfg: SweepCfg, resume: bool = False, ray_address: str = "") -> dict[str, Any]:
    """Run (or, with ``resume``, continue) the sweep; returns ``{"results": [...], "errors": [...]}``
    and writes each finished trial's JSON under ``cfg.results_dir``."""
    from embodied.policies.scaleout.cluster import ray_session

    if not resume:
        check_sweep(cfg)
    with ray_session(ray_address):
        from ray import tune

        trainable = tune.with_resources(run_trial, {"cpu": cfg.cpus_per_trial})
        if resume:
            if not tune.Tuner.can_restore(str(cfg.sweep_dir)):
                raise FileNotFoundError(f"no sweep to resume at {cfg.sweep_dir}")
            tuner = tune.Tuner.restore(str(cfg.sweep_dir), trainable, resume_unfinished=True, resume_errored=False)
        else:
            if cfg.sweep_dir.exists():
                raise FileExistsError(f"{cfg.sweep_dir} already holds a sweep: --resume {cfg.name} continues it")
            tuner = tune.Tuner(
                trainable,
                param_space=_param_space(cfg),
                tune_config=tune.TuneConfig(num_samples=cfg.num_samples, max_concurrent_trials=cfg.max_concurrent or None),
                run_config=tune.RunConfig(name=cfg.name, storage_path=str(cfg.sweep_dir.parent), verbose=0,
                                          failure_config=tune.FailureConfig(max_failures=0)),
            )
        grid = tuner.fit()
    return _gather(grid, cfg.results_dir)


def _param_space(cfg: SweepCfg) -> dict[str, Any]:
    from ray import tune

    def distribution(spec: str) -> Any:
        kind, _, args = spec.partition(":")
        if kind == "choice":
            return tune.choice(args.split(","))  # strings, typed by the config they override
        lo, hi = (float(x) for x in args.split(":"))
        return tune.loguniform(lo, hi) if kind == "loguniform" else tune.uniform(lo, hi)

    overrides = {key: tune.grid_search(list(values)) for key, values in cfg.grid.items()}
    overrides |= {key: distribution(spec) for key, spec in cfg.sample.items()}
    return {
        "task_id": tune.grid_search(list(cfg.tasks)),
        "algo": tune.grid_search(list(cfg.algos)),
        "seed": tune.grid_search(list(cfg.seeds)),
        "overrides": overrides,
        "train": dict(cfg.train),
        "report_every": cfg.report_every,
    }


def run_trial(config: dict[str, Any]) -> None:
    """One Tune trial: the training loop in ``report_every``-step pieces, each ending in a
    checkpoint handed to Tune; restarted trials continue from Tune's latest checkpoint."""
    from ray import tune

    run_dir = Path(tune.get_context().get_trial_dir()) / "run"
    groups: dict[str, dict[str, Any]] = {"task": {}, "algo": {}, "adapters": {}}
    for key, value in config["overrides"].items():
        head, _, rest = key.partition(".")
        groups[head][rest] = value
    cfg = apply_overrides(TrainCfg(progress=False), {**config["train"], "seed": config["seed"], "run_dir": str(run_dir)})
    total = cfg.total_steps or learner_classes(config["algo"])[0].default_total_steps
    every = config["report_every"] or max(1, total // 4)

    checkpoint = tune.get_checkpoint()
    step = 0
    if checkpoint is not None:
        with checkpoint.as_directory() as saved:
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(saved) / "checkpoint.pt", run_dir / "checkpoint.pt")
            step = json.loads((Path(saved) / "progress.json").read_text())["global_step"]
    while step < total:
        target = min(step + every, total)
        if step == 0:
            train(config["task_id"], config["algo"], dataclasses.replace(cfg, total_steps=target),
                  groups["task"], groups["algo"], groups["adapters"])
        else:
            train(config["task_id"], config["algo"], resume=run_dir, total_steps=target)
        step = target
        summary = json.loads((run_dir / "eval.json").read_text()) if (run_dir / "eval.json").exists() else {}
        metrics = {"global_step": step, **{k: summary[k] for k in ("return_mean", "return_std", "success_rate") if k in summary}}
        with tempfile.TemporaryDirectory() as staging:  # only the checkpoint, not the TensorBoard logs
            shutil.copy(run_dir / "checkpoint.pt", Path(staging) / "checkpoint.pt")
            (Path(staging) / "progress.json").write_text(json.dumps(metrics))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(staging))


def trial_name(config: dict[str, Any]) -> str:
    """``<task>__<algo>__<seed>[__key=value...]``: the trial's results file, without the ``.json``."""
    parts = [config["task_id"].replace("/", "_"), config["algo"], str(config["seed"])]
    parts += [f"{key}={_short(value)}" for key, value in sorted(config["overrides"].items())]
    return "__".join(parts)


def _gather(grid: Any, results_dir: Path) -> dict[str, Any]:
    """Each finished trial's evaluation as ``results_dir/<trial_name>.json``; errors listed."""
    results, errors = [], []
    for result in grid:
        config = result.config
        name = trial_name(config)
        if result.error is not None:
            errors.append({"trial": name, "error": _first_line(result.error)})
            continue
        run_dir = Path(result.path) / "run"
        summary = json.loads((run_dir / "eval.json").read_text()) if (run_dir / "eval.json").exists() else {}
        piece = {"task_id": config["task_id"], "algo": config["algo"], "seed": config["seed"],
                 "overrides": config["overrides"], "train": config["train"],
                 "train_steps": result.metrics.get("global_step"), "run_dir": str(run_dir), **summary}
        _write_json(results_dir / f"{name}.json", piece)
        results.append(piece)
    for error in errors:
        log.error("trial %s failed: %s", error["trial"], error["error"])
    results.sort(key=trial_name)
    return {"results": results, "errors": errors, "results_dir": str(results_dir)}


# ---------------------------------------------------------------------------- plumbing
def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """As the bench scripts write their pieces: a temp file, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


def _first_line(error: BaseException) -> str:
    """The trial's own exception message (Tune wraps it in a RayTaskError with a traceback)."""
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
