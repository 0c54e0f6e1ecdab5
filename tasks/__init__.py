"""Tasks of every family. Each family package registers its tasks when imported."""

from embodied.tasks import beam, control, nav, tactile  # noqa: F401
