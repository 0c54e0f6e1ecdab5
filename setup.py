"""embodied-suite: one task registry for tactile manipulation, navigation, beam control and
sequence-RL, installed under the single import namespace ``embodied``.

The source folders sit at the repository root (``sim/``, ``tasks/``, ...) and are mapped into
``embodied.*`` with ``package_dir``, so a user's ``import sim`` never collides with ours.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT_PACKAGES = ["sim", "tasks", "policies", "sim2real"]


def _packages() -> tuple[list[str], dict[str, str]]:
    packages = ["embodied"] + [f"embodied.{p}" for p in find_packages("embodied")]
    package_dir = {"embodied": "embodied"}
    for root in ROOT_PACKAGES:
        packages.append(f"embodied.{root}")
        package_dir[f"embodied.{root}"] = root
        for sub in find_packages(root):
            packages.append(f"embodied.{root}.{sub}")
            package_dir[f"embodied.{root}.{sub}"] = f"{root}/{sub.replace('.', '/')}"
    # assets/ is data, not code: ship it as the package ``embodied.assets``.
    packages.append("embodied.assets")
    package_dir["embodied.assets"] = "assets"
    return packages, package_dir


packages, package_dir = _packages()

setup(
    name="embodied-suite",
    version="0.1.0",
    description="Embodied and robotics simulation suite: batched tasks, sim-to-real adapters, learners",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=packages,
    package_dir=package_dir,
    package_data={"embodied.assets": ["**/*"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.4",  # install torch==2.13.0 first (CPU wheel); see the Makefile
        "numpy>=1.26",
        "scipy>=1.10",  # connected regions of the nav houses' free space
        "gymnasium[mujoco]==1.4.0",
        "mujoco>=3.2",
        "warp-lang>=1.5",
        "pybullet>=3.2",
        "opencv-python>=4.8",
        "isaacgym-stubs",
        "tensorboard>=2.15",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "cheetah-accelerator>=0.8.4,<0.9",  # beam tasks (tested with 0.8.4)
        "viser>=1.1,<2",  # the browser viewer (`embodied view`); its web client ships in the wheel
        "imageio-ffmpeg>=0.5",  # `embodied eval --video` (bundles its ffmpeg binary)
    ],
    extras_require={
        "gpu": ["mujoco-warp"],
        "habitat": [],  # habitat-sim is not on PyPI: install it from conda or source
        # Scale-out (docs/scaleout.md). RLlib's own extra pins an older gymnasium: its needs are listed by hand.
        "ray": ["ray[tune]==2.60.0"],
        "rllib": ["ray[tune]==2.60.0", "dm_tree", "lz4", "ormsgpack", "scipy"],
        "ros": ["rosbags>=0.10"],  # ROS 1 / ROS 2 bags (rospy itself comes from Debian: docs/ros.md)
        "dev": [
            "rosbags>=0.10",  # tests/test_ros*.py
            "ray[tune]==2.60.0",  # tests/test_scaleout*.py (with RLlib's needs below)
            "dm_tree",
            "lz4",
            "ormsgpack",
            "scipy",
            "pytest>=8",
            "pytest-xdist",
            "hypothesis>=6",
            "ruff>=0.6",
            "stable-baselines3>=2.3",
            "playwright>=1.45",  # viewer tests drive Debian's chromium (never `playwright install`)
        ],
    },
    entry_points={"console_scripts": ["embodied=embodied.cli:main"]},
)
