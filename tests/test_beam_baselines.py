"""Beam baselines: response-matrix SVD and model-gradient correction fix known errors with the expected
evaluation counts, the safety layer refuses NaN and out-of-range settings, calibration, RFQ search and
the RFQ model fit."""

from __future__ import annotations

import pytest
import torch

import embodied
from embodied.policies.beam_baselines import (
    CalibratedPolicy,
    CorrectorSafety,
    ModelGradient,
    ResponseMatrixSVD,
    RFQCoordinateSearch,
    RFQModelFit,
    tikhonov_inverse,
)
from embodied.sim.beam import nominal_model

CM1 = "Beam/OrbitCorrection-CM1-v0"
NO_ERRORS = {"solenoid_offset_mm": 0.0, "solenoid_field_error": 0.0}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def single_offset_env(num_envs: int = 2):
    """CM1 without random errors, then one known solenoid offset (SOL3 x +1.5 mm, y -1 mm) and one read.

    The task's success threshold is lowered to 0.05 mm so that episodes run on past 0.5 mm.
    """
    env = embodied.make(CM1, num_envs=num_envs, seed=0, errors=NO_ERRORS, success_rms_mm=0.05)
    env.reset(seed=0)
    env.machine.errors.solenoid_offset_m[:, 2] = torch.tensor([1.5e-3, -1.0e-3])
    obs, *_ = env.step(torch.zeros(num_envs, 10))  # one evaluation with the offset in place
    assert env.machine_evaluations.tolist() == [3] * num_envs
    assert float(obs[0, 20:].abs().max()) > 1.0  # the offset moves the downstream orbit by mm
    return env, obs


def run(controller, env, obs, steps: int):
    rms = []
    for _ in range(steps):
        obs, _, terminated, truncated, info = env.step(controller.act(obs))
        assert not (terminated | truncated).any()
        rms.append(info["true_orbit_rms_mm"].clone())
    return obs, torch.stack(rms)


def test_svd_measures_the_true_response_and_corrects_a_single_offset():
    env, obs = single_offset_env()
    svd = ResponseMatrixSVD(env)
    obs, _ = run(svd, env, obs, steps=11)  # probe each corrector once, then the first correction
    assert env.machine_evaluations.tolist() == [14, 14]  # reset 2, offset read 1, 10 probes, 1 correction
    true_response = nominal_model("cm1").response_matrix(env.machine.errors)
    torch.testing.assert_close(svd.response, true_response, atol=1e-3, rtol=1e-3)
    obs, rms = run(svd, env, obs, steps=11)
    assert torch.all(rms[-1] < 0.1), rms[:, 0]
    # Monotone after the first corrections: a regularised inverse of the exact matrix does not overshoot.
    assert torch.all(rms[1:, 0] <= rms[:-1, 0] + 1e-3)


def test_svd_needs_fewer_iterations_than_the_evaluation_budget_on_random_draws():
    env = embodied.make(CM1, num_envs=32, seed=4)
    obs, _ = env.reset(seed=4)
    svd = ResponseMatrixSVD(env)
    done = torch.zeros(32, dtype=torch.bool)
    evals = torch.zeros(32, dtype=torch.long)
    for _ in range(50):
        obs, _, terminated, truncated, info = env.step(svd.act(obs))
        new = (terminated | truncated) & ~done
        evals[new] = info["machine_evaluations"][new]
        done |= terminated
        svd.episodes_ended(terminated | truncated)
        if done.all():
            break
    assert done.float().mean() >= 0.95
    assert torch.all(evals[done] >= 2 + 10 + 1)  # the probing is counted


def test_gradient_baseline_corrects_a_single_offset_in_a_few_evaluations():
    env, obs = single_offset_env(num_envs=1)
    grad = ModelGradient(env)
    for _ in range(6):
        obs, _, terminated, _, info = env.step(grad.act(obs))
        if terminated.all():
            break
    # Terminated: the orbit reads below 0.05 mm (no BPM noise here). The fitted model predicts the
    # correction; only the 1 A per step limit makes it take more than one evaluation.
    assert terminated.all() and float(info["true_orbit_rms_mm"][0]) < 0.1
    assert int(info["machine_evaluations"][0]) <= 3 + 6


