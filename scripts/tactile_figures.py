"""Example pictures of the tactile sensor for docs/tactile.md, written to docs/figures/tactile_*.png.

    .venv/bin/python scripts/tactile_figures.py            # all figures
    .venv/bin/python scripts/tactile_figures.py --out /tmp # somewhere else

Figures (every one computed here by the suite's kernels, nothing drawn by hand):

- ``tactile_images.png``: images of a sphere, a box edge and a cylinder pressed into the gel, for
  each shipped profile (GelSight R1.5, GelSight Mini, DIGIT), at each profile's native resolution.
- ``tactile_pipeline.png``: the image pipeline on one press: depth, blurred depth, slope, image.
- ``tactile_force_fields.png``: force fields as arrows (shear) over a heat map (normal force) for
  a press, a press-and-slide with the velocity (TacSL) shear model, and the same slide with the
  stick-slip model; and the marker image of the stick-slip slide.
- ``tactile_backends.png``: the ``pinch_sphere`` scene pressed and slid in MuJoCo and in
  PyBullet (the engines that import here): total forces over time and the final fields.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import warp as wp  # noqa: E402

wp.config.quiet = True

from embodied.sim.tactile import Box, Cylinder, Sphere, TactileSensorCfg  # noqa: E402
from embodied.sim.tactile.image import field_of_view, image_geometry, marker_layout  # noqa: E402
from embodied.sim.tactile.sensor import TactileSensor  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"
PROFILES = {"gelsight_r15": "GelSight R1.5", "gelsight_mini": "GelSight Mini", "digit": "DIGIT"}


def pose(z: float, quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0), x: float = 0.0) -> torch.Tensor:
    """A (1, 1, 7) pose: position (x, 0, z) in the pad frame (the pad sits at the world origin)."""
    return torch.tensor([[[x, 0.0, z, *quat]]], dtype=torch.float32)


def about_x(angle: float) -> tuple[float, float, float, float]:
    return (math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0)


PAD = pose(0.0)
# Each shape pressed into a flat pad; the pad frame's +z points out of the gel, towards the object.
SHAPES = {
    "sphere (r 6 mm, 1 mm deep)": (Sphere(0.006), pose(0.006 - 0.001)),
    # a 8 mm square bar turned 45 deg about x: one edge (along pad x) presses 0.6 mm in
    "box edge (0.6 mm deep)": (Box((0.02, 0.004, 0.004)), pose(0.004 * math.sqrt(2) - 0.0006, about_x(math.pi / 4))),
    # a cylinder of radius 4 mm lying along pad y (its axis is z: turned 90 deg about x)
    "cylinder (r 4 mm, 0.8 mm deep)": (Cylinder(0.004, 0.02), pose(0.004 - 0.0008, about_x(math.pi / 2))),
}


def render(cfg: TactileSensorCfg, shape, obj_pose: torch.Tensor) -> np.ndarray:
    sensor = TactileSensor(cfg, num_envs=1, num_sensors=1, shapes=[shape])
    return sensor.image(PAD, obj_pose)[0, 0].numpy()


def images_figure(out: Path) -> Path:
    fig, axes = plt.subplots(len(PROFILES), len(SHAPES), figsize=(3.2 * len(SHAPES), 2.9 * len(PROFILES)))
    for i, (profile, title) in enumerate(PROFILES.items()):
        cfg = TactileSensorCfg(profile=profile)  # type: ignore[arg-type]
        fov_w, fov_h = field_of_view(cfg)
        for j, (label, (shape, obj_pose)) in enumerate(SHAPES.items()):
            ax = axes[i, j]
            img = render(cfg, shape, obj_pose)
            ax.imshow(img, extent=(-fov_w / 2e-3, fov_w / 2e-3, fov_h / 2e-3, -fov_h / 2e-3))
            ax.set_title(f"{title}: {label}" if j == 0 else label, fontsize=8)
            ax.set_xlabel("pad x (mm)", fontsize=7)
            ax.tick_params(labelsize=6)
            if j == 0:
                ax.set_ylabel(f"{title}\n{img.shape[1]}x{img.shape[0]} px\npad y (mm)", fontsize=7)
    fig.suptitle("Simulated visuotactile images (shipped light-model profiles, native resolution)", fontsize=10)
    fig.tight_layout()
    path = out / "tactile_images.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pipeline_figure(out: Path) -> Path:
    cfg = TactileSensorCfg(profile="gelsight_r15")
    shape, obj_pose = SHAPES["sphere (r 6 mm, 1 mm deep)"]
    sensor = TactileSensor(cfg, num_envs=1, num_sensors=1, shapes=[shape])
    img = sensor.image(PAD, obj_pose)[0, 0].numpy()
    maps = sensor._imager.last_maps()  # the kernels' own intermediate maps
    depth, blurred = maps["depth"][0, 0].numpy(), maps["blurred"][0, 0].numpy()
    gy, gx = np.gradient(blurred)  # per pixel; the kernel's slope, shown for the picture only
    pitch = cfg.image_pixel_size
    slope = np.degrees(np.arctan(np.hypot(gx, gy) / pitch))
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.0))
    panels = [
        (depth * 1e3, "1. depth (mm): lowest object point per pixel", "viridis"),
        (blurred * 1e3, f"2. blurred ({cfg.blur_kernel}x{cfg.blur_kernel} Gaussian, mm)", "viridis"),
        (slope, "3. slope angle (deg) -> lookup bin", "magma"),
    ]
    for ax, (data, title, cmap) in zip(axes[:3], panels, strict=True):
        im = ax.imshow(data, cmap=cmap)
        ax.set_title(title, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.035)
    axes[3].imshow(img)
    axes[3].set_title("4. shaded: background + calibrated lookup", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Image pipeline, GelSight R1.5 profile, 320x240: a 6 mm sphere pressed 1 mm", fontsize=10)
    fig.tight_layout()
    path = out / "tactile_pipeline.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def slide(shear_model: str, steps: int, speed: float, markers: bool = False) -> tuple[TactileSensor, torch.Tensor]:
    """A 6 mm sphere pressed 0.8 mm into a 20x25 pad and slid along pad x for ``steps`` steps of
    10 ms at ``speed`` (m/s); returns the sensor and the last force field (1, 1, rows, cols, 3)."""
    cfg = TactileSensorCfg(shear_model=shear_model, markers=markers, marker_grid=(14, 18))  # type: ignore[arg-type]
    sensor = TactileSensor(cfg, num_envs=1, num_sensors=1, shapes=[Sphere(0.006)])
    pad_vel = torch.zeros(1, 1, 6)
    obj_vel = torch.zeros(1, 1, 6)
    obj_vel[..., 0] = speed
    x0, dt = -0.5 * speed * steps * 0.01, 0.01
    forces = None
    for k in range(max(steps, 1)):
        obj = pose(0.006 - 0.0008, x=x0 + speed * dt * k)
        forces = sensor.force_field(PAD, pad_vel, obj, obj_vel, dt=dt)
    assert forces is not None
    return sensor, forces


def field_panel(ax, sensor: TactileSensor, forces: torch.Tensor, title: str, vmax: float) -> None:
    f = forces[0, 0].numpy()
    pos = sensor.taxel_positions.numpy() * 1e3  # (rows, cols, 3) mm
    x, y = pos[..., 0], pos[..., 1]
    px, py = sensor.cfg.taxel_pitch
    extent = (x.min() - px * 5e2, x.max() + px * 5e2, y.min() - py * 5e2, y.max() + py * 5e2)
    im = ax.imshow(f[..., 2] * 1e3, origin="lower", extent=extent, cmap="inferno", vmin=0, vmax=vmax * 1e3)
    shear = np.hypot(f[..., 0], f[..., 1])
    on = shear > 1e-3 * max(shear.max(), 1e-12)  # arrows only where there is shear
    if on.any():
        ax.quiver(x[on], y[on], f[..., 0][on], f[..., 1][on], color="cyan", angles="xy", scale_units="xy",
                  scale=shear.max() / (1.5 * px * 1e3), width=0.006)  # fmt: skip
    ax.set_title(f"{title}\nnormal sum {f[..., 2].sum():.3f} N, shear sum {shear.sum():.3f} N", fontsize=8)
    ax.set_xlabel("pad x (mm)", fontsize=7)
    ax.set_ylabel("pad y (mm)", fontsize=7)
    ax.tick_params(labelsize=6)
    plt.colorbar(im, ax=ax, fraction=0.04, label="normal (mN)")


def force_figure(out: Path) -> Path:
    press_sensor, press = slide("velocity", 1, 0.0)
    vel_sensor, vel = slide("velocity", 10, 0.01)
    ss_sensor, ss = slide("stick_slip", 10, 0.01, markers=True)
    vmax = float(max(press[..., 2].max(), vel[..., 2].max(), ss[..., 2].max()))
    fig, grid = plt.subplots(2, 2, figsize=(10.5, 7.6))
    axes = grid.ravel()
    field_panel(axes[0], press_sensor, press, "press (no motion): no shear", vmax)
    field_panel(axes[1], vel_sensor, vel, "press and slide +x at 1 cm/s, velocity model", vmax)
    field_panel(axes[2], ss_sensor, ss, "same slide (1 mm), stick-slip model", vmax)
    fov_w, fov_h = field_of_view(ss_sensor.cfg)
    sphere_x = -0.5 * 0.01 * 10 * 0.01 + 0.01 * 0.01 * 9
    img = ss_sensor.image(PAD, pose(0.006 - 0.0008, x=sphere_x))[0, 0].numpy()
    axes[3].imshow(img, extent=(-fov_w / 2e-3, fov_w / 2e-3, fov_h / 2e-3, -fov_h / 2e-3))
    mx, my, _ = marker_layout(ss_sensor.cfg, image_geometry(ss_sensor.cfg, "sensor"))
    gx, gy = np.meshgrid(mx * 1e3, my * 1e3)
    axes[3].plot(gx.ravel(), gy.ravel(), "+", color="white", ms=5, mew=0.8, label="marker at rest")
    axes[3].set_xlim(-7, 7)
    axes[3].set_ylim(5, -5)
    axes[3].legend(loc="lower right", fontsize=6)
    axes[3].set_title("stick-slip slide: markers (zoomed),\nmoved by shear / kt_spring", fontsize=8)
    axes[3].set_xlabel("pad x (mm)", fontsize=7)
    axes[3].tick_params(labelsize=6)
    fig.suptitle("Force fields, 20x25 taxels, 6 mm sphere 0.8 mm deep:\narrows = shear on the gel, colour = normal",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    path = out / "tactile_force_fields.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def backend_run(backend: str, press_steps: int = 30, slide_steps: int = 70, speed: float = 0.02) -> dict:
    """The ``pinch_sphere`` scene: close both pads on the fixed ball (0.3 s), then slide the hand
    along the palm's y at ``speed`` m/s while squeezing; per step the left pad's totals."""
    from embodied.sim.physics.tactile_rig import TactileRig

    with TactileRig("pinch_sphere", backend=backend, num_envs=1) as rig:
        b = rig.backend
        target = b.hand_state().clone()
        target[:, 6] = 0.0  # opening 0: the servo squeezes the pads onto the ball
        normal, shear, field = [], [], None
        for i in range(press_steps + slide_steps):
            if i >= press_steps:
                target[:, 1] += speed * b.dt
            field = rig.step(target)[0, 0]
            normal.append(float(field[..., 2].sum()))
            shear.append(float(field[..., 0].sum()))
        return {"normal": np.array(normal), "shear": np.array(shear), "field": field, "sensor": rig.sensor,
                "dt": b.dt, "press_steps": press_steps}  # fmt: skip


def backends_figure(out: Path) -> Path:
    from embodied.sim.physics.tactile_rig import available_backends

    names = [b for b in ("mujoco", "pybullet") if b in available_backends()]
    runs = {name: backend_run(name) for name in names}
    fig, axes = plt.subplots(1, 2 + len(names), figsize=(5.0 * (2 + len(names)) * 0.8, 3.6))
    for name, run in runs.items():
        t = np.arange(len(run["normal"])) * run["dt"]
        axes[0].plot(t, run["normal"], label=name)
        axes[1].plot(t, run["shear"], label=name)
    for ax, what in zip(axes[:2], ("total normal force (N)", "total shear along pad x (N)"), strict=True):
        first = next(iter(runs.values()))
        ax.axvline(first["press_steps"] * first["dt"], color="grey", ls=":", lw=1)
        ax.set_xlabel("time (s); slide starts at the dotted line", fontsize=7)
        ax.set_title(f"left pad: {what}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=7)
    vmax = max(float(run["field"][..., 2].max()) for run in runs.values())
    for ax, (name, run) in zip(axes[2:], runs.items(), strict=True):
        field_panel(ax, run["sensor"], run["field"][None, None], f"{name}: left pad at the end of the slide", vmax)
    fig.suptitle("Same scene, two engines: pinch_sphere pressed then slid at 2 cm/s (MuJoCo vs PyBullet)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    path = out / "tactile_backends.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNG files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for make in (images_figure, pipeline_figure, force_figure, backends_figure):
        print(make(args.out))


if __name__ == "__main__":
    main()
