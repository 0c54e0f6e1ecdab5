#!/usr/bin/env bash
# Makes .venv-ros2: genuine rclpy (ROS 2 Jazzy, Fast DDS) wheels from PyPI in a venv of their own,
# since ROS 1 and ROS 2 message modules cannot share an interpreter. The ROS 2 bridge runs
# sim2real/ros/ros2_sidecar.py with this venv's Python. Idempotent (a stamp file); about 250 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ROS2_VENV:-.venv-ros2}
STAMP="$VENV/.installed"
[ -f "$STAMP" ] && exit 0
PY=${PY:-$(.venv/bin/python -c 'import sys; print(sys._base_executable)')}
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q "ros-jazzy-rclpy[fastrtps]" ros-jazzy-std-msgs ros-jazzy-sensor-msgs \
    ros-jazzy-geometry-msgs ros-jazzy-trajectory-msgs ros-jazzy-rosgraph-msgs
touch "$STAMP"
