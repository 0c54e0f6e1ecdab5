"""Figure for docs/ros.md: the node graph of a deployment, with the sim node standing in for the robot.

.venv/bin/python scripts/ros_figures.py      # writes docs/figures/ros_node_graph.png
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "figures" / "ros_node_graph.png"

# Nodes: name -> (x, y, label, colour).
NODES = {
    "deploy": (0.22, 0.5, "embodied ros deploy\n(policy node)\nobs -> policy -> safety\n-> scale/offset, watchdog",
               "#dbe9f6"),
    "robot": (0.78, 0.72, "robot drivers\n(ros2_control, camera, BPMs)", "#e8e8e8"),
    "sim": (0.78, 0.28, "embodied ros sim\n(any registered task)", "#e2f0d9"),
    "master": (0.5, 0.9, "rosmaster\n127.0.0.1", "#fbe5d6"),
    "tools": (0.5, 0.1, "rostopic / rosbag record /\nembodied ros record", "#f2f2f2"),
}
# Edges: (from, to, topic label, y offset of the label).
EDGES = [
    ("robot", "deploy", "/joint_states (JointState)", 0.035),
    ("deploy", "robot", "/forward_command_controller/commands\n(Float64MultiArray)", -0.06),
    ("sim", "deploy", "/joint_states, /clock", -0.035),
    ("deploy", "sim", "commands", 0.03),
]


def main() -> None:
    fig, ax = plt.subplots(figsize=(9, 5.2))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    for x, y, label, colour in NODES.values():
        ax.add_patch(FancyBboxPatch((x - 0.15, y - 0.07), 0.3, 0.14, boxstyle="round,pad=0.01", fc=colour, ec="#444"))
        ax.text(x, y, label, ha="center", va="center", fontsize=8.5)
    for src, dst, label, dy in EDGES:
        (x0, y0, *_), (x1, y1, *_) = NODES[src], NODES[dst]
        sx, ex = (x0 + 0.15, x1 - 0.15) if x0 < x1 else (x0 - 0.15, x1 + 0.15)
        ax.annotate("", xy=(ex, y1 + dy), xytext=(sx, y0 + dy), arrowprops={"arrowstyle": "->", "color": "#225"})
        ax.text((sx + ex) / 2, (y0 + y1) / 2 + dy + 0.02, label, ha="center", fontsize=7.5, color="#225")
    for node in ("deploy", "robot", "sim"):
        x, y, *_ = NODES[node]
        ax.plot([x, 0.5], [y + 0.07, 0.83], ls=":", color="#a55", lw=0.8)
    ax.text(0.5, 0.79, "registration (XML-RPC)", ha="center", fontsize=7, color="#a55")
    ax.annotate("", xy=(0.25, 0.43), xytext=(0.45, 0.17), arrowprops={"arrowstyle": "<-", "color": "#777", "ls": "--"})
    ax.text(0.3, 0.25, "/embodied/status\n(heartbeat, JSON)", fontsize=7.5, color="#555")
    ax.text(0.78, 0.5, "the same config drives either", ha="center", fontsize=8, style="italic", color="#555")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(OUT)


if __name__ == "__main__":
    main()
