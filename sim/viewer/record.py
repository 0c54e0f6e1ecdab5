"""Rollout files (record, read back, replay in the viewer) and mp4 videos of a policy acting.

Rollout file format ``embodied-rollout-v1``: one NumPy ``.npz`` (``np.savez_compressed``; read
with ``np.load(path, allow_pickle=False)``, so opening a file never runs code from it) holding
one env's steps, ``T`` of them:

==========================  ==========================================================
key                         content
==========================  ==========================================================
``format``                  the string ``embodied-rollout-v1``
``meta``                    JSON: ``task_id``, ``policy``, ``checkpoint``, ``seed``,
                            ``episodes``, ``steps``, ``task_overrides``, ``adapters``
``actions``                 (T, action_dim) float32, the actions sent
``rewards``                 (T,) float32
``terminated``/``truncated`` (T,) bool
``episode_return``          (T,) float32, the return so far, at each step
``obs`` or ``obs/<key>``    (T, ...) the observation each action answered (dict obs: per key)
``reward_terms/<name>``     (T,) float32, the reward's named terms
``metrics/<name>``          (T,) float32, the family's numbers (orbit RMS, contact force ...)
``scene/<key>``             (T + 1, ...) what the scene draws (:meth:`Scene.snapshot`): row 0
                            after the reset, row t + 1 after step t
==========================  ==========================================================

The ``scene/`` rows are all a replay needs to redraw; the rest is for analysis and the plots. A
rollout converted from a ROS bag (``embodied ros replay BAG --rollout FILE``) has no ``scene/``
rows (a bag carries sensor messages, not the simulator's state) and NaN rewards: the replay page
then plots its actions and observations only.
Videos go through the env's own ``render()`` (MuJoCo's offscreen renderer for MuJoCo tasks:
``MUJOCO_GL=egl``, or ``osmesa``; the beam tasks draw their bars) and ``imageio-ffmpeg``.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embodied.sim.env import BatchedEnv

FORMAT = "embodied-rollout-v1"
REQUIRED = ("format", "meta", "actions", "rewards", "terminated", "truncated", "episode_return")


class NullServer:
    """Stands in for a viser server when a scene is built only to take snapshots (recording)."""

    def __getattr__(self, name: str) -> NullServer:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> NullServer:
        return self

    def __enter__(self) -> NullServer:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False


@dataclass
class Rollout:
    """A rollout file's contents (see the module doc for the keys)."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def task_id(self) -> str:
        return str(self.meta["task_id"])

    @property
    def steps(self) -> int:
        return len(self.arrays["rewards"])

    def group(self, prefix: str) -> dict[str, np.ndarray]:
        """The arrays under ``prefix/``, keyed by the rest of their name."""
        return {k[len(prefix) + 1 :]: v for k, v in self.arrays.items() if k.startswith(prefix + "/")}

    @property
    def has_scene(self) -> bool:
        """Whether the scene can be redrawn (False for rollouts converted from bags)."""
        return any(k.startswith("scene/") for k in self.arrays)


