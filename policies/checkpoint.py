"""The one checkpoint format: a ``torch.save`` dict, written atomically.

A checkpoint holds the run's identity (task id, algorithm, every config as JSON-ready
dicts), the learner state and, for training checkpoints, what resuming needs: env state,
current observation, step counters and RNG states. Only tensors and plain Python values are
stored, so checkpoints load with ``torch.load(weights_only=True)``: opening a file never runs
code from it.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1


def to_safe_tree(obj: Any) -> Any:
    """Convert NumPy arrays and scalars inside ``obj`` to tensors and Python numbers."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_safe_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_safe_tree(v) for v in obj)
    return obj


def first_difference(a: Any, b: Any, path: str = "state") -> str | None:
    """Where two checkpoint trees first differ (``"state.learner.actor.0.weight"``), or None if
    they are identical bit for bit. Used to prove that a resumed run equals an uninterrupted one."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
        return None if same else path
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path} (keys {sorted(map(str, a.keys() ^ b.keys()))})"
        return next((d for k in a if (d := first_difference(a[k], b[k], f"{path}.{k}"))), None)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{path} (lengths {len(a)} != {len(b)})"
        return next((d for i, (x, y) in enumerate(zip(a, b, strict=True)) if (d := first_difference(x, y, f"{path}[{i}]"))), None)
    return None if a == b else path


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, **to_safe_tree(payload)}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint, with a clear error for a missing or malformed file."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        raise ValueError(f"{path} is not a readable embodied checkpoint: {err}") from None
    required = {"format_version", "task_id", "algo", "learner"}
    if not isinstance(payload, dict) or not required <= payload.keys():
        missing = sorted(required - set(payload)) if isinstance(payload, dict) else sorted(required)
        raise ValueError(f"{path} is not an embodied checkpoint (missing {missing})")
    if payload["format_version"] > FORMAT_VERSION:
        raise ValueError(f"{path} has format {payload['format_version']}; this version reads up to {FORMAT_VERSION}")
    return payload


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch, NumPy, Python) as checkpoint-safe values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
