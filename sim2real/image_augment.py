"""Image augmentation for tactile (or any camera) images: the visual half of sim-to-real.

Real visuotactile sensors differ from simulation, and from each other, in colour (LED colours,
gel coating), brightness, where the gel sits in the camera's view, and how that drifts. A policy
trained on one fixed rendering fails on a real sensor; TacSL's fix is heavy augmentation. The
operations, each a pure function on ``(..., 3, H, W)`` uint8 images with per-env parameters:

================== ================================================ ============================
op                  what                                             drawn
================== ================================================ ============================
channel swap        a random permutation of R, G, B                  per env, per episode
colour jitter       brightness offset ``U(-b, b) * 255``; contrast    per env, per episode
                    ``U(1-c, 1+c)`` about the image mean; saturation
                    ``U(1-s, 1+s)`` about the grey value; per-channel
                    gain ``U(1-g, 1+g)``
calibration shift   the whole image translated by integer pixels in   per env, per episode
                    ``[-shift, shift]`` (edges repeated): the gel
                    seen off-centre, as after re-mounting a sensor
random crop         a window of ``(1 - crop)`` of each side at a      per env, per step
                    random place, resized back (nearest pixel), so
                    the shape is kept
================== ================================================ ============================

Both pads of an env share its parameters (one sensor kind). :func:`full_augmentation` gives the
ranges the tactile tasks document; ``ImageAugmentCfg()`` is all off.

:class:`ImageAugmenter` holds the per-env parameters (the tactile tasks use it inside ``step``,
drawing from a generator of their own seeded by ``reset(seed=...)``, so augmented rollouts stay
seeded); :class:`ImageAugmentation` is the same as a :class:`~embodied.sim.env.BatchedWrapper`
for any task with image entries in a dict observation, with its own generator so it never
changes the task's random stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from embodied.sim.env import BatchedEnv, BatchedWrapper
from embodied.sim2real._common import derived_seed, env_ids_tensor

_GREY = (0.299, 0.587, 0.114)
"""Luma weights of R, G, B (ITU-R BT.601), for saturation."""


@dataclass
class ImageAugmentCfg:
    """Ranges of the augmentation ops (all off by default; see the module docstring)."""

    channel_swap: bool = False
    """Permute the colour channels at random, per episode."""
    brightness: float = 0.0
    """Additive brightness offset drawn in [-b, b] (fraction of 255)."""
    contrast: float = 0.0
    """Contrast factor drawn in [1 - c, 1 + c] (about each image's mean)."""
    saturation: float = 0.0
    """Saturation factor drawn in [1 - s, 1 + s] (about each pixel's grey value)."""
    channel_gain: float = 0.0
    """Per-channel gain drawn in [1 - g, 1 + g] (a colour cast)."""
    crop: float = 0.0
    """Fraction of each side a random crop removes (per step), in [0, 0.5); resized back."""
    calibration_shift: int = 0
    """Largest translation (pixels) of the whole image, per episode."""
    keys: tuple[str, ...] = ("tactile_image",)
    """Dict observation entries that are images ``(N, ..., 3, H, W)`` uint8."""

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation", "channel_gain"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"ImageAugmentCfg.{name} must be in [0, 1], got {value!r}")
        if not (math.isfinite(self.crop) and 0.0 <= self.crop < 0.5):
            raise ValueError(f"ImageAugmentCfg.crop must be in [0, 0.5), got {self.crop!r}")
        if not (isinstance(self.calibration_shift, int) and 0 <= self.calibration_shift <= 64):
            raise ValueError(
                f"ImageAugmentCfg.calibration_shift must be an int in [0, 64], got {self.calibration_shift!r}"
            )

    @property
    def enabled(self) -> bool:
        return bool(
            self.channel_swap
            or self.brightness
            or self.contrast
            or self.saturation
            or self.channel_gain
            or self.crop
            or self.calibration_shift
        )


def full_augmentation() -> ImageAugmentCfg:
    """The heavy augmentation the tactile tasks document for sim-to-real (TacSL-style)."""
    return ImageAugmentCfg(
        channel_swap=True,
        brightness=0.15,
        contrast=0.3,
        saturation=0.3,
        channel_gain=0.15,
        crop=0.1,
        calibration_shift=3,
    )


# ---------------------------------------------------------------------------------------- pure ops
def _per_env(x: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Per-env values (N,) shaped to broadcast over images (N, ..., 3, H, W)."""
    return x.reshape(x.shape[0], *([1] * (images.dim() - 1)))


def channel_swap(images: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Output channel c of env n is input channel ``perm[n, c]``; ``perm`` (N, 3) long."""
    shape = images.shape
    flat = images.reshape(shape[0], -1, 3, shape[-2] * shape[-1])
    idx = perm[:, None, :, None].expand(shape[0], flat.shape[1], 3, flat.shape[-1])
    return torch.gather(flat, 2, idx).reshape(shape)


def colour_jitter(
    images: torch.Tensor,
    brightness: torch.Tensor,
    contrast: torch.Tensor,
    saturation: torch.Tensor,
    gain: torch.Tensor,
) -> torch.Tensor:
    """Per env: gain (N, 3) per channel, saturation (N,) about the grey value, contrast (N,) about
    the image mean, then a brightness offset (N,) in units of 255; clipped to [0, 255] uint8."""
    x = images.float()
    x = x * gain.reshape(gain.shape[0], *([1] * (x.dim() - 4)), 3, 1, 1)
    w = torch.tensor(_GREY, device=x.device).reshape(3, 1, 1)
    grey = (x * w).sum(-3, keepdim=True)
    x = grey + _per_env(saturation, x) * (x - grey)
    mean = x.mean((-3, -2, -1), keepdim=True)
    x = mean + _per_env(contrast, x) * (x - mean)
    x = x + 255.0 * _per_env(brightness, x)
    return x.clamp(0.0, 255.0).round().to(torch.uint8)


def crop_and_shift(images: torch.Tensor, crop: float, offset: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Per env: a window of ``1 - crop`` of each side whose top-left corner sits at ``offset``
    (N, 2) in [0, 1] of the free range, resized back to (H, W) by nearest pixel; and the whole
    image translated by ``shift`` (N, 2) integer pixels (rows, cols), edges repeated."""
    n, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    dev = images.device
    sizes = torch.tensor([h, w], device=dev, dtype=torch.float32)
    win = sizes * (1.0 - crop)
    start = offset * (sizes - win)  # (N, 2)
    r = torch.arange(h, device=dev, dtype=torch.float32)
    c = torch.arange(w, device=dev, dtype=torch.float32)
    rows = (start[:, :1] + (r + 0.5) * (win[0] / h) - 0.5).round().long() - shift[:, :1].long()
    cols = (start[:, 1:] + (c + 0.5) * (win[1] / w) - 0.5).round().long() - shift[:, 1:].long()
    rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)  # (N, H), (N, W)
    flat = images.reshape(n, -1, h, w)
    out = torch.gather(flat, 2, rows[:, None, :, None].expand(n, flat.shape[1], h, w))
    out = torch.gather(out, 3, cols[:, None, None, :].expand(n, flat.shape[1], h, w))
    return out.reshape(images.shape)


# ---------------------------------------------------------------------------------------- per-env state
class ImageAugmenter:
    """Per-env augmentation parameters: :meth:`reset` draws a new episode's, :meth:`new_step` a
    new crop window; calling it augments images (N, ..., 3, H, W) uint8."""

    def __init__(self, cfg: ImageAugmentCfg, num_envs: int, device: str | torch.device = "cpu") -> None:
        self.cfg = cfg
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.state = {
            "perm": torch.arange(3, device=self.device).repeat(num_envs, 1),
            "brightness": torch.zeros(num_envs, device=self.device),
            "contrast": torch.ones(num_envs, device=self.device),
            "saturation": torch.ones(num_envs, device=self.device),
            "gain": torch.ones(num_envs, 3, device=self.device),
            "shift": torch.zeros(num_envs, 2, dtype=torch.long, device=self.device),
            "offset": torch.full((num_envs, 2), 0.5, device=self.device),
        }
        """Current parameters per env (see the module docstring)."""

    def reset(self, env_ids: torch.Tensor, generator: torch.Generator) -> None:
        """Draw new episode parameters for ``env_ids`` (and a new crop window)."""
        c, k, s, dev = self.cfg, len(env_ids), self.state, self.device
        if k == 0 or not c.enabled:
            return

        def u(*shape: int) -> torch.Tensor:
            return torch.rand((k, *shape), generator=generator, device=dev) * 2.0 - 1.0

        if c.channel_swap:
            s["perm"][env_ids] = torch.argsort(torch.rand((k, 3), generator=generator, device=dev), dim=-1)
        s["brightness"][env_ids] = c.brightness * u()
        s["contrast"][env_ids] = 1.0 + c.contrast * u()
        s["saturation"][env_ids] = 1.0 + c.saturation * u()
        s["gain"][env_ids] = 1.0 + c.channel_gain * u(3)
        if c.calibration_shift:
            s["shift"][env_ids] = torch.randint(
                -c.calibration_shift, c.calibration_shift + 1, (k, 2), generator=generator, device=dev
            )
        if c.crop:
            s["offset"][env_ids] = torch.rand((k, 2), generator=generator, device=dev)

    def new_step(self, generator: torch.Generator) -> None:
        """Draw a new crop window for every env (the crop moves every step)."""
        if self.cfg.crop:
            self.state["offset"] = torch.rand((self.num_envs, 2), generator=generator, device=self.device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        c, s = self.cfg, self.state
        if not c.enabled:
            return images
        if c.channel_swap:
            images = channel_swap(images, s["perm"])
        if c.brightness or c.contrast or c.saturation or c.channel_gain:
            images = colour_jitter(images, s["brightness"], s["contrast"], s["saturation"], s["gain"])
        if c.crop or c.calibration_shift:
            images = crop_and_shift(images, c.crop, s["offset"], s["shift"])
        return images

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.state = {k: torch.as_tensor(v).clone().to(self.device) for k, v in state.items()}


class ImageAugmentation(BatchedWrapper):
    """Augment the image entries (``cfg.keys``) of a dict-observation task, per env and episode.

    ``info["final_obs"]`` carries the finished episode's augmentation, ``obs`` the new one's, as
    :class:`~embodied.sim2real.noise.ObservationNoise` does. Draws come from the wrapper's own
    generator, reseeded by ``reset(seed=...)``."""

    def __init__(self, env: BatchedEnv, cfg: ImageAugmentCfg, seed: int | None = None) -> None:
        super().__init__(env)
        space = env.single_observation_space
        missing = [k for k in cfg.keys if not hasattr(space, "spaces") or k not in space.spaces]
        if missing:
            raise ValueError(f"{env.unwrapped.task_id}: ImageAugmentation keys {missing} are not observation entries")
        self.cfg = cfg
        self.augmenter = ImageAugmenter(cfg, env.num_envs, env.device)
        self.aug_generator = torch.Generator(device=env.device)
        if seed is None:  # as ObservationNoise: seeded from the env until reset(seed=...)
            seed = int(env.unwrapped.generator.initial_seed())
        self.aug_generator.manual_seed(derived_seed(seed, "image_augment"))

    def _apply(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: (self.augmenter(v) if k in self.cfg.keys else v) for k, v in obs.items()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None, env_ids: torch.Tensor | None = None
    ):
        if seed is not None:
            self.aug_generator.manual_seed(derived_seed(seed, "image_augment"))
        obs, info = self.env.reset(seed=seed, options=options, env_ids=env_ids)
        self.augmenter.reset(env_ids_tensor(self, env_ids), self.aug_generator)
        return self._apply(obs), info

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.augmenter.new_step(self.aug_generator)
        info = dict(info)
        info["final_obs"] = self._apply(info["final_obs"])
        done = (terminated | truncated).nonzero().flatten()
        self.augmenter.reset(done, self.aug_generator)
        return self._apply(obs), reward, terminated, truncated, info

    def _wrapper_state(self) -> dict[str, Any]:
        return {"augmenter": self.augmenter.state_dict(), "generator": self.aug_generator.get_state()}

    def _load_wrapper_state(self, state: dict[str, Any]) -> None:
        self.augmenter.load_state_dict(state["augmenter"])
        self.aug_generator.set_state(state["generator"])