def test_safety_layer_holds_nan_and_clips_out_of_range_settings():
    limits = torch.full((4,), 30.0)
    safety = CorrectorSafety(limits, max_step_A=1.0)
    currents = torch.tensor([[0.0, 29.5, -29.8, 5.0]])
    action, report = safety.action(currents, torch.tensor([[float("nan"), 0.0, 0.0, 0.0]]))
    assert report["nonfinite"].tolist() == [True]
    assert torch.all(action == 0.0)  # a NaN proposal holds the present settings
    action, report = safety.action(currents, torch.tensor([[100.0, 100.0, -100.0, 5.5]]))
    applied = currents + action * 1.0
    torch.testing.assert_close(applied, torch.tensor([[1.0, 30.0, -30.0, 5.5]]))
    assert report["num_bound_clipped"].item() == 3 and report["num_rate_limited"].item() == 1
    # A controller fed a NaN reading proposes nothing unsafe.
    env = embodied.make(CM1, num_envs=1, seed=0)
    obs, _ = env.reset(seed=0)
    svd = ResponseMatrixSVD(env)
    svd.phase[:] = 11  # past probing, as if measured
    svd.inverse[:] = tikhonov_inverse(nominal_model("cm1").response_matrix(), 0.25)
    bad = obs.clone()
    bad[0, -1] = float("nan")
    assert torch.all(svd.act(bad) == 0.0)
    assert torch.all(ModelGradient(env).act(bad) == 0.0)
    with pytest.raises(ValueError, match="must be finite"):
        env.machine.read_orbit(torch.full((1, 10), float("nan")), env.rng)
    with pytest.raises(ValueError, match="beyond its limit"):
        env.machine.read_orbit(torch.full((1, 10), 31.0), env.rng)


class _Fixed:
    name = "fixed"

    def __init__(self, action: torch.Tensor) -> None:
        self.action = action

    def act(self, obs, deterministic=True):
        return self.action.expand(obs.shape[0], -1)


def test_calibrated_policy_undoes_the_twins_polarity_and_scale():
    twin = embodied.make("Beam/OrbitCorrection-CM1-Twin-v0", num_envs=1, seed=0)
    obs, _ = twin.reset(seed=0)
    a = torch.full((1, 10), 0.2)
    out = CalibratedPolicy(_Fixed(a), twin).act(obs)
    expected = torch.full((1, 10), 0.2 / 0.54)
    expected[0, [1, 6]] *= -1
    torch.testing.assert_close(out, expected)
    big = CalibratedPolicy(_Fixed(torch.ones(1, 10)), twin).act(obs)
    assert torch.all(big.abs() <= 1.0)  # the per-step limit holds after calibration
    nominal = embodied.make(CM1, num_envs=1, seed=0)
    obs, _ = nominal.reset(seed=0)
    torch.testing.assert_close(CalibratedPolicy(_Fixed(a), nominal).act(obs), a)  # identity off-twin


def test_rfq_coordinate_search_raises_transmission():
    env = embodied.make("Beam/RFQTransmission-LPI-v0", num_envs=16, seed=0)
    obs, _ = env.reset(seed=0)
    start = env.t_true.clone()
    search = RFQCoordinateSearch(env)
    success = torch.zeros(16, dtype=torch.bool)
    for _ in range(28):  # 30 evaluations with the reset's two
        obs, _, terminated, truncated, info = env.step(search.act(obs))
        success |= info["success"]
        search.episodes_ended(terminated | truncated)
    assert start.median() < 0.8
    assert success.float().mean() >= 0.7
    with pytest.raises(ValueError, match="at most half"):
        RFQCoordinateSearch(env, steerer_step_A=0.9)