def save_rollout(path: str | Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write a rollout file atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, format=np.array(FORMAT), meta=np.array(json.dumps(meta)), **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_rollout(path: str | Path) -> Rollout:
    """Read a rollout file, or raise FileNotFoundError / ValueError saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no rollout file at {path} (write one with `embodied eval ... --record FILE.npz`)")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a rollout file: not an .npz (zip) archive; it is corrupt or another kind of file"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path} is not a readable rollout file ({FORMAT} .npz): {err}") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise ValueError(f"{path} is not an embodied rollout file: missing {missing}")
    if str(arrays.pop("format")) != FORMAT:
        raise ValueError(f"{path} has an unknown rollout format {arrays.get('format')!s}; this version reads {FORMAT}")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: its metadata is unreadable ({err})") from None
    if not isinstance(meta, dict) or "task_id" not in meta:
        raise ValueError(f"{path}: its metadata names no task_id")
    steps = len(arrays["rewards"])
    for key, value in arrays.items():
        want = steps + 1 if key.startswith("scene/") else steps
        if value.ndim == 0 or len(value) != want:
            raise ValueError(
                f"{path}: {key} has {0 if value.ndim == 0 else len(value)} rows, expected {want} "
                f"({steps} steps); the file is truncated or corrupt"
            )
    return Rollout(meta, arrays)


def _stack(rows: list[dict[str, np.ndarray]], prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": np.stack([r[k] for r in rows]) for k in rows[0]} if rows else {}


def record_rollout(
    task_id: str,
    learner: Any = None,
    path: str | Path | None = None,
    episodes: int = 1,
    seed: int = 0,
    device: str = "cpu",
    task_overrides: dict[str, Any] | None = None,
    adapters: dict[str, Any] | None = None,
    video: str | Path | None = None,
    video_size: tuple[int, int] = (480, 360),
    max_steps: int = 100_000,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of one env under ``learner`` (random actions if None); write the
    rollout file to ``path`` and/or an mp4 of ``env.render()`` to ``video``. Returns a summary."""
    from embodied.policies.train import build_env
    from embodied.sim.viewer.scenes import build_scene

    env = build_env(task_id, 1, device, seed, task_overrides, adapters)
    scene = build_scene(NullServer(), env) if path is not None else None
    writer = _VideoWriter(video, video_size, fps=_video_fps(env)) if video is not None else None
    obs, _ = env.reset(seed=seed)
    rows: dict[str, list[Any]] = {k: [] for k in ("actions", "rewards", "terminated", "truncated", "episode_return")}
    obs_rows: list[Any] = []
    terms: list[dict[str, np.ndarray]] = []
    metrics: list[dict[str, np.ndarray]] = []
    snaps = [scene.snapshot(env, 0)] if scene is not None else []
    done_episodes, returns = 0, []
    try:
        if writer is not None:
            writer.add(env.render(0, *video_size))
        while done_episodes < episodes and len(rows["rewards"]) < max_steps:
            with torch.no_grad():
                action = learner.act(obs, deterministic=True) if learner is not None else env.random_action()
            obs_rows.append(
                {k: v[0].cpu().numpy() for k, v in obs.items()} if isinstance(obs, dict) else obs[0].cpu().numpy()
            )
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated | truncated
            if learner is not None and hasattr(learner, "episodes_ended"):
                learner.episodes_ended(done)
            rows["actions"].append(torch.as_tensor(action)[0].float().cpu().numpy())
            rows["rewards"].append(float(reward[0]))
            rows["terminated"].append(bool(terminated[0]))
            rows["truncated"].append(bool(truncated[0]))
            rows["episode_return"].append(float(info["episode_return"][0]))
            terms.append({k: np.float32(v[0]) for k, v in info.get("reward_terms", {}).items()})
            if scene is not None:
                metrics.append({k: np.float32(v) for k, v in scene.metrics(env, 0, info).items()})
                snaps.append(scene.snapshot(env, 0))
            if writer is not None:
                writer.add(env.render(0, *video_size))
            if bool(done[0]):
                done_episodes += 1
                returns.append(float(info["episode_return"][0]))
    finally:
        if writer is not None:
            writer.close()
        env.close()
    summary = {"task_id": task_id, "steps": len(rows["rewards"]), "episodes": done_episodes, "returns": returns}
    if path is not None:
        arrays: dict[str, np.ndarray] = {
            "actions": np.stack(rows["actions"]).astype(np.float32),
            "rewards": np.asarray(rows["rewards"], np.float32),
            "terminated": np.asarray(rows["terminated"], bool),
            "truncated": np.asarray(rows["truncated"], bool),
            "episode_return": np.asarray(rows["episode_return"], np.float32),
        }
        if isinstance(obs_rows[0], dict):
            arrays.update(_stack(obs_rows, "obs"))
        else:
            arrays["obs"] = np.stack(obs_rows)
        arrays.update(_stack(terms, "reward_terms"))
        if metrics and all(m.keys() == metrics[0].keys() for m in metrics):
            arrays.update(_stack(metrics, "metrics"))
        arrays.update(_stack(snaps, "scene"))
        info_meta = {
            "task_id": task_id,
            "seed": seed,
            "episodes": done_episodes,
            "steps": summary["steps"],
            "task_overrides": dict(task_overrides or {}),
            "adapters": dict(adapters or {}),
            **(meta or {}),
        }
        summary["record"] = str(save_rollout(path, info_meta, arrays))
    if video is not None:
        summary["video"] = str(video)
    return summary


def _video_fps(env: BatchedEnv) -> float:
    """Real time where the task says its step length (``dt``), else 30 frames/s."""
    dt = getattr(env.unwrapped, "dt", None)
    return float(min(max(1.0 / dt, 5.0), 60.0)) if dt else 30.0


class _VideoWriter:
    """mp4 (H.264) frames through imageio-ffmpeg, which ships its own ffmpeg binary."""

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float) -> None:
        try:
            import imageio_ffmpeg
        except ModuleNotFoundError:
            raise ModuleNotFoundError("--video needs imageio-ffmpeg: pip install imageio-ffmpeg") from None
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.gen = imageio_ffmpeg.write_frames(
            str(path), size, fps=fps, macro_block_size=8, output_params=["-loglevel", "error"]
        )
        self.gen.send(None)

    def add(self, frame: np.ndarray) -> None:
        self.gen.send(np.ascontiguousarray(frame[..., :3], dtype=np.uint8))

    def close(self) -> None:
        self.gen.close()
