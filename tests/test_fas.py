"""The Frequency-Averaged Score: the authors' formula on synthetic returns, action repetition for
ordinary policies, played sequences for sequence policies, the CLI, and bad input."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from embodied.cli import main
from embodied.policies.fas import FAS_LENGTHS, FAS_NORMALISATION, fas_evaluate, fas_score, normalisation
from embodied.policies.train import TrainCfg, train
from embodied.sim.env import BatchedWrapper
from embodied.tasks import registry

PENDULUM = "Control/Pendulum-v0"


# ---------------------------------------------------------------------- the score on synthetic returns
def test_constant_max_return_scores_29_over_30():
    assert FAS_LENGTHS == (1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
    assert fas_score(FAS_LENGTHS, [3600.0] * 16, 3600.0) == pytest.approx(29 / 30)


def test_linear_decay_and_a_small_hand_computation():
    # Return falls linearly from max at k=1 to 0 at k=30: a triangle of area 29 * max / 2.
    returns = [1000.0 * (1 - (k - 1) / 29) for k in FAS_LENGTHS]
    assert fas_score(FAS_LENGTHS, returns, 1000.0) == pytest.approx(29 / 60)
    # Trapezoids (1..2: (10+6)/2 = 8) + (2..4: 2 * (6+2)/2 = 8) = 16, over 10 * 30.
    assert fas_score([1, 2, 4], [10.0, 6.0, 2.0], 10.0) == pytest.approx(16 / 300)
    # The authors' np.trapz(returns + shift, lengths) / (max_reward * 30) on arbitrary returns.
    returns = torch.linspace(-80.0, 40.0, 16).sin().mul(50.0).tolist()
    expected = np.trapezoid(np.asarray(returns) + 65.0, FAS_LENGTHS) / (60.0 * 30)
    assert fas_score(FAS_LENGTHS, returns, 60.0, 65.0) == pytest.approx(expected)


def test_shifted_pendulum_case():
    max_reward, shift = normalisation(PENDULUM)
    assert (max_reward, shift) == (1350.0, 1550.0)
    # Shifted returns 1400 and 0: a triangle of area 29 * 1400 / 2 = 20300, over 1350 * 30.
    assert fas_score([1, 30], [-150.0, -1550.0], max_reward, shift) == pytest.approx(20300 / 40500)
    assert FAS_NORMALISATION["Control/Reacher-v0"] == (60.0, 65.0)
    assert normalisation("Control/Hopper-v0") == (3600.0, 0.0)
    assert normalisation(PENDULUM, max_reward=100.0) == (100.0, 1550.0)
    assert normalisation("Beam/Anything-v0", max_reward=5.0) == (5.0, 0.0)


@pytest.mark.parametrize(
    ("lengths", "returns", "message"),
    [
        ([], [], "at least two sequence lengths"),
        ([0, 1], [1.0, 1.0], "ints >= 1"),
        ([1, 2.5], [1.0, 1.0], "ints >= 1"),
        ([2, 1], [1.0, 1.0], "strictly increasing"),
        ([1, 2], [1.0], "one return per length"),
        ([1, 2], [1.0, float("nan")], "finite"),
    ],
)
def test_fas_score_rejects_bad_input(lengths, returns, message):
    with pytest.raises(ValueError, match=message):
        fas_score(lengths, returns, 10.0)


def test_bad_normalisation_and_lengths_fail_before_any_evaluation():
    with pytest.raises(ValueError, match="max_reward must be > 0"):
        fas_score([1, 2], [1.0, 1.0], 0.0)
    with pytest.raises(ValueError, match="no FAS normalisation for 'Beam/Anything-v0': pass max_reward"):
        fas_evaluate("Beam/Anything-v0", _CountingPolicy(), lengths=(1, 2))
    with pytest.raises(ValueError, match="at least two sequence lengths"):
        fas_evaluate(PENDULUM, _CountingPolicy(), lengths=())
    with pytest.raises(ValueError, match="ints >= 1"):
        fas_evaluate(PENDULUM, _CountingPolicy(), lengths=(0, 2))
    with pytest.raises(ValueError, match="at least one episode"):
        fas_evaluate(PENDULUM, _CountingPolicy(), lengths=(1, 2), episodes=0)


# ---------------------------------------------------------------------- evaluation on a real task
class _CountingPolicy:
    """An ordinary policy: a different action at every call (so holds are visible), calls counted."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        self.calls += 1
        value = ((self.calls * 0.37) % 2.0) - 1.0
        return torch.full((obs.shape[0], 1), value)


class _SequenceStub:
    """The sequence protocol: ``length`` distinct actions per decision, spread over [-2, 2]."""

    name = "sequence-stub"
    emits_sequences = True

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        raise AssertionError("a sequence policy is asked for sequences, not single actions")

    def act_sequence(self, obs: torch.Tensor, length: int, deterministic: bool = False) -> torch.Tensor:
        self.lengths.append(length)
        ramp = torch.linspace(-2.0, 2.0, length) if length > 1 else torch.zeros(1)
        return ramp.reshape(1, length, 1).expand(obs.shape[0], length, 1).clone()


class _Recorder(BatchedWrapper):
    """Records every primitive action the task receives (env 0's)."""

    log: list[float] = []

    def step(self, actions: Any):
        _Recorder.log.append(float(torch.as_tensor(actions)[0, 0]))
        return self.env.step(actions)


@pytest.fixture
def primitive_actions(monkeypatch) -> list[float]:
    """Every task built from here on records the primitive actions it is stepped with."""
    make = registry.make
    _Recorder.log = []
    monkeypatch.setattr(registry, "make", lambda *a, **kw: _Recorder(make(*a, **kw)))
    return _Recorder.log


