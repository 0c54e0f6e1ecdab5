"""Foundation benchmark: env speed and learner speed/quality, each against its peer in the same run.

    .venv/bin/python bench/foundation.py                 # run the missing pieces, print one JSON object
    .venv/bin/python bench/foundation.py --force         # re-run every piece
    .venv/bin/python bench/foundation.py --only env      # just the env pieces

Every piece (one env size, or one learner x implementation x seed) writes its own file under
bench/results/foundation/, so an interrupted run continues where it stopped. The final JSON has
``env.<num_envs>.{suite, suite_adapters, bare_mujoco, gymnasium_sync}`` (env steps per second) and
``learners.<sac|ppo>.{steps_per_s, sb3_steps_per_s, return, sb3_return}`` (means over seeds).

Env speed: the suite's batched Control/Hopper-v0 with random actions, the same with the
sim-to-real adapters stacked, a bare ``mujoco.mj_step`` loop over as many MjData of Gymnasium's
hopper.xml (frame skip 4, the floor of any MuJoCo wrapper), and Gymnasium's SyncVectorEnv of
Hopper-v5. Learners: the suite's SAC and PPO through the one training loop against
Stable-Baselines3 with the same hyperparameters, env count and step budget; both evaluated by
the same function on the same seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gymnasium  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from pieces import run_piece  # noqa: E402  (bench/pieces.py, next to this script)

import embodied  # noqa: E402
from embodied.policies.train import TrainCfg, evaluate, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "foundation"
ENV_SIZES = (1, 16, 256)
ADAPTERS = {  # a realistic stack: every adapter on at once
    "noise": {"std": 0.01},
    "latency": {"steps": 1},
    "safety": {"max_delta": 0.5},
    "randomize": {"ranges": {"friction_scale": [0.8, 1.2], "mass_scale": [0.9, 1.1]}},
}
# The learner benchmark: task, suite overrides and the matching SB3 settings.
SAC_TASK, SAC_STEPS = "Control/Pendulum-v0", 12_000
SAC_HP = {"learning_starts": 1000, "batch_size": 256, "hidden_sizes": [256, 256]}
PPO_TASK, PPO_STEPS, PPO_ENVS = "Control/InvertedPendulum-v0", 65_536, 8
# SB3's PPO has no value-loss clipping; observation and reward normalisation are on in both.
PPO_HP = {"num_steps": 256, "num_minibatches": 32, "update_epochs": 10, "hidden_sizes": [64, 64], "clip_vloss": False}


def timed_steps(step_fn, num_envs: int, seconds: float) -> float:
    """Env steps per second of ``step_fn`` (one call = one step of ``num_envs`` envs)."""
    for _ in range(3):
        step_fn()
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step_fn()
        calls += 1
    return calls * num_envs / (time.perf_counter() - t0)


def env_piece(num_envs: int, seconds: float, repeats: int = 3) -> dict[str, float]:
    """Steps/s of the four implementations, measured in turns (``repeats`` rounds, median kept),
    so a load change on the machine during the run hits every implementation alike."""
    env = embodied.make("Control/Hopper-v0", num_envs=num_envs, seed=0)
    env.reset(seed=0)
    actions = [env.random_action() for _ in range(64)]
    k = iter(range(10**12))
    wrapped = embodied.policies.train.build_env("Control/Hopper-v0", num_envs, "cpu", 0, {}, ADAPTERS)
    wrapped.reset(seed=0)

    model = mujoco.MjModel.from_xml_path(str(Path(gymnasium.__file__).parent / "envs/mujoco/assets/hopper.xml"))
    datas = [mujoco.MjData(model) for _ in range(num_envs)]
    ctrl = np.random.default_rng(0).uniform(-1, 1, size=(64, num_envs, model.nu))

    def bare() -> None:
        c = ctrl[next(k) % 64]
        for i, d in enumerate(datas):
            d.ctrl[:] = c[i]
            mujoco.mj_step(model, d, nstep=4)

    sync = gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make("Hopper-v5") for _ in range(num_envs)])
    sync.reset(seed=0)
    sync_actions = [sync.action_space.sample() for _ in range(64)]
    step_fns = {
        "suite": lambda: env.step(actions[next(k) % 64]),
        "suite_adapters": lambda: wrapped.step(actions[next(k) % 64]),
        "bare_mujoco": bare,
        "gymnasium_sync": lambda: sync.step(sync_actions[next(k) % 64]),
    }
    samples: dict[str, list[float]] = {name: [] for name in step_fns}
    for _ in range(repeats):
        for name, fn in step_fns.items():
            samples[name].append(timed_steps(fn, num_envs, seconds / repeats))
    sync.close()
    return {name: statistics.median(values) for name, values in samples.items()}


class SB3Actor:
    """Lets the suite's ``evaluate`` drive a Stable-Baselines3 model (same episodes, same seeds)."""

    def __init__(self, model: Any, name: str, normalizer: Any = None) -> None:
        self.model, self.name, self.normalizer = model, name, normalizer

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        obs_np = obs.numpy() if self.normalizer is None else self.normalizer.normalize_obs(obs.numpy())
        action, _ = self.model.predict(obs_np, deterministic=deterministic)
        return torch.as_tensor(action, dtype=torch.float32)


