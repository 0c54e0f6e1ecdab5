"""Classic control tasks, batched, with Gymnasium's dynamics, rewards and terminations.

They prove the batched contract and give the learners (SAC, PPO, SRL) published numbers to
compare with: Pendulum follows Gymnasium's Pendulum-v1, the MuJoCo tasks its v5 tasks.
"""

from embodied.tasks.registry import register

register(
    "Control/Pendulum-v0",
    vector_entry_point="embodied.tasks.control.pendulum:PendulumEnv",
    cfg_entry_point="embodied.tasks.control.pendulum:PendulumCfg",
    max_episode_steps=200,
    backends=("torch",),
    description="Swing a pendulum up and hold it (Gymnasium Pendulum-v1 dynamics), pure torch.",
)

register(
    "Control/InvertedPendulum-v0",
    vector_entry_point="embodied.tasks.control.inverted_pendulum:InvertedPendulumEnv",
    cfg_entry_point="embodied.tasks.control.inverted_pendulum:InvertedPendulumCfg",
    max_episode_steps=1000,
    backends=("mujoco",),
    description="Balance a pole on a cart (Gymnasium InvertedPendulum-v5 model and dynamics), MuJoCo.",
)

register(
    "Control/Reacher-v0",
    vector_entry_point="embodied.tasks.control.reacher:ReacherEnv",
    cfg_entry_point="embodied.tasks.control.reacher:ReacherCfg",
    max_episode_steps=50,
    backends=("mujoco",),
    description="Move a two-link arm's fingertip to a random target (Gymnasium Reacher-v5), MuJoCo.",
)

register(
    "Control/Hopper-v0",
    vector_entry_point="embodied.tasks.control.hopper:HopperEnv",
    cfg_entry_point="embodied.tasks.control.hopper:HopperCfg",
    max_episode_steps=1000,
    backends=("mujoco",),
    description="Make a one-legged robot hop forward without falling (Gymnasium Hopper-v5), MuJoCo.",
)

register(
    "Control/HalfCheetah-v0",
    vector_entry_point="embodied.tasks.control.half_cheetah:HalfCheetahEnv",
    cfg_entry_point="embodied.tasks.control.half_cheetah:HalfCheetahCfg",
    max_episode_steps=1000,
    backends=("mujoco",),
    description="Make a planar cheetah run forward (Gymnasium HalfCheetah-v5), MuJoCo.",
)
