"""The MuJoCo control tasks against Gymnasium's v5 tasks, and their checkpoint, parameter and render hooks."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
import torch

import embodied
from embodied.sim.physics import mujoco_batch  # noqa: F401  (selects a headless GL backend before mujoco loads)

torch.set_num_threads(1)

GYMNASIUM_IDS = {
    "Control/InvertedPendulum-v0": "InvertedPendulum-v5",
    "Control/Reacher-v0": "Reacher-v5",
    "Control/Hopper-v0": "Hopper-v5",
    "Control/HalfCheetah-v0": "HalfCheetah-v5",
}
TASKS = list(GYMNASIUM_IDS)
# Our reward term -> the matching entry of Gymnasium's info.
GYMNASIUM_TERMS = {
    "Control/InvertedPendulum-v0": {"alive": "reward_survive"},
    "Control/Reacher-v0": {"distance": "reward_dist", "ctrl_cost": "reward_ctrl"},
    "Control/Hopper-v0": {"forward": "reward_forward", "healthy": "reward_survive", "ctrl_cost": "reward_ctrl"},
    "Control/HalfCheetah-v0": {"forward": "reward_forward", "ctrl_cost": "reward_ctrl"},
}


def copy_gymnasium_state(env, gym_env, env_id: int) -> None:
    data = gym_env.unwrapped.data
    env.set_joint_state(torch.tensor([env_id]), data.qpos.copy()[None], data.qvel.copy()[None])


def random_actions(env, rng: np.random.Generator, steps: int) -> list[np.ndarray]:
    space = env.single_action_space
    return [rng.uniform(space.low, space.high, (env.num_envs, *space.shape)).astype(np.float32) for _ in range(steps)]


@pytest.mark.parametrize("task_id", TASKS)
def test_matches_gymnasium_v5(task_id):
    gym_env = gymnasium.make(GYMNASIUM_IDS[task_id])
    env = embodied.make(task_id, num_envs=3, seed=0)
    assert env.max_episode_steps == gym_env.spec.max_episode_steps
    assert env.dt == pytest.approx(gym_env.unwrapped.dt)
    np.testing.assert_array_equal(env.single_action_space.low, gym_env.action_space.low)
    np.testing.assert_array_equal(env.single_action_space.high, gym_env.action_space.high)
    assert env.single_observation_space.shape == gym_env.observation_space.shape

    env.reset(seed=0)
    gym_obs, _ = gym_env.reset(seed=1)
    copy_gymnasium_state(env, gym_env, 1)
    np.testing.assert_allclose(env._observe()[1].numpy(), gym_obs, rtol=1e-6, atol=1e-6)
    episodes = 0
    for action in random_actions(env, np.random.default_rng(0), 100):
        gym_obs, gym_reward, gym_terminated, gym_truncated, gym_info = gym_env.step(action[1])
        _, reward, terminated, truncated, info = env.step(action)
        np.testing.assert_allclose(info["final_obs"][1].numpy(), gym_obs, rtol=1e-6, atol=1e-6)
        assert float(reward[1]) == pytest.approx(gym_reward, rel=1e-6, abs=1e-6)
        for ours, theirs in GYMNASIUM_TERMS[task_id].items():
            assert float(info["reward_terms"][ours][1]) == pytest.approx(gym_info[theirs], rel=1e-6, abs=1e-6)
        assert bool(terminated[1]) == gym_terminated
        assert bool(truncated[1]) == gym_truncated
        if gym_terminated or gym_truncated:
            episodes += 1
            gym_env.reset()
            copy_gymnasium_state(env, gym_env, 1)
        else:
            # The physics is bit-identical, not merely close.
            np.testing.assert_array_equal(env.qpos[1].numpy(), gym_env.unwrapped.data.qpos)
            np.testing.assert_array_equal(env.qvel[1].numpy(), gym_env.unwrapped.data.qvel)
    if task_id in ("Control/InvertedPendulum-v0", "Control/Reacher-v0"):
        assert episodes > 0, "the episode end was never exercised"
    gym_env.close()
    env.close()


def test_reward_is_the_sum_of_its_terms():
    env = embodied.make("Control/Hopper-v0", num_envs=4, seed=0)
    env.reset()
    for _ in range(5):
        _, reward, _, _, info = env.step(env.random_action())
        assert torch.allclose(reward, sum(info["reward_terms"].values()))
        assert (info["reward_terms"]["ctrl_cost"] <= 0).all()


N = 1000


def uniform_stats_ok(x: torch.Tensor, half_width: float) -> None:
    """``x`` (N, d) looks uniform on [-half_width, half_width] in every column."""
    assert (x.abs() <= half_width).all()
    assert (x.mean(0).abs() < 5 * half_width / np.sqrt(3 * N)).all()
    np.testing.assert_allclose(x.std(0).numpy(), half_width / np.sqrt(3), rtol=0.06)


@pytest.mark.parametrize("task_id,noise", [("Control/InvertedPendulum-v0", 0.01), ("Control/Hopper-v0", 5e-3)])
def test_reset_noise_is_uniform_of_the_configured_scale(task_id, noise):
    env = embodied.make(task_id, num_envs=N, seed=0, sim_threads=1)
    env.reset(seed=3)
    uniform_stats_ok(env.qpos - env.init_qpos, noise)
    uniform_stats_ok(env.qvel - env.init_qvel, noise)
    env.close()


def test_half_cheetah_reset_noise():
    env = embodied.make("Control/HalfCheetah-v0", num_envs=N, seed=0, sim_threads=1)
    env.reset(seed=3)
    uniform_stats_ok(env.qpos - env.init_qpos, 0.1)
    qvel = env.qvel - env.init_qvel
    assert (qvel.mean(0).abs() < 5 * 0.1 / np.sqrt(N)).all()
    np.testing.assert_allclose(qvel.std(0).numpy(), 0.1, rtol=0.08)
    assert (qvel.abs() > 0.1).float().mean() == pytest.approx(0.317, abs=0.05)  # Gaussian, not uniform
    env.close()


def test_reacher_reset_distribution():
    env = embodied.make("Control/Reacher-v0", num_envs=N, seed=0, sim_threads=1)
    env.reset(seed=3)
    uniform_stats_ok(env.qpos[:, :2] - env.init_qpos[:2], 0.1)
    goal = env.qpos[:, 2:]
    radius = goal.norm(dim=-1)
    assert (radius < 0.2).all()
    assert (radius < 0.1).float().mean() == pytest.approx(0.25, abs=0.05)  # uniform over the disc
    uniform_stats_ok(env.qvel[:, :2], 0.005)
    assert (env.qvel[:, 2:] == 0).all()
    # The target body sits at the goal.
    np.testing.assert_allclose(env.xpos[:, 1, :2].numpy(), goal.numpy(), atol=1e-12)
    env.close()


@pytest.mark.parametrize("task_id", TASKS)
def test_seeded_resets_repeat(task_id):
    env = embodied.make(task_id, num_envs=4, seed=0)
    first, _ = env.reset(seed=11)
    again, _ = env.reset(seed=11)
    other, _ = env.reset(seed=12)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    env.close()


def rollout(env, actions: list[np.ndarray]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    observations, rewards = [], []
    for action in actions:
        obs, reward, *_ = env.step(action)
        observations.append(obs.clone())
        rewards.append(reward.clone())
    return observations, rewards


def assert_same_rollout(got, want) -> None:
    for a, b in zip(sum(got, []), sum(want, []), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("task_id", ["Control/Reacher-v0", "Control/Hopper-v0"])
def test_state_round_trip_continues_bit_identically(task_id):
    env = embodied.make(task_id, num_envs=8, seed=0, sim_threads=2)
    env.reset(seed=0)
    env.set_params(torch.tensor([2, 5]), {"mass_scale": torch.tensor([1.3, 0.7])})
    rng = np.random.default_rng(1)
    rollout(env, random_actions(env, rng, 30))
    buffer = io.BytesIO()
    torch.save(env.state_dict(), buffer)
    actions = random_actions(env, rng, 80)  # Reacher's 50-step episodes end and reset on the way
    expected = rollout(env, actions)

    buffer.seek(0)
    env.load_state_dict(torch.load(buffer, weights_only=True))
    assert_same_rollout(rollout(env, actions), expected)
    # A fresh env (another thread count, nominal parameters, another seed) continues identically too.
    fresh = embodied.make(task_id, num_envs=8, seed=123, sim_threads=1)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert_same_rollout(rollout(fresh, actions), expected)
    env.close()
    fresh.close()


@pytest.mark.parametrize("task_id", TASKS)
def test_each_parameter_changes_the_dynamics_of_its_env_only(task_id):
    probe = embodied.make(task_id, num_envs=1)
    params = probe.randomizable_params()
    probe.close()
    assert params and all(p.nominal == 1.0 and p.low < 1.0 < p.high for p in params.values())
    names = list(params)
    # env 0: untouched; env 1: every parameter set explicitly to nominal; env 2+k: parameter k at its maximum.
    env = embodied.make(task_id, num_envs=2 + len(names), seed=0, sim_threads=1)
    env.reset(seed=0)
    ids = torch.arange(env.num_envs)
    env.set_joint_state(ids, env.qpos[:1].repeat(env.num_envs, 1), env.qvel[:1].repeat(env.num_envs, 1))
    for k, name in enumerate(names):
        env.set_params(torch.tensor([1, 2 + k]), {name: torch.tensor([1.0, params[name].high])})
    action = random_actions(env, np.random.default_rng(0), 1)[0][:1].repeat(env.num_envs, 0)
    for _ in range(15):
        env._apply_action(torch.as_tensor(action))  # the physics only: no termination or reset
    state = env.state_vector
    assert torch.equal(state[0], state[1]), "explicitly nominal parameters changed the dynamics"
    for k, name in enumerate(names):
        assert not torch.allclose(state[2 + k], state[0], atol=1e-9), f"{name} has no effect"
    with pytest.raises(KeyError, match="unknown parameter"):
        env.set_params(torch.tensor([0]), {"gravity_scale": torch.tensor([1.0])})
    env.close()


def renderer_available() -> str | None:
    """Why MuJoCo cannot render offscreen here, or None if it can."""
    import mujoco

    model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
    try:
        mujoco.Renderer(model, 16, 16).close()
    except Exception as err:  # noqa: BLE001
        return f"no offscreen OpenGL ({err}); {mujoco_batch.RENDER_HELP}"
    return None


@pytest.mark.parametrize("task_id", TASKS)
def test_render(task_id):
    reason = renderer_available()
    if reason:
        pytest.skip(reason)
    env = embodied.make(task_id, num_envs=2, seed=0)
    env.reset(seed=0)
    before = env.state_vector.clone()
    image = env.render(1, width=96, height=64)
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    assert image.std() > 1, "the image is blank"
    assert torch.equal(env.state_vector, before), "rendering changed the simulation"
    assert env.render(1, width=96, height=64).shape == (64, 96, 3)
    assert env.render(0, width=640, height=480).shape == (480, 640, 3)  # larger than the model's buffer
    env.close()


def test_headless_gl_backend_is_egl_only_where_libegl_exists():
    assert mujoco_batch.headless_gl_backend(lambda name: "libEGL.so.1" if name == "EGL" else None) == "egl"
    assert mujoco_batch.headless_gl_backend(lambda name: None) == "disable"


def test_physics_runs_without_opengl_and_render_explains_what_to_install():
    """With no OpenGL backend (a GPU server without libEGL), tasks still step; render says what is missing."""
    code = (
        "import embodied, torch\n"
        "env = embodied.make('Control/Reacher-v0', num_envs=2, seed=0)\n"
        "env.reset(seed=0)\n"
        "env.step(torch.zeros(2, 2))\n"
        "try:\n"
        "    env.render(0, width=32, height=32)\n"
        "except RuntimeError as err:\n"
        "    print('render error:', err)\n"
    )
    env = {**os.environ, "MUJOCO_GL": "disable"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "render error:" in out.stdout and "libegl1" in out.stdout
