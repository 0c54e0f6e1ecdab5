"""Embodied navigation tasks (ReLIC): ObjectNav and its multi-episode trials in procedural houses.

The houses, ray caster and agent are the embedded simulator in ``embodied.sim.nav`` (docs/nav.md);
observations use Habitat's keys (``depth``, ``rgb``, ``semantic``, ``gps``, ``compass``,
``objectgoal``) and actions Habitat's ids (0 stop, 1 forward, 2 left, 3 right).
"""

from embodied.tasks.registry import register

_NAV_OBS = ("depth", "rgb", "semantic", "state")

register(
    "Nav/ObjectNav-v0",
    vector_entry_point="embodied.tasks.nav.objectnav:ObjectNavEnv",
    cfg_entry_point="embodied.tasks.nav.objectnav:ObjectNavCfg",
    max_episode_steps=500,
    obs_kinds=_NAV_OBS,
    backends=("torch", "habitat"),
    description=(
        "Find an object of a named category (chair, bed, plant, toilet, tv_monitor, sofa) in a procedurally"
        " generated house and call stop within 1 m of it; Habitat's actions and observation keys, SPL and soft SPL."
    ),
)

register(
    "Nav/ExtObjNav-v0",
    vector_entry_point="embodied.tasks.nav.extobjnav:ExtObjNavEnv",
    cfg_entry_point="embodied.tasks.nav.extobjnav:extobjnav_cfg",
    max_episode_steps=4096,
    obs_kinds=_NAV_OBS,
    backends=("torch", "habitat"),
    description=(
        "ReLIC's extended ObjectNav: a 4096-step trial of consecutive ObjectNav episodes (new goal and start"
        " each, 500 steps at most) in one house; measures reported per episode index within the trial."
    ),
)

register(
    "Nav/Darkroom-v0",
    vector_entry_point="embodied.tasks.nav.darkroom:DarkroomEnv",
    cfg_entry_point="embodied.tasks.nav.darkroom:DarkroomCfg",
    max_episode_steps=100,
    backends=("torch",),
    description=(
        "DPT's Darkroom as ReLIC ships it: a 10x10 grid with a hidden goal fixed over a trial of consecutive"
        " 100-step episodes (reward 1 per step on the goal); held-out trials draw unseen goal cells."
    ),
)
