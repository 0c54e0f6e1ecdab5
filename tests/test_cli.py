"""The `embodied` command: every subcommand runs, and bad input exits 2 with a clear message."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from embodied.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embodied.cli", *args], capture_output=True, text=True)


def test_list_prints_a_table_and_json(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["id", "family"]
    assert "Control/Pendulum-v0" in out
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"id", "family", "backends", "obs_kinds", "max_episode_steps"} <= rows[0].keys()


def test_info_shows_config_spaces_and_randomisable_params(capsys):
    assert main(["info", "Control/Pendulum-v0"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["max_torque"] == 2.0
    assert "mass" in info["randomizable_params"]


def test_unknown_id_exits_2_and_suggests(capsys):
    assert main(["info", "Control/Pendulm-v0"]) == 2
    assert "Did you mean 'Control/Pendulum-v0'" in capsys.readouterr().err


def test_unknown_algo_and_bad_override_exit_2(capsys, tmp_path):
    assert main(["train", "Control/Pendulum-v0", "--algo", "dqn", "--run-dir", str(tmp_path)]) == 2
    assert "unknown algorithm 'dqn'" in capsys.readouterr().err
    assert main(["train", "Control/Pendulum-v0", "--algo", "sac", "--run-dir", str(tmp_path), "algo.lrr=1"]) == 2
    assert "unknown config key 'lrr'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["list", "info", "train", "eval", "demo"])
def test_every_subcommand_has_help(command):
    out = run_cli(command, "--help")
    assert out.returncode == 0 and "usage: embodied" in out.stdout


def test_train_eval_and_resume_from_the_command_line(capsys, tmp_path):
    run = tmp_path / "run"
    small = ["algo.learning_starts=100", "algo.hidden_sizes=[32,32]", "algo.batch_size=32", "eval_episodes=2"]
    args = ["train", "Control/Pendulum-v0", "--algo", "sac", "--total-steps", "300", "--run-dir", str(run), "--no-progress"]
    assert main(args + small) == 0
    assert json.loads((run / "eval.json").read_text())["train_steps"] == 300
    assert json.loads((run / "run.json").read_text())["learner_cfg"]["hidden_sizes"] == [32, 32]
    capsys.readouterr()
    assert main(["eval", "Control/Pendulum-v0", "--checkpoint", str(run), "--episodes", "2", "adapters.noise.std=0.1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 2 and summary["algo"] == "sac"
    assert main(["eval", "Control/Hopper-v0", "--checkpoint", str(run)]) == 2
    assert "was trained on Control/Pendulum-v0" in capsys.readouterr().err
    resume = ["train", "Control/Pendulum-v0", "--algo", "sac", "--resume", str(run), "--total-steps", "400", "--no-progress"]
    assert main(resume) == 0
    assert json.loads((run / "eval.json").read_text())["train_steps"] == 400
    assert main(resume + ["algo.lr=1"]) == 2
    assert "overrides are not allowed" in capsys.readouterr().err


def test_training_under_adapters_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    args = ["train", "Control/InvertedPendulum-v0", "--algo", "ppo", "--num-envs", "4", "--total-steps", "256",
            "--run-dir", str(run), "--no-progress", "algo.num_steps=32", "algo.num_minibatches=2", "eval_episodes=2",
            "adapters.noise.std=0.01", "adapters.latency.steps=1", "adapters.safety.max_delta=0.5",
            "adapters.randomize.ranges={\"mass_scale\": [0.8, 1.2]}", "task.reset_noise_scale=0.02"]
    assert main(args) == 0
    spec = json.loads((run / "run.json").read_text())
    assert spec["adapters"]["noise"]["std"] == 0.01 and spec["adapters"]["rate"] is None
    assert spec["task_overrides"]["reset_noise_scale"] == 0.02
    assert json.loads((run / "eval.json").read_text())["episodes"] == 2
    assert main(args[:-1] + ["adapters.randomize.ranges={\"no_such_param\": [0.8, 1.2]}", "--run-dir", str(tmp_path / "r2")]) == 2
