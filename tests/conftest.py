"""Shared test setup: one torch thread (two cores, OpenMP spin-waits), warnings kept quiet."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

import embodied.sim.physics.mujoco_batch  # noqa: E402, F401  (picks MuJoCo's OpenGL backend before any test imports mujoco)

torch.set_num_threads(1)


@pytest.fixture
def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