RFQ = "Beam/RFQTransmission-LPI-v0"
RFQ_NO_ERRORS = {
    "solenoid_offset_mm": 0.0,
    "solenoid_field_error": 0.0,
    "injection_offset_mm": 0.0,
    "injection_angle_mrad": 0.0,
    "current_noise_rel": 0.0,
}


def test_rfq_model_fit_recovers_a_known_injection_error():
    """Readings at seven settings (each knob moved once) pin the injection error of an otherwise ideal LEBT.

    The angles (which cost most transmission) come back within half a milliradian. The offsets less
    well, the vertical one worst: an injection offset and solenoid offsets move the two BPMs much
    alike, and the fit spreads the error over both within their priors.
    """
    env = embodied.make(RFQ, num_envs=2, seed=0, errors=RFQ_NO_ERRORS, success_transmission=0.999)
    env.reset(seed=0)
    known = torch.tensor([[1.0, -4.0, -0.8, 5.0], [-0.9, 3.0, 1.0, -4.0]])  # mm, mrad, mm, mrad
    env.machine.errors.injection[:] = known * 1e-3
    fit = RFQModelFit(env, num_samples=200, fit_iterations=40)
    for knob in range(-1, 6):  # the settings as they are, then one step on each knob in turn
        action = torch.zeros(2, 6)
        if knob >= 0:
            action[:, knob] = 1.0
        obs, _, terminated, truncated, _ = env.step(action)
        assert not (terminated | truncated).any()
        fit.record(obs)
    fit.fit()
    errors, _ = fit.unknowns(fit.theta)
    fitted = errors.injection * 1e3
    assert torch.all((fitted - known).abs() <= torch.tensor([0.4, 0.5, 0.75, 0.5])), fitted
    assert torch.all(fitted.sign() == known.sign())
    # Relative to the prior widths, the fit removes most of the error (zero would leave all of it).
    width = torch.tensor([1.2, 6.0, 1.2, 6.0])
    assert torch.all(((fitted - known) / width).norm(dim=1) < 0.5 * (known / width).norm(dim=1))


@pytest.mark.slow  # about 15 s on a shared 2-core machine
def test_rfq_model_fit_raises_transmission_within_the_budget():
    env = embodied.make(RFQ, num_envs=8, seed=0)
    obs, _ = env.reset(seed=0)
    start = env.t_true.clone()
    controller = RFQModelFit(env, num_samples=300)
    success = torch.zeros(8, dtype=torch.bool)
    for _ in range(8):  # 10 evaluations with the reset's two
        action = controller.act(obs)
        assert torch.all(action.abs() <= 1.0)  # the safety layer's per-step limits
        obs, _, terminated, truncated, info = env.step(action)
        success |= info["success"]
        controller.episodes_ended(terminated | truncated)
        assert torch.all(env.solenoids >= 0.0)
    assert float((start >= 0.85).float().mean()) <= 0.5
    assert success.float().mean() >= 0.75, (start, success)


def test_rfq_model_fit_refuses_nan_observations():
    env = embodied.make(RFQ, num_envs=2, seed=0)
    obs, _ = env.reset(seed=0)
    controller = RFQModelFit(env, num_samples=100)
    bad = obs.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="env 1 is not finite"):
        controller.act(bad)
    with pytest.raises(ValueError, match="observation of shape"):
        controller.act(obs[:, :5])
    assert int(controller.count.sum()) == 0  # nothing was recorded


def test_knob_safety_takes_per_knob_steps_and_lower_bounds():
    limits = torch.tensor([20.0, 500.0])
    safety = CorrectorSafety(limits, torch.tensor([1.0, 5.0]), low_A=torch.tensor([-20.0, 0.0]))
    currents = torch.tensor([[0.0, 3.0]])
    action, _ = safety.action(currents, torch.tensor([[-7.0, -40.0]]))
    applied = currents + action * torch.tensor([1.0, 5.0])
    torch.testing.assert_close(applied, torch.tensor([[-1.0, 0.0]]))  # rate-limited; solenoid stops at 0 A