def test_ordinary_policy_has_its_action_repeated(primitive_actions):
    policy = _CountingPolicy()
    result = fas_evaluate(PENDULUM, policy, lengths=(1, 2, 4), episodes=2)
    # One act call per k primitive steps (200-step episodes, both episodes in parallel) ...
    assert policy.calls == 200 + 100 + 50 and len(primitive_actions) == 3 * 200
    assert [result["raw"][k]["decisions"] for k in ("1", "2", "4")] == [200, 100, 50]
    assert all(result["raw"][k]["length_mean"] == 200 for k in ("1", "2", "4"))  # lengths in primitive steps
    # ... its action held for all k of them.
    for k, start in ((2, 200), (4, 400)):
        blocks = [primitive_actions[i:i + k] for i in range(start, start + 200, k)]
        assert all(len(set(b)) == 1 for b in blocks) and len({b[0] for b in blocks}) > 10
    assert result["sequence_policy"] is False and result["lengths"] == [1, 2, 4]
    assert all(-16.3 * 200 <= r <= 0 for r in result["returns"])
    assert len({round(r, 3) for r in result["returns"]}) == 3  # holding actions longer changes the return
    assert result["score"] == pytest.approx(fas_score([1, 2, 4], result["returns"], 1350.0, 1550.0))
    assert result["curve"] == [[k, r] for k, r in zip((1, 2, 4), result["returns"], strict=True)]
    json.dumps(result)  # JSON-ready


def test_sequence_policy_plays_its_distinct_actions(primitive_actions):
    policy = _SequenceStub()
    result = fas_evaluate(PENDULUM, policy, lengths=(1, 2, 4), episodes=1)
    assert result["sequence_policy"] is True
    assert policy.lengths == [1] * 200 + [2] * 100 + [4] * 50
    assert len(primitive_actions) == 3 * 200
    at4 = primitive_actions[400:]
    ramp = torch.linspace(-2.0, 2.0, 4).tolist()
    for i in range(0, 200, 4):
        assert at4[i:i + 4] == pytest.approx(ramp)
    assert primitive_actions[200:204] == pytest.approx([-2.0, 2.0, -2.0, 2.0])


def test_a_rate_the_run_trained_with_is_replaced():
    policy = _CountingPolicy()
    result = fas_evaluate(PENDULUM, policy, lengths=(1, 2), episodes=1, adapters={"rate": {"steps": 8}},
                          max_reward=1.0, shift=0.0)
    assert [result["raw"][k]["decisions"] for k in ("1", "2")] == [200, 100]
    assert (result["max_reward"], result["shift"]) == (1.0, 0.0)


# ---------------------------------------------------------------------- the command line
def test_eval_fas_from_the_command_line(capsys, tmp_path):
    run = train(PENDULUM, "sac", TrainCfg(total_steps=300, run_dir=str(tmp_path / "run"), progress=False,
                                          tensorboard=False, eval_episodes=0, checkpoint_every=0),
                learner_overrides={"learning_starts": 100, "hidden_sizes": [32, 32], "batch_size": 32})
    args = ["eval", PENDULUM, "--checkpoint", str(run), "--episodes", "2", "--fas", "--fas-lengths", "1,2,4"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert [k for k, _ in out["curve"]] == [1, 2, 4] and out["algo"] == "sac"
    assert out["score"] == pytest.approx(fas_score([1, 2, 4], [r for _, r in out["curve"]], 1350.0, 1550.0))
    png = run / "fas.png"
    assert out["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    custom, full = tmp_path / "plots" / "curve.png", tmp_path / "fas.json"
    assert main(args + ["--fas-plot", str(custom), "--output", str(full), "adapters.noise.std=0.01"]) == 0
    capsys.readouterr()
    assert custom.exists() and set(json.loads(full.read_text())["raw"]) == {"1", "2", "4"}
    assert main(args + ["adapters.rate.steps=2"]) == 2
    assert "--fas sets the decision rate itself" in capsys.readouterr().err
    assert main(args[:-1] + ["0,1"]) == 2
    assert "ints >= 1" in capsys.readouterr().err
    assert main(args[:-1] + ["1,two"]) == 2
    assert "--fas-lengths must be comma-separated ints" in capsys.readouterr().err


# ---------------------------------------------------------------------- the docs' figure script
def test_srl_figures_draws_the_seed_mean_of_each_method(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "srl_figures.py"
    sys.path.insert(0, str(script.parent))
    try:
        from srl_figures import mean_curve
    finally:
        sys.path.remove(str(script.parent))
    lengths, returns = mean_curve({"1": [[1, 10.0], [2, 4.0]], "2": [[1, 20.0], [2, 0.0]]})
    assert lengths.tolist() == [1, 2] and returns.tolist() == [15.0, 2.0]

    curve = [[k, 100.0 / k] for k in FAS_LENGTHS]
    report = {"budget": {"Reacher": 50_000, "Hopper": 150_000},  # Hopper has no pieces yet: no panel
              "Reacher": {"fas": {"sac1": 0.5, "srl8": 0.9}, "fas_curves": {"sac1": {"1": curve}, "srl8": {"1": curve}}}}
    (tmp_path / "srl.json").write_text(json.dumps(report))
    out = tmp_path / "fas.png"
    run = subprocess.run([sys.executable, str(script), "--results", str(tmp_path / "srl.json"), "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "empty.json").write_text(json.dumps({"budget": {"Hopper": 150_000}}))
    run = subprocess.run([sys.executable, str(script), "--results", str(tmp_path / "empty.json"), "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "no FAS curves" in run.stderr
