"""Tactile/PegPlace-v0: place a peg whose pose in the hand is known only by touch into a locating hole.

Task
    The gripper, action, observation dict, reward and success of Tactile/PegInsert-v0 (see
    :mod:`embodied.tasks.tactile.peg_insert`), with the information moved: the socket's position
    is observed exactly (no noise), but the peg (round, 5 mm radius, 0.5 mm clearance) sits in
    the hand anywhere within +-7 mm across the pads' width, tilted up to +-0.3 rad about the
    fingers' axis and +-3 mm along its own axis.

Why it needs touch
    Nothing in ``proprio`` depends on where the peg sits in the hand: it holds the hand's pose
    relative to the (exactly known) socket, the opening and the previous action, identical at
    reset for any in-hand pose and, until the peg touches something, within ~1 mrad (the
    off-centre peg's weight tilts the compliant wrist that little) and 0.2 mm. The offset (up to 7
    mm, plus up to ~10 mm more at the peg's bottom from the tilt) is many times the 0.5 mm
    clearance, so a policy that centres the hand over the hole misses it. Both pads see the peg
    as a contact stripe whose position across the pad is the offset and whose angle is the tilt,
    in ``tactile_image`` and ``force_field`` from the first step. So a tactile policy can place
    the peg in one move, and a proprioceptive one can only search blindly (feeling the socket's
    top through the hand stopping). Measured over 64 envs (seed 0, 150 steps): a controller told
    the peg's true pose places 100 %; one that centres the hand over the hole and pushes down
    places 16 % (the grasps that happen to be near-centred; a pushed tilted peg also turns in
    the grasp). ``tests/test_tactile_tasks.py`` checks that two envs that differ only in the
    in-hand pose give identical ``proprio`` and different tactile entries.

Randomised
    As PegInsert-v0 (start pose, gel stiffness, damping, friction; image augmentation when
    switched on) with ``grasp_slide`` +-7 mm, ``grasp_rot`` +-0.3 rad, ``grasp_height`` +-3 mm,
    and no socket observation noise.

Success
    ``info["success"]``: the peg's mean keypoint distance from its fully placed pose (upright,
    centred, on the hole's floor) is below 4.5 mm.
"""

from __future__ import annotations

from embodied.tasks.tactile.peg_insert import PegCfg, PegDR, PegInsertEnv


def peg_place_cfg() -> PegCfg:
    """PegPlace-v0's defaults: exact socket position, a 5 mm peg, wide in-hand pose."""
    dr = PegDR(
        grasp_rot=(-0.3, 0.3),
        grasp_height=(-0.003, 0.003),
        grasp_slide=(-0.007, 0.007),
        socket_noise_x=(0.0, 0.0),
        socket_noise_y=(0.0, 0.0),
        socket_noise_z=(0.0, 0.0),
    )
    return PegCfg(peg_size=0.005, dr=dr)


class PegPlaceEnv(PegInsertEnv):
    """Peg placement where only touch tells where the peg is in the hand (see the module docstring)."""
