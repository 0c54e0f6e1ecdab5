"""What the bench scripts share: resumable pieces, and where and on what code they were measured.

A bench run is split into pieces (one quantity, one method, one seed...), each written to its own
JSON file as soon as it is measured, so a run killed halfway continues where it stopped. The
machine here is shared, so every piece records the load it was measured under.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def run_piece(results: Path, name: str, fn: Callable[[], dict[str, Any]], force: bool = False) -> dict[str, Any]:
    """``results/<name>.json`` if it exists (unless ``force``), else ``fn()`` written there atomically."""
    path = results / f"{name}.json"
    if path.exists() and not force:
        return json.loads(path.read_text())
    result = fn()
    _write_piece(results, name, result)
    return result


def _write_piece(results: Path, name: str, result: dict[str, Any]) -> None:
    path = results / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(path)
    print(f"# {name}: {json.dumps(result)}", file=sys.stderr, flush=True)


def run_pieces(results: Path, calls: dict[str, Callable[[], dict[str, Any]]], jobs: int = 1,
               ray_address: str = "") -> list[str]:
    """Measure every piece ``results/<name>.json`` of ``calls`` and write each as soon as it is
    done; returns one line per piece that raised (one failure never stops the others).

    ``jobs`` 1 and no ``ray_address``: one after another in this process. Otherwise each call is a
    Ray task of one CPU (``embodied.policies.scaleout``'s Ray settings: loopback only unless a
    cluster is named), on a private Ray instance with ``jobs`` CPUs or on the cluster at
    ``ray_address``, whose nodes must share this checkout's results folder. Results come back to
    this process, which writes the pieces, so a killed run resumes from the pieces on disk.
    """
    failures: list[str] = []

    def keep(name: str, result: Any) -> None:
        if isinstance(result, BaseException):
            failures.append(f"{name}: {type(result).__name__}: {result}")
            print(f"# {failures[-1]}", file=sys.stderr, flush=True)
        else:
            _write_piece(results, name, result)

    if jobs <= 1 and not ray_address:
        for name, call in calls.items():
            try:
                result = call()
            except Exception as err:  # noqa: BLE001 - reported with the piece's name
                result = err
            keep(name, result)
        return failures
    from embodied.policies.scaleout.cluster import ray_session

    bench_dir = str(Path(__file__).resolve().parent)  # the tasks import the bench modules by name
    path = os.pathsep.join(p for p in (bench_dir, os.environ.get("PYTHONPATH", "")) if p)
    with ray_session(ray_address, num_cpus=None if ray_address else jobs) as ray:
        task = ray.remote(num_cpus=1, max_retries=0, runtime_env={"env_vars": {"PYTHONPATH": path}})(_call)
        names = {task.remote(call): name for name, call in calls.items()}
        pending = list(names)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayTaskError as err:
                result = err.cause if isinstance(err.cause, Exception) else err
            except ray.exceptions.RayError as err:  # the worker process died
                result = err
            keep(names[done[0]], result)
    return failures


def _call(call: Callable[[], Any]) -> Any:
    return call()


def machine(device: str = "cpu") -> dict[str, Any]:
    """CPU model, core count, torch threads, the load average now, and the GPU when ``device`` is CUDA."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": model,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1min": os.getloadavg()[0],
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def code_state(*sources: str) -> dict[str, Any]:
    """The commit measured, and whether ``sources`` (paths in the repository) had uncommitted edits."""

    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    state: dict[str, Any] = {"commit": commit.strip() or None if commit else None}
    if sources:
        dirty = git("status", "--porcelain", "--", *sources)
        state["sources_modified"] = bool(dirty) if dirty is not None else None
    return state


def learning_curve(run_dir: Path, points: int = 40) -> list[list[float]]:
    """[[env step, mean episodic return], ...] from the run's TensorBoard log, in ``points`` bins."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return []
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if "charts/episodic_return" not in acc.Tags().get("scalars", []):
        return []
    events = acc.Scalars("charts/episodic_return")
    last = max(e.step for e in events)
    bins: list[list[float]] = [[] for _ in range(points)]
    for e in events:
        bins[min(points - 1, e.step * points // max(last, 1))].append(e.value)
    return [[(i + 1) * last / points, sum(b) / len(b)] for i, b in enumerate(bins) if b]
