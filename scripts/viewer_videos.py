"""Make the short video of each family in docs/figures/video_<family>_*.mp4 (linked from docs/viewer.md).

Each is one episode of one env, filmed through the env's own ``render()`` by the same code as
``embodied eval ... --video`` (``sim/viewer/record.py``): the shipped policy where the family has
one, uniform random actions where it has none yet (tactile insertion, navigation).

    .venv/bin/python scripts/viewer_videos.py            # every family
    .venv/bin/python scripts/viewer_videos.py nav        # one
"""

from __future__ import annotations

import sys
from pathlib import Path

import embodied.sim.physics.mujoco_batch  # noqa: F401  (first: it picks MuJoCo's offscreen GL backend)
from embodied.policies.train import load_policy
from embodied.sim.viewer.record import record_rollout

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "assets" / "policies"
FIGURES = REPO / "docs" / "figures"

# family -> (output name, task id, shipped policy or None for random actions, most steps filmed)
VIDEOS: dict[str, tuple[str, str, Path | None, int]] = {
    "control": ("video_control_inverted_pendulum.mp4", "Control/InvertedPendulum-v0",
                POLICIES / "control_inverted_pendulum_ppo.pt", 1000),
    "beam": ("video_beam_cm1.mp4", "Beam/OrbitCorrection-CM1-v0", POLICIES / "beam_cm1_tbsac.pt", 1000),
    "tactile": ("video_tactile_peg_insert_random.mp4", "Tactile/PegInsert-v0", None, 150),
    "nav": ("video_nav_objectnav_random.mp4", "Nav/ObjectNav-v0", None, 150),
}  # fmt: skip


def main(families: list[str]) -> int:
    for family in families or list(VIDEOS):
        name, task_id, policy_file, max_steps = VIDEOS[family]
        learner = load_policy(policy_file)[0] if policy_file is not None else None
        summary = record_rollout(task_id, learner, None, episodes=1, seed=0, video=FIGURES / name, max_steps=max_steps)
        print(f"{family}: {summary['steps']} steps -> {FIGURES / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
