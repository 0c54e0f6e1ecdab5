"""Scale-out on a real local Ray cluster: a head and a second node on loopback, 1 CPU each.

Ray must not talk to the network and ``ray stop`` ends every Ray process it can see, so the
cluster lives in a private network and PID namespace. The normal test run collects one test,
which runs this file again inside ``unshare --net --pid --fork --mount-proc`` (as root;
skipped with the reason where that is impossible); in there, the cluster tests below run
against one cluster started for the module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

IN_NAMESPACE = os.environ.get("EMBODIED_TEST_RAY_NAMESPACE") == "1"
HERE = Path(__file__).resolve()

if not IN_NAMESPACE:

    def _run_inside_a_namespace(markers: str) -> None:
        """This file's cluster tests selected by ``markers``, in a private network and PID namespace."""
        pytest.importorskip("ray", reason="Ray is in the ray extra (and the dev extra)")
        from embodied.policies.scaleout.cluster import NETWORK_ENV

        probe = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c", "ip link set lo up"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.skip(f"cannot create a private network and PID namespace ({probe.stderr.strip()}); run as root")
        env = {**os.environ, **NETWORK_ENV, "EMBODIED_TEST_RAY_NAMESPACE": "1", "RAY_AUTH_MODE": "disabled"}
        inner = f"ip link set lo up && {sys.executable} -m pytest -q -p no:cacheprovider -p no:xdist -rs -m '{markers}' {HERE}"
        result = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c", inner],
                                capture_output=True, text=True, timeout=600, env=env, cwd=HERE.parent.parent)
        print(result.stdout[-6000:])
        assert result.returncode == 0, f"cluster tests failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
        assert " passed" in result.stdout and "skipped" not in result.stdout

    def test_scaleout_on_a_local_ray_cluster_in_a_private_namespace():
        _run_inside_a_namespace("not slow")

    @pytest.mark.slow  # about 75 s on a shared 2-core machine
    def test_slow_scaleout_on_a_local_ray_cluster_in_a_private_namespace():
        _run_inside_a_namespace("slow")

