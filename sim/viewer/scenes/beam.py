"""Beam tasks: the lattice along the beam axis (x), the beam's centroid at each BPM, corrector
settings as bars over their solenoids, and the orbit (BPM readings) plotted against position.

Transverse offsets are drawn magnified (:data:`MM_TO_SCENE` metres of scene per millimetre), so
a millimetre orbit shows on a metre-long cryomodule.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import trimesh

from embodied.sim.env import BatchedEnv
from embodied.sim.viewer.scenes import Scene

MM_TO_SCENE = 0.03
"""Scene metres per millimetre of transverse offset."""
BAR_HEIGHT = 0.25
"""Scene height (m) of a corrector bar at its full current."""
ELEMENT_LOOK: dict[str, tuple[float, tuple[int, int, int]]] = {
    "drift": (0.015, (170, 170, 170)),
    "solenoid": (0.07, (60, 110, 200)),
    "cavity": (0.09, (205, 160, 60)),
    "bpm": (0.04, (200, 60, 60)),
}
"""Element type -> (radius m, colour) of its cylinder; other types use the drift's look."""


def element_positions(lattice: Any) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Elements, their start positions along the beam (m) and lengths (m)."""
    elements = list(lattice.elements)
    lengths = np.array([float(e.params.get("length_m", 0.0)) for e in elements])
    starts = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    return elements, starts, lengths


class BeamScene(Scene):
    """The lattice, the orbit through its BPMs and the corrector currents of env ``env_id``."""

    metric_names = ("orbit_rms_mm", "machine_evaluations")

    def __init__(self, server: Any, env: BatchedEnv) -> None:
        from viser import uplot

        base = env.unwrapped
        self.lattice = base.lattice
        elements, starts, lengths = element_positions(self.lattice)
        by_name = {e.name: (s, max(length, 0.01)) for e, s, length in zip(elements, starts, lengths, strict=True)}
        self._draw_lattice(server, elements, starts, lengths)
        self.bpm_s = np.array([by_name[n][0] for n in self.lattice.bpm_names])
        sol = [e for e in elements if e.type == "solenoid" and "correctors" in e.params]
        centres = np.array([by_name[e.name][0] + by_name[e.name][1] / 2 for e in sol])
        self.corrector_s = np.repeat(centres, 2) + np.tile([-0.04, 0.04], len(centres))  # H then V per solenoid
        self.has_orbit = hasattr(base, "readings") and len(self.bpm_s) > 0
        # RFQ tasks read transmission, not an orbit: plot what the task measures.
        self.metric_names = ("orbit_rms_mm" if self.has_orbit else "transmission", "machine_evaluations")
        n = len(self.bpm_s)
        self.centroids = server.scene.add_batched_meshes_simple(
            "/beam/centroids",
            *_sphere(0.018),
            batched_wxyzs=np.tile([1.0, 0, 0, 0], (max(n, 1), 1)),
            batched_positions=np.zeros((max(n, 1), 3)),
            batched_colors=(40, 180, 60),
            lod="off",
            cast_shadow=False,
            receive_shadow=False,
        )
        self.orbit_line = server.scene.add_line_segments(
            "/beam/orbit",
            points=np.zeros((max(n - 1, 1), 2, 3)),
            colors=(40, 180, 60),
            thickness=3.0,
            thickness_units="screen",
        )
        m = max(len(self.corrector_s), 1)
        box = trimesh.creation.box(extents=(0.05, 0.05, 1.0))
        box.apply_translation((0, 0, 0.5))
        self.bars = server.scene.add_batched_meshes_simple(
            "/beam/correctors",
            np.asarray(box.vertices, np.float32),
            np.asarray(box.faces, np.uint32),
            batched_wxyzs=np.tile([1.0, 0, 0, 0], (m, 1)),
            batched_positions=np.zeros((m, 3)),
            batched_scales=np.ones((m, 3)),
            batched_colors=np.tile([[90, 160, 90], [160, 120, 60]], (m // 2 + 1, 1))[:m],
            lod="off",
            cast_shadow=False,
            receive_shadow=False,
        )
        self.limits = base.machine.corrector_limits.cpu().numpy() if len(self.corrector_s) else np.ones(1)
        length = float(starts[-1] + lengths[-1]) if len(starts) else 1.0
        self.camera = ((length * 0.62, -0.6 * length, 0.22 * length), (length * 0.62, 0.0, 0.0))  # type: ignore[assignment]
        x = self.bpm_s if n > 1 else np.array([0.0, 1.0])
        zeros = np.zeros(len(x))
        self.orbit_plot = server.gui.add_uplot(
            (x, zeros, zeros),
            (
                uplot.Series(label="s (m)"),
                uplot.Series(label="x (mm)", stroke="#c83c3c", width=2),
                uplot.Series(label="y (mm)", stroke="#3c3cc8", width=2),
            ),
            title="Orbit at the BPMs",
            scales={"x": {"time": False}},
            aspect=2.0,
            order=3,
        )

    def _draw_lattice(self, server: Any, elements: list[Any], starts: np.ndarray, lengths: np.ndarray) -> None:
        """Static: one batched cylinder handle per element type, axis along x."""
        rot = np.array([np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0])  # z axis -> x axis
        for kind in sorted({e.type for e in elements}):
            radius, colour = ELEMENT_LOOK.get(kind, ELEMENT_LOOK["drift"])
            rows = [k for k, e in enumerate(elements) if e.type == kind]
            cyl = trimesh.creation.cylinder(radius=radius, height=1.0, sections=24)
            lens = np.maximum(lengths[rows], 0.01)
            server.scene.add_batched_meshes_simple(
                f"/lattice/{kind}",
                np.asarray(cyl.vertices, np.float32),
                np.asarray(cyl.faces, np.uint32),
                batched_wxyzs=np.tile(rot, (len(rows), 1)),
                batched_positions=np.stack([starts[rows] + lens / 2, np.zeros(len(rows)), np.zeros(len(rows))], -1),
                batched_scales=np.stack([np.ones(len(rows)), np.ones(len(rows)), lens], -1),
                batched_colors=colour,
                batched_opacities=np.full(len(rows), 0.35 if kind != "bpm" else 0.9),
                lod="off",
                cast_shadow=False,
                receive_shadow=False,
            )
            for k in rows:
                if kind in ("solenoid", "bpm"):  # cavities and drifts unlabelled: labels would overlap
                    z = radius + 0.06 if kind == "solenoid" else -radius - 0.08
                    server.scene.add_label(
                        f"/lattice/labels/{elements[k].name}",
                        elements[k].name,
                        position=(starts[k] + lengths[k] / 2, 0.0, z),
                    )

    def snapshot(self, env: BatchedEnv, env_id: int) -> dict[str, np.ndarray]:
        base = env.unwrapped
        snap = {"currents": base.currents[env_id].cpu().numpy() if hasattr(base, "currents") else np.zeros(0)}
        if self.has_orbit:
            snap["readings"] = base.readings[env_id].cpu().numpy()
        return snap

    def draw(self, snap: dict[str, np.ndarray]) -> None:
        if self.has_orbit and "readings" in snap:
            xy = snap["readings"].reshape(-1, 2)
            pts = np.stack([self.bpm_s, xy[:, 0] * MM_TO_SCENE, xy[:, 1] * MM_TO_SCENE], -1)
            self.centroids.batched_positions = pts
            if len(pts) > 1:
                self.orbit_line.points = np.stack([pts[:-1], pts[1:]], 1)
                self.orbit_plot.data = (self.bpm_s, xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64))
        cur = snap["currents"]
        if len(cur) == len(self.corrector_s) and len(cur):
            frac = cur / self.limits
            pos = np.stack(
                [self.corrector_s, np.full(len(cur), 0.12), np.where(frac < 0, frac * BAR_HEIGHT, 0) + 0.1], -1
            )
            self.bars.batched_positions = pos
            self.bars.batched_scales = np.stack(
                [np.ones(len(cur)), np.ones(len(cur)), np.maximum(np.abs(frac) * BAR_HEIGHT, 1e-3)], -1
            )

    def metrics(self, env: BatchedEnv, env_id: int, info: dict[str, Any]) -> dict[str, float]:
        out = {k: float(info[k][env_id]) for k in ("orbit_rms_mm", "transmission") if k in info}
        out["machine_evaluations"] = float(env.unwrapped.machine_evaluations[env_id])
        return out


def _sphere(radius: float) -> tuple[np.ndarray, np.ndarray]:
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=radius)
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.uint32)


def make_scene(server: Any, env: BatchedEnv) -> Scene:
    return BeamScene(server, env)
