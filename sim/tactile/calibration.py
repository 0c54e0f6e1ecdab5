"""Visuotactile calibration profiles: the file format, loading, and the tools that make them.

A *profile* says how one kind of camera-based tactile sensor (GelSight R1.5, GelSight Mini,
DIGIT, or your own unit) turns the gel's shape into colour. It is one ``.npz`` file:

============== ======================== ===================================================
key            dtype / shape            meaning
============== ======================== ===================================================
``format``     str                      ``"embodied-tactile-profile"``
``version``    int                      ``1``
``name``       str                      profile name (``"gelsight_r15"``, ...)
``background`` uint8 (H, W, 3), RGB     the sensor's image with nothing touching it
``pixel_size`` float (m)                gel area seen by one background pixel (square)
``lookup``     float32 (M, D, 3, 6)     colour change per slope bin, see below
``max_slope``  float (rad)              slope angle at the centre of the last magnitude bin
``description`` str                     how it was made (free text)
============== ======================== ===================================================

The lookup (Taxim's calibrated shading, in our own layout): the gel's depth map ``d(x, y)`` (m,
positive into the gel) has the gradient ``g = grad d`` (dimensionless). Its *slope angle*
``theta = atan(|g|)`` picks magnitude bin ``m = min(round(theta / step), M - 1)`` with
``step = max_slope / (M - 1)`` (bin centres 0, step, ..., max_slope; bin 0 is the flat gel), and
its *direction* ``phi = atan2(g_y, g_x)`` picks bin ``k = floor((phi + pi) / (2 pi) * D) mod D``.
Each bin and colour channel (R, G, B) holds six coefficients ``c`` of a quadratic in the
pixel's normalised position ``u = 2 (col + 0.5) / W - 1``, ``v = 2 (row + 0.5) / H - 1``:
``delta = c0 + c1 u + c2 v + c3 u^2 + c4 u v + c5 v^2`` (uint8 levels), and the pixel is
``clip(round(background + delta), 0, 255)``. Normalised positions make one table serve every
image resolution. Bin 0 (no slope) must be all zero: the undeformed gel *is* the background.

Tools here:

- :func:`load_profile` / :func:`save_profile`: read and write the format; a malformed or
  mismatched file raises :class:`ProfileError` naming the file and the problem.
- :func:`fit_lookup`: least-squares fit of the table from samples (position, gradient, colour
  change), shared by the shipped-profile generator (``scripts/make_tactile_profiles.py``) and
- :func:`calibrate_from_ball_presses`: Taxim's procedure for a real sensor. Press a ball of known
  radius into the gel a few times, give the images and a no-contact image; each contact circle
  is found with OpenCV (:func:`detect_contact_circle`), the gel's gradient inside it follows
  from the ball's geometry, and the samples are binned and fitted.
- :func:`track_markers` / :func:`match_markers`: marker-dot centroids in a real (or simulated)
  image, for marker-based shear sensing.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

PROFILE_FORMAT = "embodied-tactile-profile"
PROFILE_VERSION = 1
NUM_COEFFS = 6

__all__ = [
    "ImageProfile",
    "ProfileError",
    "calibrate_from_ball_presses",
    "detect_contact_circle",
    "fit_lookup",
    "load_profile",
    "match_markers",
    "profile_path",
    "save_profile",
    "slope_bins",
    "track_markers",
]


class ProfileError(ValueError):
    """A tactile image profile file is missing, malformed, or does not fit the sensor config."""


@dataclass
class ImageProfile:
    """One sensor kind's calibrated shading (see the module docstring for the fields)."""

    name: str
    background: np.ndarray
    """uint8 (H, W, 3) RGB no-contact image at the profile's native resolution."""
    pixel_size: float
    """Metres of gel per native pixel."""
    lookup: np.ndarray
    """float32 (n_mag, n_dir, 3, 6) quadratic coefficients per slope bin and channel."""
    max_slope: float
    """Slope angle (rad) at the centre of the last magnitude bin."""
    description: str = ""

    @property
    def resolution(self) -> tuple[int, int]:
        """Native (H, W)."""
        return int(self.background.shape[0]), int(self.background.shape[1])

    @property
    def n_mag(self) -> int:
        return int(self.lookup.shape[0])

    @property
    def n_dir(self) -> int:
        return int(self.lookup.shape[1])


