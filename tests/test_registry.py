"""The registry and the config style: ids, errors that teach, guarded backends, bad input."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import gymnasium
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import embodied
from embodied.config import ConfigError, apply_overrides, parse_overrides
from embodied.tasks import registry


def test_unknown_id_lists_the_closest_ids():
    with pytest.raises(KeyError, match="Control/Pendulum-v0") as err:
        embodied.make("Control/Pendulm-v0")
    assert "embodied list" in str(err.value)


def test_malformed_ids_are_refused_at_registration():
    for bad in ("embodied/Control/Pendulum-v0", "Pendulum-v0", "control/Pendulum-v0", "Control/Pendulum"):
        with pytest.raises(ValueError, match="Family/Name-vN"):
            registry.register(bad, vector_entry_point="x:y", cfg_entry_point="x:y", max_episode_steps=1)


def test_gymnasium_rejects_two_namespace_levels():
    with pytest.raises(gymnasium.error.Error):
        gymnasium.make("embodied/Control/Pendulum-v0")


def test_duplicate_id_and_non_json_kwargs_are_refused():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("Control/Pendulum-v0", vector_entry_point="x:y", cfg_entry_point="x:y", max_episode_steps=1)
    with pytest.raises(ConfigError, match="JSON"):
        registry.register("Test/Bad-v0", vector_entry_point="x:y", cfg_entry_point="x:y", max_episode_steps=1,
                          kwargs={"f": object()})
    assert "Test/Bad-v0" not in registry.list_tasks()


def test_unknown_config_key_and_wrong_type_name_the_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'max_torqe'.*did you mean 'max_torque'"):
        embodied.make("Control/Pendulum-v0", max_torqe=3.0)
    with pytest.raises(ConfigError, match=r"'max_torque' expects float, got str"):
        embodied.make("Control/Pendulum-v0", max_torque="strong")
    with pytest.raises(ConfigError, match=r"'out_of_bounds_actions' expects one of \['clip', 'error'\]"):
        embodied.make("Control/Pendulum-v0", out_of_bounds_actions="ignore")
    env = embodied.make("Control/Pendulum-v0", max_torque=3)  # an int is a valid float
    assert env.cfg.max_torque == 3.0 and env.single_action_space.high[0] == 3.0


def test_num_envs_must_be_positive():
    with pytest.raises(ValueError, match="num_envs"):
        embodied.make("Control/Pendulum-v0", num_envs=0)


def test_optional_backend_is_registered_but_guarded_at_make_time():
    registry.register("Test/NeedsIsaac-v0", vector_entry_point="embodied.tasks.control.pendulum:PendulumEnv",
                      cfg_entry_point="embodied.tasks.control.pendulum:PendulumCfg", max_episode_steps=10,
                      backends=("isaacgym",))
    try:
        assert "Test/NeedsIsaac-v0" in registry.list_tasks()
        with pytest.raises(ModuleNotFoundError, match="isaacgym.*not installed.*Isaac Gym"):
            embodied.make("Test/NeedsIsaac-v0")
        with pytest.raises(ValueError, match="supports backends"):
            embodied.make("Control/Pendulum-v0", backend="pybullet")
    finally:
        registry.unregister("Test/NeedsIsaac-v0")


def test_gymnasium_module_prefix_works_without_prior_import():
    code = "import gymnasium; e = gymnasium.make('embodied:Control/Pendulum-v0'); print(e.reset(seed=0)[0].shape)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(3,)"


def test_out_of_bounds_actions_clip_or_error():
    env = embodied.make("Control/Pendulum-v0", num_envs=2, seed=0)
    env.reset(seed=0)
    assert torch.equal(env.check_action(torch.tensor([[5.0], [-5.0]])), torch.tensor([[2.0], [-2.0]]))
    strict = embodied.make("Control/Pendulum-v0", num_envs=2, out_of_bounds_actions="error")
    strict.reset(seed=0)
    with pytest.raises(ValueError, match=r"Control/Pendulum-v0: action outside .* envs \[1\]"):
        strict.step(torch.tensor([[0.0], [5.0]]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=6))
def test_any_action_is_either_accepted_inside_bounds_or_refused(values):
    env = embodied.make("Control/Pendulum-v0", num_envs=2, seed=0)
    env.reset(seed=0)
    action = np.array(values, dtype=np.float32)
    if action.shape != (2,):
        with pytest.raises(ValueError, match="shape"):
            env.step(action)
        return
    action = action.reshape(2, 1)
    if not np.isfinite(action).all():
        with pytest.raises(ValueError, match="NaN or inf"):
            env.step(action)
        return
    clipped = env.check_action(action)
    assert (clipped.abs() <= 2.0).all()
    _, reward, *_ = env.step(action)
    assert torch.isfinite(reward).all()


@dataclass
class Inner:
    std: float = 0.0
    keys: tuple[str, ...] = ()


@dataclass
class Outer:
    steps: int = 1
    name: str = "a"
    flag: bool = False
    inner: Inner = field(default_factory=Inner)
    maybe: float | None = None


def test_overrides_reach_nested_fields_and_parse_command_line_strings():
    cfg = apply_overrides(Outer(), parse_overrides(["steps=3", "inner.std=0.5", "flag=true", "inner.keys=[\"a\",\"b\"]", "maybe=null"]))
    assert cfg == Outer(steps=3, flag=True, inner=Inner(std=0.5, keys=("a", "b")))
    assert Outer() == Outer(), "overrides must not modify the original"
    with pytest.raises(ConfigError, match=r"'inner.stdd'.*did you mean 'std'"):
        apply_overrides(Outer(), {"inner.stdd": 1.0})
    with pytest.raises(ConfigError, match="'steps' expects int"):
        apply_overrides(Outer(), {"steps": 1.5})
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["steps"])


@settings(max_examples=80, deadline=None)
@given(st.one_of(st.text(), st.lists(st.integers()), st.dictionaries(st.text(), st.integers()), st.none()))
def test_wrongly_typed_values_raise_config_error_not_anything_else(value):
    try:
        cfg = apply_overrides(Outer(), {"steps": value})
    except ConfigError as err:
        assert "steps" in str(err)
    else:
        assert isinstance(cfg.steps, int)