else:
    import torch

    from embodied.policies.checkpoint import first_difference, load_checkpoint
    from embodied.policies.scaleout.cluster import ray_session, start_node
    from embodied.policies.scaleout.sweep import SweepCfg, run_sweep
    from embodied.policies.scaleout.workers import WorkerRollout
    from embodied.policies.train import RunSpec, TrainCfg, build_learner, train

    PORT = 6390
    ADDRESS = f"127.0.0.1:{PORT}"
    SMALL_PPO = {"num_steps": 64, "num_minibatches": 4, "update_epochs": 2, "hidden_sizes": [32, 32]}
    SMALL_SAC = ["algo.hidden_sizes=[32,32]", "algo.batch_size=32", "algo.learning_starts=100"]

    def assert_same_tree(a, b) -> None:
        assert first_difference(a, b) is None, f"{first_difference(a, b)} differs"

    @pytest.fixture(scope="module")
    def cluster():
        """A head and a second node (1 CPU each) on 127.0.0.1, and this process connected as a driver."""
        temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
        start_node(temp, PORT, head=True)
        start_node(temp, PORT, head=False)
        session = ray_session(ADDRESS)
        ray = session.__enter__()
        yield ray
        session.__exit__(None, None, None)
        ray.shutdown()
        subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True, timeout=120)

    def worker_cfg(run_dir: Path, mode: str) -> TrainCfg:
        return TrainCfg(total_steps=2048, num_envs=8, seed=7, run_dir=str(run_dir), checkpoint_every=0, eval_episodes=0,
                        progress=False, tensorboard=False, workers=2, worker_mode=mode, ray_address=ADDRESS)

    @pytest.fixture(scope="module")
    def serial_run(tmp_path_factory):
        run_dir = tmp_path_factory.mktemp("serial") / "run"
        return load_checkpoint(train("Control/Pendulum-v0", "ppo", worker_cfg(run_dir, "serial"), learner_overrides=SMALL_PPO))

    def test_actors_spread_over_both_nodes_and_roll_out_as_serial_workers(cluster, serial_run, tmp_path):
        run = RunSpec(**serial_run["run"])
        actors = WorkerRollout(run, worker_cfg(tmp_path, "ray"))
        serial = WorkerRollout(run, worker_cfg(tmp_path, "serial"))
        nodes = {location["node"] for location in cluster.get([a.location.remote() for a in actors.pool.actors])}
        assert nodes == {node["NodeID"] for node in cluster.nodes() if node["Alive"]} and len(nodes) == 2
        learner = build_learner("ppo", serial, "cpu", run.learner_cfg)
        for _ in range(70):  # more than one 64-step round
            a, b = actors.next_step(learner), serial.next_step(learner)
            assert_same_tree(a._asdict(), b._asdict())
        assert actors.timing["rounds"] == 2
        actors.close()
        serial.close()

    def test_training_with_ray_actors_is_bit_identical_to_serial_workers(cluster, serial_run, tmp_path):
        actors_run = load_checkpoint(train("Control/Pendulum-v0", "ppo", worker_cfg(tmp_path / "run", "ray"),
                                           learner_overrides=SMALL_PPO))
        assert actors_run["global_step"] == serial_run["global_step"] == 2048
        for key in ("learner", "workers", "rng"):
            assert_same_tree(actors_run[key], serial_run[key])

    @pytest.mark.parametrize("algo", ["relic", "aac"])
    def test_learners_with_memory_on_ray_actors_equal_serial_workers(cluster, tmp_path, algo):
        """Act records and each worker's memory (a trial context, an LSTM state) through Ray."""
        if algo == "relic":
            task, tasks, overrides = "Nav/Darkroom-v0", {"trial_episodes": 2}, {"update_every": 30, "max_context": 128,
                                                                                "full_update_every": 2, "hidden": 32}
        else:
            task, tasks = "Tactile/PegInsert-v0", {"obs_terms": ["proprio", "force_field", "privileged"]}
            overrides = {"tactile_input": "force_field", "num_steps": 16, "sequence_minibatches": 2, "rnn_size": 16,
                         "conv_channels": [4], "conv_kernels": [3], "conv_strides": [1], "num_keypoints": 4,
                         "head_sizes": [16], "hidden_sizes": [16, 16]}
        runs = {}
        for mode in ("serial", "ray"):
            cfg = TrainCfg(total_steps=4 * 64, num_envs=4, seed=7, run_dir=str(tmp_path / mode), checkpoint_every=0,
                           eval_episodes=0, progress=False, tensorboard=False, workers=2, worker_mode=mode,
                           ray_address=ADDRESS)
            runs[mode] = load_checkpoint(train(task, algo, cfg, tasks, overrides))
        for key in ("learner", "workers", "rng"):
            assert_same_tree(runs["ray"][key], runs["serial"][key])

    def test_bench_pieces_run_as_ray_tasks_and_a_failing_one_is_reported(cluster, tmp_path):
        import functools
        import math

        sys.path.insert(0, str(HERE.parent.parent / "bench"))
        from pieces import machine, run_pieces

        calls = {"root": lambda: {"root": math.sqrt(4.0)}, "bad": functools.partial(math.sqrt, -1.0),
                 "machine": machine}  # a bench module function: the tasks import bench/ by name
        failures = run_pieces(tmp_path, calls, ray_address=ADDRESS)
        assert json.loads((tmp_path / "root.json").read_text()) == {"root": 2.0}
        assert "cpus" in json.loads((tmp_path / "machine.json").read_text())
        assert not (tmp_path / "bad.json").exists() and len(failures) == 1 and failures[0].startswith("bad: ValueError")

    def _kill_first_worker_mid_round(killed: list[int], deadline_s: float = 60) -> None:
        """SIGKILL the first rollout actor seen inside ``run_round`` (Ray titles its process so)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end and not killed:
            for proc in Path("/proc").iterdir():
                try:
                    title = (proc / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if title.startswith("ray::") and "RolloutWorker.run_round" in title:
                    os.kill(int(proc.name), signal.SIGKILL)
                    killed.append(int(proc.name))
                    return
            time.sleep(0.005)

    def test_worker_killed_mid_round_is_replaced_and_its_round_replayed(cluster, serial_run, tmp_path, caplog):
        killed: list[int] = []
        killer = threading.Thread(target=_kill_first_worker_mid_round, args=(killed,))
        killer.start()
        actors_run = load_checkpoint(train("Control/Pendulum-v0", "ppo", worker_cfg(tmp_path / "run", "ray"),
                                           learner_overrides=SMALL_PPO))
        killer.join()
        assert killed, "no rollout worker was caught mid-round"
        assert "died mid-round" in caplog.text
        # The learner saw the same rounds as without the failure: nothing lost, nothing twice.
        for key in ("learner", "workers", "rng"):
            assert_same_tree(actors_run[key], serial_run[key])

    def _sweep_cmd(storage: Path, *extra: str) -> list[str]:
        return [str(Path(sys.executable).parent / "embodied"), "sweep", "--name", "seeds", "--storage", str(storage),
                "--ray-address", ADDRESS, *extra]

    @pytest.mark.slow  # about 60 s on a shared 2-core machine: two sweep drivers, nine training pieces
    def test_sweep_with_its_driver_killed_resumes_and_finishes_every_trial(cluster, tmp_path):
        first = subprocess.Popen(
            _sweep_cmd(tmp_path, "--tasks", "Control/Pendulum-v0", "--algos", "sac", "--seeds", "1,2,3",
                       "--total-steps", "600", "--num-envs", "2", "--report-every", "200", *SMALL_SAC,
                       "eval_episodes=2"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sweep_dir = tmp_path / "seeds"
        deadline = time.monotonic() + 180
        while not any(sweep_dir.glob("*/checkpoint_000000")) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, f"the sweep ended before it could be killed:\n{first.stdout.read()}"
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert not (sweep_dir / "results").exists()

        resumed = subprocess.run(_sweep_cmd(tmp_path, "--resume"), capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        pieces = sorted((sweep_dir / "results").glob("*.json"))
        overrides = "algo.batch_size=32__algo.hidden_sizes=[32,32]__algo.learning_starts=100"
        assert [p.name for p in pieces] == [f"Control_Pendulum-v0__sac__{s}__{overrides}.json" for s in (1, 2, 3)]
        results = [json.loads(p.read_text()) for p in pieces]
        assert all(r["train_steps"] == 600 and r["episodes"] == 2 for r in results)
        # Seed 1 trained in pieces across a killed driver equals one uninterrupted run.
        direct = train("Control/Pendulum-v0", "sac", TrainCfg(total_steps=600, num_envs=2, seed=1, eval_episodes=2,
                       run_dir=str(tmp_path / "direct"), progress=False, tensorboard=False),
                       learner_overrides={"hidden_sizes": [32, 32], "batch_size": 32, "learning_starts": 100})
        assert_same_tree(load_checkpoint(direct)["learner"], load_checkpoint(results[0]["run_dir"])["learner"])

    def test_sweep_trial_that_raises_is_reported_and_the_others_finish(cluster, tmp_path):
        cfg = SweepCfg(name="bad", tasks=["Control/Pendulum-v0"], algos=["ppo"], storage=str(tmp_path),
                       grid={"algo.num_minibatches": ["4", "100000"], "algo.num_steps": ["16"]},
                       train={"total_steps": 128, "num_envs": 4, "eval_episodes": 1})
        outcome = run_sweep(cfg)
        assert [r["overrides"]["algo.num_minibatches"] for r in outcome["results"]] == ["4"]
        assert len(outcome["errors"]) == 1
        assert "num_minibatches=100000" in outcome["errors"][0]["error"]
        assert outcome["errors"][0]["trial"].endswith("algo.num_minibatches=100000__algo.num_steps=16")

    def test_rllib_ppo_trains_one_iteration_on_a_suite_task(cluster):
        pytest.importorskip("ray.rllib", reason="RLlib's needs (dm_tree lz4 ormsgpack scipy) are in the dev extra")
        from ray.rllib.algorithms.ppo import PPOConfig

        from embodied.policies.scaleout.rllib import register_rllib_env, rllib_env_id

        for env in (rllib_env_id("Control/Pendulum-v0"), register_rllib_env("Control/Pendulum-v0", max_torque=1.5)):
            config = (PPOConfig().environment(env).env_runners(num_env_runners=1)
                      .training(train_batch_size_per_learner=128, minibatch_size=64, num_epochs=1))
            algo = config.build_algo()
            try:
                result = algo.train()
            finally:
                algo.stop()
            assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 128
            assert torch.isfinite(torch.tensor(result["learners"]["default_policy"]["total_loss"]))