def profile_path(name: str) -> Path:
    """Path of a shipped profile ``assets/tactile/<name>.npz`` (it may not exist)."""
    from embodied.assets import ASSETS_DIR

    return ASSETS_DIR / "tactile" / f"{name}.npz"


def _fail(source: str | Path, problem: str) -> ProfileError:
    return ProfileError(f"tactile profile {str(source)!r}: {problem}")


def validate_profile(profile: ImageProfile, source: str | Path = "<memory>") -> ImageProfile:
    """Check every field's type, shape and range; raise :class:`ProfileError` naming the problem."""
    bg, lut = profile.background, profile.lookup
    if not isinstance(bg, np.ndarray) or bg.dtype != np.uint8 or bg.ndim != 3 or bg.shape[2] != 3:
        what = f"{bg.dtype} {bg.shape}" if isinstance(bg, np.ndarray) else type(bg).__name__
        raise _fail(source, f"'background' must be uint8 (H, W, 3) RGB, got {what}")
    if bg.shape[0] < 2 or bg.shape[1] < 2:
        raise _fail(source, f"'background' must be at least 2x2 pixels, got {bg.shape[:2]}")
    if not isinstance(lut, np.ndarray) or lut.ndim != 4 or lut.shape[2:] != (3, NUM_COEFFS):
        what = f"shape {lut.shape}" if isinstance(lut, np.ndarray) else type(lut).__name__
        raise _fail(source, f"'lookup' must be (n_mag, n_dir, 3, {NUM_COEFFS}), got {what}")
    if lut.shape[0] < 2 or lut.shape[1] < 1:
        raise _fail(source, f"'lookup' needs >= 2 magnitude bins and >= 1 direction bin, got {lut.shape[:2]}")
    if not np.issubdtype(lut.dtype, np.floating) or not np.isfinite(lut).all():
        raise _fail(source, "'lookup' must hold finite floats")
    if np.any(lut[0] != 0):
        raise _fail(source, "'lookup' bin 0 (flat gel) must be all zero: the undeformed gel is the background")
    ps = profile.pixel_size
    if not isinstance(ps, float) or not math.isfinite(ps) or not 1e-7 <= ps <= 1e-2:
        raise _fail(source, f"'pixel_size' must be a length in metres in [1e-7, 1e-2], got {ps!r}")
    ms = profile.max_slope
    if not isinstance(ms, float) or not 0.0 < ms < math.pi / 2:
        raise _fail(source, f"'max_slope' must be an angle in (0, pi/2) rad, got {ms!r}")
    profile.lookup = np.ascontiguousarray(lut, dtype=np.float32)
    profile.background = np.ascontiguousarray(bg)
    return profile


