"""Regenerate the shipped visuotactile profiles in ``assets/tactile/`` (deterministic).

    .venv/bin/python scripts/make_tactile_profiles.py            # all three
    .venv/bin/python scripts/make_tactile_profiles.py digit      # one
    .venv/bin/python scripts/make_tactile_profiles.py --out DIR  # somewhere else

No real sensor was at hand, so each profile is *calibrated against a light model* of the
sensor rather than against photographs, with the same fitting code a user runs on a real
sensor (``embodied.sim.tactile.calibration.fit_lookup``), so the table has the same format and
the same approximations (binning, a quadratic over the image) as a real calibration.

The light model: a reflective gel surface seen orthographically from the camera below it and
lit by three coloured point LEDs sitting at the gel's rim, a few millimetres below the surface
(so light grazes it, which is what makes slopes visible). Each LED adds, per colour channel,
``gain * colour * falloff * (lambert + ks * phong)`` with ``falloff = (rho / distance)^2``;
an ambient term, a radial vignette and a faint smooth texture (fixed seed) finish the
background. The LED layouts follow the sensors' public descriptions only roughly (GelSight:
coloured LEDs around the gel, 120 degrees apart; GelSight Mini: a smaller, brighter gel;
DIGIT: the LED board along one short edge, lighting the gel from one end), so these profiles
look like their sensors but are not measurements of any one unit: calibrate your own with
``calibrate_from_ball_presses`` for sim-to-real work.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from embodied.sim.tactile.calibration import ImageProfile, fit_lookup, pixel_uv, save_profile
from embodied.sim.tactile.config import PROFILES

log = logging.getLogger("make_tactile_profiles")

N_MAG = 48
N_DIR = 64
MAX_SLOPE = math.radians(60.0)
SAMPLES_PER_BIN = 9  # a 9x9 grid of image positions per slope bin


@dataclass(frozen=True)
class Led:
    colour: tuple[float, float, float]
    """RGB weight in [0, 1]."""
    azimuth: float
    """Direction of the LED from the gel's centre (degrees, 0 = +x, 90 = +y)."""


@dataclass(frozen=True)
class Optics:
    name: str
    leds: tuple[Led, ...]
    rho: float
    """Horizontal distance (mm) of the LEDs from the gel's centre."""
    depth: float
    """Depth (mm) of the LEDs below the gel surface."""
    ambient: tuple[float, float, float]
    gain: float
    specular: float
    shininess: float
    vignette: float
    texture: float
    seed: int
    description: str


SENSORS = {
    "gelsight_r15": Optics(
        name="gelsight_r15",
        leds=(Led((1.0, 0.15, 0.1), 90.0), Led((0.1, 1.0, 0.25), 210.0), Led((0.15, 0.3, 1.0), 330.0)),
        rho=26.0,
        depth=9.0,
        ambient=(62.0, 66.0, 74.0),
        gain=150.0,
        specular=0.25,
        shininess=12.0,
        vignette=0.18,
        texture=1.5,
        seed=15,
        description="GelSight R1.5 light model: R/G/B LEDs 120 deg apart around a 28x21 mm gel",
    ),
    "gelsight_mini": Optics(
        name="gelsight_mini",
        leds=(Led((1.0, 0.2, 0.15), 180.0), Led((0.15, 1.0, 0.3), 60.0), Led((0.2, 0.35, 1.0), 300.0)),
        rho=19.0,
        depth=6.5,
        ambient=(78.0, 74.0, 70.0),
        gain=140.0,
        specular=0.2,
        shininess=10.0,
        vignette=0.22,
        texture=1.2,
        seed=21,
        description="GelSight Mini light model: R/G/B LEDs 120 deg apart around a 21x16 mm gel",
    ),
    "digit": Optics(
        name="digit",
        leds=(Led((1.0, 0.1, 0.1), 235.0), Led((0.1, 1.0, 0.15), 270.0), Led((0.1, 0.2, 1.0), 305.0)),
        rho=17.0,
        depth=6.0,
        ambient=(48.0, 50.0, 58.0),
        gain=150.0,
        specular=0.3,
        shininess=14.0,
        vignette=0.12,
        texture=1.8,
        seed=7,
        description="DIGIT light model: R/G/B LEDs on the board along the gel's -y edge (portrait 16x19 mm)",
    ),
}


