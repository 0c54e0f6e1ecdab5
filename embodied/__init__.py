"""embodied-suite: batched robot-learning tasks, sim-to-real adapters and learners.

    import embodied
    env = embodied.make("Control/Pendulum-v0", num_envs=16)
    embodied.list_tasks()

Importing this package registers every task (lazily: no simulator is imported until a task
is made), also with Gymnasium, so ``gymnasium.make("embodied:Control/Pendulum-v0")`` works.
"""

from embodied.tasks import registry as _registry  # noqa: F401  (registers all tasks)
from embodied.tasks.registry import list_tasks, load_cfg, make, register, spec

__version__ = "0.1.0"
__all__ = ["list_tasks", "load_cfg", "make", "register", "spec", "__version__"]
