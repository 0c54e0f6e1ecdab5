"""The habitat-sim boundary: where a user's Habitat scenes would replace the embedded simulator.

habitat-sim is distributed through conda only (it is not on PyPI), so the suite embeds its own
simulator (``sim/nav``) and the nav tasks list ``habitat`` as an optional backend. Asking for it
(``embodied.make("Nav/ObjectNav-v0", backend="habitat")``) without habitat-sim installed fails in
the registry with what to install. With habitat-sim installed, the task needs these four calls from a
backend, and nothing else, so an adapter over ``habitat_sim.Simulator`` is this surface:

- ``set_scene(env_id, scene)``: load a scene (a ``.glb`` / ``.scene_instance.json``) for an env;
- ``step(actions) -> collided``: Habitat's ``move_forward`` / ``turn_left`` / ``turn_right``;
- ``render() -> depth, rgb, semantic``: the agent's sensors, same keys and conventions;
- ``distance_field(env_id, goal)``: geodesic distances to the goal's view points (the
  pathfinder's ``geodesic_distance``).

That adapter is not written: it could not be run or tested here. Until it is, a request for the
backend with habitat-sim present stops with :class:`NotImplementedError` saying so, rather than
running anything untested.
"""

from __future__ import annotations

import importlib.util

INSTALL_HINT = "conda install habitat-sim -c conda-forge -c aihabitat (habitat-sim is not on PyPI)"


def habitat_available() -> bool:
    """True when ``habitat_sim`` can be imported."""
    return importlib.util.find_spec("habitat_sim") is not None


def require_habitat(task_id: str) -> None:
    """Raise a clear error for the habitat backend: what to install, or that the adapter is not written yet."""
    if not habitat_available():
        raise ModuleNotFoundError(f"{task_id}: the habitat backend needs habitat-sim; install it with: {INSTALL_HINT}")
    raise NotImplementedError(
        f"{task_id}: habitat-sim is installed, but the suite's adapter to it is not written yet (its four calls"
        " are listed in embodied/sim/nav/habitat.py); use the embedded simulator, backend='torch'."
    )