def save_profile(profile: ImageProfile, path: str | Path) -> Path:
    """Write ``profile`` to ``path`` (.npz, compressed) after validating it."""
    validate_profile(profile, path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # a file handle keeps numpy from appending a second ".npz"
        np.savez_compressed(
            fh,
            format=np.str_(PROFILE_FORMAT),
            version=np.int64(PROFILE_VERSION),
            name=np.str_(profile.name),
            background=profile.background,
            pixel_size=np.float64(profile.pixel_size),
            lookup=profile.lookup.astype(np.float32),
            max_slope=np.float64(profile.max_slope),
            description=np.str_(profile.description),
        )
    return path


def load_profile(
    name_or_path: str | Path,
    expect_resolution: tuple[int, int] | None = None,
    expect_pixel_size: float | None = None,
) -> ImageProfile:
    """Load a profile by shipped name (``"gelsight_r15"``, ``"gelsight_mini"``, ``"digit"``) or path.

    ``expect_resolution`` (H, W) and ``expect_pixel_size`` (m), when given, must match the file's
    background and pixel size (the sensor config's profile table), else :class:`ProfileError`.
    """
    text = str(name_or_path)
    path = Path(text) if (text.endswith(".npz") or "/" in text or "\\" in text) else profile_path(text)
    if not path.is_file():
        shipped = sorted(p.stem for p in profile_path("x").parent.glob("*.npz"))
        raise ProfileError(
            f"tactile profile {str(path)!r}: no such file (shipped profiles: {shipped}; "
            "regenerate them with scripts/make_tactile_profiles.py)"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, AttributeError) as err:
        raise _fail(path, f"not a readable .npz file ({type(err).__name__}: {err})") from None
    required = ("format", "version", "name", "background", "pixel_size", "lookup", "max_slope")
    missing = [k for k in required if k not in arrays]
    if missing:
        raise _fail(path, f"missing keys {missing} (has {sorted(arrays)}); write it with save_profile")
    if str(arrays["format"]) != PROFILE_FORMAT:
        raise _fail(path, f"'format' is {str(arrays['format'])!r}, expected {PROFILE_FORMAT!r}")
    try:
        version = int(arrays["version"])
    except (TypeError, ValueError):
        raise _fail(path, f"'version' must be an int, got {arrays['version']!r}") from None
    if version != PROFILE_VERSION:
        raise _fail(path, f"'version' is {version}, this code reads version {PROFILE_VERSION}")
    try:
        pixel_size = float(arrays["pixel_size"])
        max_slope = float(arrays["max_slope"])
    except (TypeError, ValueError):
        raise _fail(path, "'pixel_size' and 'max_slope' must be scalar numbers") from None
    profile = ImageProfile(
        name=str(arrays["name"]),
        background=arrays["background"],
        pixel_size=pixel_size,
        lookup=arrays["lookup"],
        max_slope=max_slope,
        description=str(arrays.get("description", "")),
    )
    validate_profile(profile, path)
    if expect_resolution is not None and profile.resolution != tuple(expect_resolution):
        raise _fail(
            path,
            f"background is {profile.resolution[0]}x{profile.resolution[1]} (H x W) but the sensor config "
            f"expects {expect_resolution[0]}x{expect_resolution[1]} for this profile",
        )
    if expect_pixel_size is not None and not math.isclose(profile.pixel_size, expect_pixel_size, rel_tol=1e-4):
        raise _fail(
            path,
            f"pixel_size is {profile.pixel_size:.6g} m but the sensor config expects {expect_pixel_size:.6g} m",
        )
    return profile


# ---------------------------------------------------------------------------------------------
# Binning and fitting


def slope_bins(
    gx: np.ndarray, gy: np.ndarray, n_mag: int, n_dir: int, max_slope: float
) -> tuple[np.ndarray, np.ndarray]:
    """(magnitude bin, direction bin) of depth gradients ``(gx, gy)``; see the module docstring.

    Computed in float32 like the Warp kernel, so both pick the same bin except at exact ties.
    """
    gx = np.asarray(gx, dtype=np.float32)
    gy = np.asarray(gy, dtype=np.float32)
    theta = np.arctan(np.sqrt(gx * gx + gy * gy))
    step = np.float32(max_slope / (n_mag - 1))
    mag = np.minimum(np.floor(theta / step + np.float32(0.5)).astype(np.int64), n_mag - 1)
    phi = np.arctan2(gy, gx)
    direction = np.floor((phi + np.float32(math.pi)) * np.float32(n_dir / (2.0 * math.pi))).astype(np.int64)
    direction = np.mod(direction, n_dir)
    return mag, direction


def poly_basis(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(..., 6) basis ``[1, u, v, u^2, u v, v^2]`` of the lookup's quadratic."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)


def pixel_uv(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pixel-centre coordinates ``(u, v)``, each (H, W), in (-1, 1)."""
    u = 2.0 * (np.arange(width) + 0.5) / width - 1.0
    v = 2.0 * (np.arange(height) + 0.5) / height - 1.0
    return np.meshgrid(u, v)


def fit_lookup(
    u: np.ndarray,
    v: np.ndarray,
    gx: np.ndarray,
    gy: np.ndarray,
    delta: np.ndarray,
    n_mag: int,
    n_dir: int,
    max_slope: float,
    ridge: float = 1e-3,
    min_samples: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares lookup table from samples.

    Args:
        u, v: (n,) normalised pixel positions in [-1, 1].
        gx, gy: (n,) depth gradient at those pixels (dimensionless).
        delta: (n, 3) colour change (levels, image minus background).
        ridge: Tikhonov weight (per sample) on the five position-dependent coefficients, so a bin
            seen over a small patch of the image falls back towards a constant colour.
        min_samples: bins with fewer samples are filled from their nearest fitted neighbours.

    Returns:
        lookup (n_mag, n_dir, 3, 6) float32 with bin 0 zero, and counts (n_mag, n_dir) of samples.
    """
    u, v, gx, gy = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (u, v, gx, gy))
    delta = np.asarray(delta, dtype=np.float64).reshape(-1, 3)
    if not (len(u) == len(v) == len(gx) == len(gy) == len(delta)):
        raise ValueError("fit_lookup: u, v, gx, gy and delta must hold the same number of samples")
    mag, direction = slope_bins(gx, gy, n_mag, n_dir, max_slope)
    nb = n_mag * n_dir
    idx = mag * n_dir + direction
    basis = poly_basis(u, v)  # (n, 6)
    counts = np.bincount(idx, minlength=nb).astype(np.float64)
    # normal equations per bin, accumulated with bincount (one pass per matrix entry)
    ata = np.empty((nb, NUM_COEFFS, NUM_COEFFS))
    for i in range(NUM_COEFFS):
        for j in range(i, NUM_COEFFS):
            ata[:, i, j] = ata[:, j, i] = np.bincount(idx, weights=basis[:, i] * basis[:, j], minlength=nb)
    atb = np.empty((nb, NUM_COEFFS, 3))
    for i in range(NUM_COEFFS):
        for c in range(3):
            atb[:, i, c] = np.bincount(idx, weights=basis[:, i] * delta[:, c], minlength=nb)
    reg = np.diag([1e-9, 1.0, 1.0, 1.0, 1.0, 1.0]) * ridge
    good = counts >= min_samples
    coeffs = np.zeros((nb, NUM_COEFFS, 3))
    if good.any():
        lhs = ata[good] + reg[None] * np.maximum(counts[good], 1.0)[:, None, None]
        coeffs[good] = np.linalg.solve(lhs, atb[good])
    table = coeffs.transpose(0, 2, 1).reshape(n_mag, n_dir, 3, NUM_COEFFS)
    filled = good.reshape(n_mag, n_dir).copy()
    filled[0] = True
    table[0] = 0.0
    table = _fill_empty_bins(table, filled)
    return table.astype(np.float32), counts.reshape(n_mag, n_dir)


def _fill_empty_bins(table: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Give every unfitted bin the mean of its fitted neighbours, growing outwards until all are
    set (directions wrap around; magnitudes do not). The flat bin 0 is always "fitted" (zero)."""
    table = table.copy()
    filled = filled.copy()
    filled[0] = True
    while not filled.all():
        acc = np.zeros_like(table)
        cnt = np.zeros(filled.shape)
        for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
            src = np.roll(filled, shift, axis=axis)
            val = np.roll(table, shift, axis=axis)
            if axis == 0:
                src[0 if shift == 1 else -1] = False
            acc += np.where(src[..., None, None], val, 0.0)
            cnt += src
        new = (~filled) & (cnt > 0)
        table[new] = acc[new] / cnt[new][..., None, None]
        filled |= new
    table[0] = 0.0
    return table


# ---------------------------------------------------------------------------------------------
# Ball-press calibration (Taxim's procedure)


def _diff_magnitude(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    diff = image.astype(np.float32) - background.astype(np.float32)
    return np.sqrt((diff * diff).sum(axis=-1))


def detect_contact_circle(
    image: np.ndarray, background: np.ndarray, threshold: float | None = None
) -> tuple[float, float, float]:
    """Centre ``(x, y)`` (pixels: column, row) and radius (pixels) of a ball's contact patch.

    The colour change is strongest on the patch's rim and fades at its flat centre, so the
    changed pixels form a ring: OpenCV finds its outer contour and the smallest circle around
    it. ``threshold`` (levels of RGB change) defaults to a quarter of the largest change.
    Raises ValueError when nothing changed.
    """
    _check_rgb(image, "image")
    _check_rgb(background, "background")
    if image.shape != background.shape:
        raise ValueError(f"image {image.shape} and background {background.shape} differ in shape")
    mag = cv2.GaussianBlur(_diff_magnitude(image, background), (3, 3), 0)
    peak = float(mag.max())
    if peak < 3.0:
        raise ValueError("detect_contact_circle: the image equals its background (no contact to find)")
    thr = 0.25 * peak if threshold is None else float(threshold)
    mask = (mag > thr).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        raise ValueError("detect_contact_circle: no contact region above the threshold")
    biggest = max(contours, key=cv2.contourArea)
    (cx, cy), radius = cv2.minEnclosingCircle(biggest)
    # the gel's smoothing spreads the rim outwards by a pixel or two; the default rim_fraction
    # of ball_press_samples keeps the samples clear of it
    return float(cx), float(cy), float(radius)


def ball_press_samples(
    image: np.ndarray,
    background: np.ndarray,
    ball_radius: float,
    pixel_size: float,
    circle: tuple[float, float, float] | None = None,
    rim_fraction: float = 0.85,
) -> dict[str, np.ndarray]:
    """Calibration samples from one ball press: positions, known gradients, colour changes.

    Inside the contact circle of radius ``a`` the gel follows the ball (radius ``R``), so at
    distance ``r`` from the centre its depth gradient is ``-(x - cx, y - cy) / sqrt(R^2 - r^2)``
    (pixels cancel). Pixels beyond ``rim_fraction * a`` are left out: the gel's own smoothing
    blurs the rim.
    """
    h, w = background.shape[:2]
    cx, cy, a = circle if circle is not None else detect_contact_circle(image, background)
    r_ball = ball_radius / pixel_size
    if a >= r_ball:
        raise ValueError(
            f"contact radius {a:.1f} px is not smaller than the ball's {r_ball:.1f} px: check ball_radius "
            f"({ball_radius} m) and pixel_size ({pixel_size} m)"
        )
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = xs - cx, ys - cy
    r2 = dx * dx + dy * dy
    inside = r2 < (rim_fraction * a) ** 2
    s = np.sqrt(r_ball * r_ball - r2[inside])
    u, v = pixel_uv(h, w)
    delta = image.astype(np.float64) - background.astype(np.float64)
    return {
        "u": u[inside],
        "v": v[inside],
        "gx": -dx[inside] / s,
        "gy": -dy[inside] / s,
        "delta": delta[inside],
    }


def calibrate_from_ball_presses(
    images: list[np.ndarray],
    background: np.ndarray,
    ball_radius: float,
    pixel_size: float,
    name: str = "calibrated",
    n_mag: int = 32,
    n_dir: int = 32,
    max_slope: float | None = None,
    rim_fraction: float = 0.85,
) -> ImageProfile:
    """Fit a profile from RGB images of a ball (radius in m) pressed into the sensor.

    Args:
        images: uint8 (H, W, 3) RGB images, one ball press each, anywhere on the gel.
        background: uint8 (H, W, 3) RGB image with nothing touching the gel.
        pixel_size: metres of gel per pixel (measure it with a ruler or a known object).
        max_slope: slope angle (rad) of the last magnitude bin; default: the steepest sample.
    Returns:
        a validated :class:`ImageProfile`; save it with :func:`save_profile`.
    """
    _check_rgb(background, "background")
    if not images:
        raise ValueError("calibrate_from_ball_presses: give at least one ball-press image")
    parts: list[dict[str, np.ndarray]] = []
    for i, img in enumerate(images):
        _check_rgb(img, f"images[{i}]")
        if img.shape != background.shape:
            raise ValueError(f"images[{i}] has shape {img.shape}, the background {background.shape}")
        parts.append(ball_press_samples(img, background, ball_radius, pixel_size, rim_fraction=rim_fraction))
    s = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if max_slope is None:
        max_slope = float(np.arctan(np.hypot(s["gx"], s["gy"]).max()))
    lookup, _ = fit_lookup(s["u"], s["v"], s["gx"], s["gy"], s["delta"], n_mag, n_dir, max_slope)
    profile = ImageProfile(
        name=name,
        background=np.ascontiguousarray(background, dtype=np.uint8),
        pixel_size=float(pixel_size),
        lookup=lookup,
        max_slope=float(max_slope),
        description=f"ball-press calibration: {len(images)} images, ball radius {ball_radius} m",
    )
    return validate_profile(profile)


def _check_rgb(img: np.ndarray, what: str) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ValueError(f"{what} must be a uint8 (H, W, 3) RGB image, got {got}")


# ---------------------------------------------------------------------------------------------
# Marker tracking (real-sensor side)


def track_markers(
    image: np.ndarray,
    max_radius: float = 8.0,
    min_area: int = 3,
    contrast: float = 0.3,
    min_darkness: float = 15.0,
) -> np.ndarray:
    """Sub-pixel centroids ``(x, y)`` (column, row; float, (M, 2)) of dark marker dots.

    The gel's local brightness comes from a grey-level closing (which erases dots up to
    ``max_radius`` pixels); pixels darker than it by more than ``contrast`` times the darkest
    dot's depth are marker pixels; OpenCV labels them and each dot's centroid is weighted by
    its darkness. An image whose darkest spot is less than ``min_darkness`` grey levels below
    its surroundings has no markers (empty result). Sorted by row, then column.
    """
    _check_rgb(image, "image")
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    k = 2 * int(math.ceil(max_radius)) + 3
    local = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    dark = np.maximum(local - gray, 0.0)
    peak = float(dark.max())
    if peak < min_darkness:
        return np.zeros((0, 2))
    mask = (dark > max(contrast * peak, 0.5 * min_darkness)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros((0, 2))
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    wgt = dark[ys, xs].astype(np.float64)
    tot = np.bincount(lab, weights=wgt, minlength=n)
    cx = np.bincount(lab, weights=wgt * xs, minlength=n)
    cy = np.bincount(lab, weights=wgt * ys, minlength=n)
    keep = (np.arange(n) > 0) & (stats[:, cv2.CC_STAT_AREA] >= min_area) & (tot > 0)
    keep &= stats[:, cv2.CC_STAT_AREA] <= math.pi * (max_radius + 1.0) ** 2
    pts = np.stack([cx[keep] / tot[keep], cy[keep] / tot[keep]], axis=1)
    order = np.lexsort((pts[:, 0], pts[:, 1]))
    return pts[order]


def match_markers(reference: np.ndarray, current: np.ndarray, max_distance: float) -> np.ndarray:
    """Displacement (M, 2) of each reference marker to its nearest current marker; NaN if none is
    within ``max_distance`` pixels."""
    reference = np.asarray(reference, dtype=np.float64).reshape(-1, 2)
    current = np.asarray(current, dtype=np.float64).reshape(-1, 2)
    out = np.full_like(reference, np.nan)
    if len(current) == 0:
        return out
    d = np.linalg.norm(reference[:, None, :] - current[None, :, :], axis=-1)
    j = d.argmin(axis=1)
    ok = d[np.arange(len(reference)), j] <= max_distance
    out[ok] = current[j[ok]] - reference[ok]
    return out