def learner_piece(algo: str, impl: str, seed: int, workdir: Path) -> dict[str, float]:
    torch.set_num_threads(1)
    task, steps, num_envs = (SAC_TASK, SAC_STEPS, 1) if algo == "sac" else (PPO_TASK, PPO_STEPS, PPO_ENVS)
    t0 = time.perf_counter()
    if impl == "suite":
        hp = SAC_HP if algo == "sac" else PPO_HP
        cfg = TrainCfg(total_steps=steps, num_envs=num_envs, seed=seed, run_dir=str(workdir), checkpoint_every=0,
                       eval_episodes=0, progress=False, tensorboard=False)
        run_dir = train(task, algo, cfg, learner_overrides=hp)
        seconds = time.perf_counter() - t0
        learner, _ = embodied.policies.train.load_policy(run_dir / "checkpoint.pt")
    else:
        from stable_baselines3 import PPO, SAC
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import VecNormalize

        normalizer = None
        if algo == "sac":
            model = SAC("MlpPolicy", gymnasium.make(f"embodied:{task}"), learning_starts=SAC_HP["learning_starts"],
                        batch_size=256, policy_kwargs={"net_arch": [256, 256]}, seed=seed, device="cpu")
        else:
            venv = normalizer = VecNormalize(make_vec_env(f"embodied:{task}", n_envs=num_envs, seed=seed), gamma=0.99)
            model = PPO("MlpPolicy", venv, n_steps=PPO_HP["num_steps"], batch_size=num_envs * PPO_HP["num_steps"] // 32,
                        n_epochs=10, policy_kwargs={"net_arch": [64, 64]}, seed=seed, device="cpu")
        model.learn(total_timesteps=steps)
        seconds = time.perf_counter() - t0
        if normalizer is not None:
            normalizer.training = False
        learner = SB3Actor(model, f"sb3-{algo}", normalizer)
    summary = evaluate(task, learner, episodes=10, seed=1000 + seed)  # type: ignore[arg-type]
    return {"task": task, "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds, "return": summary["return_mean"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["env", "learners"], help="run one half")
    parser.add_argument("--force", action="store_true", help="re-run pieces that already have results")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--algos", default="sac,ppo", help="comma-separated learners to benchmark")
    parser.add_argument("--seconds", type=float, default=4.0, help="timing window per env measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "mujoco": mujoco.__version__}}
    if args.only in (None, "env"):
        report["env"] = {
            str(n): run_piece(RESULTS, f"env_{n}", lambda n=n: env_piece(n, args.seconds), args.force) for n in ENV_SIZES
        }
        for row in report["env"].values():
            row["suite_over_bare"] = row["suite"] / row["bare_mujoco"]
            row["suite_over_gymnasium_sync"] = row["suite"] / row["gymnasium_sync"]
    if args.only in (None, "learners"):
        report["learners"] = {}
        for algo in args.algos.split(","):
            runs: dict[str, list[dict]] = {"suite": [], "sb3": []}
            for seed in range(1, args.seeds + 1):
                for impl in ("suite", "sb3"):
                    workdir = RESULTS / "runs" / f"{algo}_{impl}_{seed}"
                    runs[impl].append(run_piece(RESULTS, f"{algo}_{impl}_{seed}", lambda a=algo, i=impl, s=seed, w=workdir: learner_piece(a, i, s, w), args.force))
            report["learners"][algo] = {
                "task": runs["suite"][0]["task"],
                "steps": runs["suite"][0]["steps"],
                "seeds": args.seeds,
                "steps_per_s": statistics.mean(r["steps_per_s"] for r in runs["suite"]),
                "sb3_steps_per_s": statistics.mean(r["steps_per_s"] for r in runs["sb3"]),
                "return": statistics.mean(r["return"] for r in runs["suite"]),
                "sb3_return": statistics.mean(r["return"] for r in runs["sb3"]),
                "returns": [r["return"] for r in runs["suite"]],
                "sb3_returns": [r["return"] for r in runs["sb3"]],
            }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
