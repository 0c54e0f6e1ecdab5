#!/usr/bin/env bash
# Lets the suite's venv import Debian's ROS 1 (rospy, message modules, rosbag) and nothing else
# from /usr/lib/python3/dist-packages: a folder of symlinks to just those modules, named by a
# .pth file in the venv's site-packages. Idempotent; does nothing where Debian's rospy is absent
# (install it with: apt-get install python3-rospy python3-rosmaster python3-rostopic ...).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
DIST=/usr/lib/python3/dist-packages
if [ ! -d "$DIST/rospy" ]; then
    echo "setup_ros1: Debian's python3-rospy is not installed; ROS 1 tests will be skipped" >&2
    exit 0
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
LINKS="$VENV/ros1-dist-packages"
mkdir -p "$LINKS"
for name in Cryptodome catkin catkin_pkg genmsg genpy gnupg.py pyparsing rosbag roscpp rosgraph \
            rosgraph_msgs roslib roslz4 rospkg rospy std_msgs sensor_msgs geometry_msgs trajectory_msgs; do
    [ -e "$DIST/$name" ] && ln -sfn "$DIST/$name" "$LINKS/$name"
done
echo "$(cd "$LINKS" && pwd)" > "$SITE/embodied_ros1.pth"