def camera_normal(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Unit normal (..., 3) of the gel surface z = -d(x, y) on the camera's side (-z)."""
    n = np.stack([-gx, -gy, -np.ones_like(gx)], axis=-1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def radiance(optics: Optics, normal: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """RGB (..., 3) reflected towards the camera at gel points (x, y) mm with ``normal``."""
    out = np.zeros(normal.shape[:-1] + (3,))
    view = np.array([0.0, 0.0, -1.0])
    for led in optics.leds:
        a = math.radians(led.azimuth)
        p = np.array([optics.rho * math.cos(a), optics.rho * math.sin(a), -optics.depth])
        to_led = np.stack([p[0] - x, p[1] - y, np.full_like(x, p[2])], axis=-1)
        dist = np.linalg.norm(to_led, axis=-1, keepdims=True)
        light = to_led / dist
        lam = np.clip((normal * light).sum(-1), 0.0, None)
        half = light + view
        half /= np.linalg.norm(half, axis=-1, keepdims=True)
        spec = np.clip((normal * half).sum(-1), 0.0, None) ** optics.shininess
        falloff = (optics.rho / dist[..., 0]) ** 2
        out += optics.gain * falloff[..., None] * (lam + optics.specular * spec)[..., None] * np.array(led.colour)
    return out


def vignette(optics: Optics, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return 1.0 - optics.vignette * (u * u + v * v) / 2.0


def make_background(optics: Optics, height: int, width: int, pixel_size_mm: float) -> np.ndarray:
    u, v = pixel_uv(height, width)
    x, y = u * width * pixel_size_mm / 2.0, v * height * pixel_size_mm / 2.0
    flat = camera_normal(np.zeros_like(x), np.zeros_like(x))
    img = (np.array(optics.ambient) + radiance(optics, flat, x, y)) * vignette(optics, u, v)[..., None]
    rng = np.random.default_rng(optics.seed)
    grain = cv2.GaussianBlur(rng.standard_normal((height, width, 3)).astype(np.float32), (0, 0), 3.0)
    grain *= optics.texture / max(float(grain.std()), 1e-6)
    return np.clip(np.rint(img + grain), 0, 255).astype(np.uint8)


def calibration_samples(optics: Optics, height: int, width: int, pixel_size_mm: float) -> dict[str, np.ndarray]:
    """Colour change at every slope-bin centre on a grid of image positions (the light model's
    stand-in for ball-press photographs)."""
    step = MAX_SLOPE / (N_MAG - 1)
    theta = np.arange(1, N_MAG) * step
    phi = -math.pi + (np.arange(N_DIR) + 0.5) * 2.0 * math.pi / N_DIR
    g = np.linspace(-1.0 + 1.0 / SAMPLES_PER_BIN, 1.0 - 1.0 / SAMPLES_PER_BIN, SAMPLES_PER_BIN)
    th, ph, uu, vv = np.meshgrid(theta, phi, g, g, indexing="ij")
    th, ph, uu, vv = (a.reshape(-1) for a in (th, ph, uu, vv))
    gx, gy = np.tan(th) * np.cos(ph), np.tan(th) * np.sin(ph)
    x, y = uu * width * pixel_size_mm / 2.0, vv * height * pixel_size_mm / 2.0
    flat = camera_normal(np.zeros_like(x), np.zeros_like(x))
    delta = radiance(optics, camera_normal(gx, gy), x, y) - radiance(optics, flat, x, y)
    delta *= vignette(optics, uu, vv)[:, None]
    return {"u": uu, "v": vv, "gx": gx, "gy": gy, "delta": delta}


def make_profile(name: str) -> ImageProfile:
    optics = SENSORS[name]
    spec = PROFILES[name]
    h, w = spec.resolution
    mm = spec.pixel_size * 1e3
    s = calibration_samples(optics, h, w, mm)
    lookup, counts = fit_lookup(s["u"], s["v"], s["gx"], s["gy"], s["delta"], N_MAG, N_DIR, MAX_SLOPE, ridge=1e-6)
    if (counts[1:] == 0).any():
        raise RuntimeError(f"{name}: some slope bins got no calibration samples")
    return ImageProfile(
        name=name,
        background=make_background(optics, h, w, mm),
        pixel_size=float(spec.pixel_size),
        lookup=lookup,
        max_slope=float(MAX_SLOPE),
        description=optics.description + " (generated by scripts/make_tactile_profiles.py)",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"profiles to write (default: all of {sorted(SENSORS)})")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets" / "tactile")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in args.names or sorted(SENSORS):
        if name not in SENSORS:
            parser.error(f"unknown profile {name!r}; choose from {sorted(SENSORS)}")
        path = save_profile(make_profile(name), args.out / f"{name}.npz")
        log.info("wrote %s (%.0f kB)", path, path.stat().st_size / 1e3)


if __name__ == "__main__":
    main()
