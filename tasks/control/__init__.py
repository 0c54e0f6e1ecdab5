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
