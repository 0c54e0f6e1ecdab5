"""Figure for docs/nav.md: a generated house from above, and one frame's depth, semantic and RGB images.

.venv/bin/python scripts/nav_figures.py      # writes docs/figures/nav_house.png
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches as patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from embodied.sim.nav.geodesic import OccupancyGrid  # noqa: E402
from embodied.sim.nav.house import CYLINDER, SEMANTIC_CLASSES, generate_house  # noqa: E402
from embodied.sim.nav.raycast import CameraCfg, RayCaster  # noqa: E402
from embodied.sim.nav.scene import CLASS_COLOURS, SceneBatch  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "figures" / "nav_house.png"
SEED = 3


def main() -> None:
    house = generate_house(SEED)
    grid = OccupancyGrid.of(house)
    goal = 0  # chair
    field = grid.distance_field(house, goal)
    # the camera: the free cell farthest from the chairs' 1 m region, facing the house's centre
    r, c = np.unravel_index(np.argmax(np.where(np.isfinite(field), field, -1)), field.shape)
    x, y = (c + 0.5) * grid.resolution, (r + 0.5) * grid.resolution
    heading = math.atan2(house.size[1] / 2 - y, house.size[0] / 2 - x)
    scene = SceneBatch(1)
    scene.set_house(0, house)
    frames = RayCaster(CameraCfg(width=256, height=192), 1).render(scene, torch.tensor([[x, y, heading]], dtype=torch.float32))

    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2), gridspec_kw={"width_ratios": [1.5, 1, 1, 1]})
    ax = axes[0]
    ax.imshow(
        np.where(np.isfinite(field), field, np.nan),
        origin="lower",
        cmap="viridis",
        extent=(0, grid.free.shape[1] * grid.resolution, 0, grid.free.shape[0] * grid.resolution),
    )
    for kind, g, z, cat in zip(house.kind, house.geom, house.z, house.category, strict=True):
        colour = CLASS_COLOURS[cat] if SEMANTIC_CLASSES[cat] != "wall" else (0.2, 0.2, 0.2)
        alpha = 0.35 if z[0] > 1.5 else 1.0  # lintels above doors
        if kind == CYLINDER:
            ax.add_patch(patches.Circle((g[0], g[1]), g[2], color=colour, alpha=alpha))
        else:
            ax.add_patch(patches.Rectangle((g[0], g[1]), g[2] - g[0], g[3] - g[1], color=colour, alpha=alpha))
    ax.plot([x], [y], "wo", ms=7, mec="k")
    ax.arrow(x, y, 0.8 * math.cos(heading), 0.8 * math.sin(heading), color="w", width=0.05)
    ax.set_xlim(-0.3, house.size[0] + 0.3)
    ax.set_ylim(-0.3, house.size[1] + 0.3)
    ax.set_aspect("equal")
    ax.set_title(f"house {SEED}: geodesic m to a chair, agent (white)")
    axes[1].imshow(frames.depth[0].numpy(), cmap="magma_r")
    axes[1].set_title("depth (m)")
    axes[2].imshow(CLASS_COLOURS[frames.semantic[0].numpy()])
    axes[2].set_title("semantic (class colours)")
    axes[3].imshow(frames.rgb[0].numpy())
    axes[3].set_title("rgb")
    for a in axes[1:]:
        a.axis("off")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=90)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
