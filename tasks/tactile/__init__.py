"""Tactile manipulation tasks (TacSL-style): a floating gripper with two gel-padded fingers.

Every task's observation is a dict (``proprio``, ``tactile_image``, ``force_field``,
``privileged``; layout in :mod:`embodied.tasks.tactile.peg_insert`) and its physics runs in
MuJoCo by default, PyBullet or MuJoCo Warp on request (``embodied.make(id, backend=...)``).
"""

from embodied.tasks.registry import register

_OBS_KINDS = ("state", "tactile_image", "force_field", "privileged")

register(
    "Tactile/PegInsert-v0",
    vector_entry_point="embodied.tasks.tactile.peg_insert:PegInsertEnv",
    cfg_entry_point="embodied.tasks.tactile.peg_insert:PegCfg",
    max_episode_steps=150,
    obs_kinds=_OBS_KINDS,
    backends=("mujoco", "pybullet", "mujoco_warp"),
    description=(
        "Insert a held peg (round or rectangular; hexagonal held out) into a socket with 0.5 mm clearance"
        " using tactile fingers; the socket's observed pose is noisy (+-5 mm)."
    ),
)

register(
    "Tactile/PegPlace-v0",
    vector_entry_point="embodied.tasks.tactile.peg_place:PegPlaceEnv",
    cfg_entry_point="embodied.tasks.tactile.peg_place:peg_place_cfg",
    max_episode_steps=150,
    obs_kinds=_OBS_KINDS,
    backends=("mujoco", "pybullet", "mujoco_warp"),
    description=(
        "Place a held peg into a hole whose position is known exactly, while the peg's pose in the hand"
        " (+-7 mm, +-0.3 rad) is known only by touch."
    ),
)
