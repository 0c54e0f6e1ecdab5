"""A browser viewer for every task family, served from the Python process with viser.

``embodied view TASK_ID`` (see ``docs/viewer.md``) builds a :class:`ViewerSession` (env, policy,
lock), a :class:`ViewerApp` (server, controls, plots) and the family's scene
(``scenes/<family>.py``). Rollout files for replay and videos are in :mod:`.record`.
"""

from embodied.sim.viewer.session import ViewerSession

__all__ = ["ViewerSession"]
