"""Connecting to Ray so that no traffic leaves the machine unless the user names a cluster.

Ray's API server probes cloud metadata addresses and a ``ray start`` cluster posts a usage
ping even with usage stats off (measured: ``shared/design/scaleout.md``). Every Ray process
the suite starts, the driver, ``ray start`` nodes and their workers, runs with
:data:`NETWORK_ENV`: no usage stats, and every HTTP(S) request sent to a dead loopback port.
A private instance binds 127.0.0.1 and caps its object store.

    from embodied.policies.scaleout.cluster import ray_session
    with ray_session("127.0.0.1:6379"):   # or "" for a private instance on this machine
        ...
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, requests fail at once
_LOOPBACK = "127.0.0.1,localhost,::1"
NETWORK_ENV: dict[str, str] = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_REPORT_URL": f"{_DEAD_PROXY}/",
    "http_proxy": _DEAD_PROXY,
    "https_proxy": _DEAD_PROXY,
    "HTTP_PROXY": _DEAD_PROXY,
    "HTTPS_PROXY": _DEAD_PROXY,
    "no_proxy": _LOOPBACK,
    "NO_PROXY": _LOOPBACK,
    # Tune warns about slow experiment syncs on every checkpoint of a local sweep: noise here.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}
"""Environment every Ray process of the suite runs with (see the module docstring)."""

OBJECT_STORE_BYTES = 200_000_000
"""Object store of a Ray node the suite starts (Ray's default is 30 % of RAM); rounds of
rollouts and weights are a few MB."""

RAY_MISSING = "Ray is not installed: pip install 'embodied-suite[ray]' (ray[tune]==2.60.0)"


def import_ray() -> Any:
    """``ray``, with the network settings applied first, or an error naming the extra to install."""
    os.environ.update(NETWORK_ENV)
    try:
        import ray
    except ModuleNotFoundError:
        raise ModuleNotFoundError(RAY_MISSING) from None
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Raise ConnectionError with the fix when nothing listens at ``HOST:PORT``.

    ``ray.init`` would retry an unreachable address for a minute before failing."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--ray-address must be HOST:PORT (the head's GCS port, 6379 by default), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise ConnectionError(
            f"cannot reach a Ray cluster at {address} ({err.strerror or err}); start one with "
            f"`ray start --head --node-ip-address={host} --port={port}` there, or leave out --ray-address "
            "to run on a private Ray instance on this machine"
        ) from None


@contextlib.contextmanager
def ray_session(address: str = "", num_cpus: int | None = None) -> Iterator[Any]:
    """Ray connected for the duration of the block; yields the ``ray`` module.

    ``address`` "": a private instance on 127.0.0.1 that ends with the block; ``HOST:PORT``:
    that cluster. Already connected (a test session, a Tune trial): that connection is used
    and left open.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": dict(NETWORK_ENV)}, "log_to_driver": False,
                              "include_dashboard": False, "configure_logging": False}
    if address:
        check_reachable(address)
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, object_store_memory=OBJECT_STORE_BYTES, _node_ip_address="127.0.0.1", **kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


def start_node(
    temp_dir: str | Path,
    port: int,
    head: bool,
    num_cpus: int = 1,
    node_ip: str = "127.0.0.1",
    extra_args: Sequence[str] = (),
) -> None:
    """``ray start`` a head (listening on ``node_ip:port``) or a node joining it, with the suite's
    network settings and a capped object store. Stop it with ``ray stop`` (every Ray process of
    this user on the machine: only inside a PID namespace, or when nothing else runs Ray)."""
    where = [f"--port={port}"] if head else [f"--address={node_ip}:{port}"]
    head_only = ["--head", "--include-dashboard=false", "--disable-usage-stats"] if head else []
    cmd = ["ray", "start", *head_only, *where, f"--node-ip-address={node_ip}", f"--num-cpus={num_cpus}",
           f"--object-store-memory={OBJECT_STORE_BYTES}", f"--temp-dir={temp_dir}", *extra_args]
    env = {**os.environ, **NETWORK_ENV}
    bin_dir = Path(sys.executable).parent  # the venv's `ray`, not one on PATH
    cmd[0] = str(bin_dir / "ray") if (bin_dir / "ray").exists() else "ray"
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    log.info("ray node started: %s", " ".join(cmd))
