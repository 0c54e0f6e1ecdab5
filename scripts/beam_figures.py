"""Figures for docs/beam.md: the CM1 twin's orbit along the cryomodule before and after correction.

    .venv/bin/python scripts/beam_figures.py        # writes docs/figures/beam_orbit.png

One error draw of ``Beam/OrbitCorrection-CM1-Twin-v0`` (seed 7), corrected by each controller
(the shipped TBSAC policy through the operators' calibration, the response-matrix SVD baseline,
the model-gradient baseline) until the BPMs read an RMS below 0.5 mm. Top: the beam centroid x
and y along the line (cheetah, tracked element by element through the machine with its hidden
errors), before and after TBSAC's correction, with the BPM readings as markers and the solenoids
shaded. Bottom: orbit RMS as read against machine evaluations spent, for every controller.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import embodied  # noqa: E402
from embodied.assets import asset_path  # noqa: E402
from embodied.policies.beam_baselines import CalibratedPolicy, ModelGradient, ResponseMatrixSVD  # noqa: E402
from embodied.policies.train import load_policy  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "figures" / "beam_orbit.png"
TASK = "Beam/OrbitCorrection-CM1-Twin-v0"
SEED = 7


def correct(make_controller) -> tuple[torch.Tensor, list[int], list[float], object]:
    """Run a controller on the draw until the orbit reads below 0.5 mm; (final currents, evals, rms, env)."""
    env = embodied.make(TASK, num_envs=1, seed=SEED, success_rms_mm=0.01)  # no termination: keep the settings
    obs, _ = env.reset(seed=SEED)
    controller = make_controller(env)
    evals, rms = [int(env.machine_evaluations[0])], [float(obs[0, 20:].square().mean().sqrt())]
    for _ in range(49):
        obs, *_, info = env.step(controller.act(obs))
        evals.append(int(info["machine_evaluations"][0]))
        rms.append(float(info["orbit_rms_mm"][0]))
        if rms[-1] < 0.5:
            break
    return env.currents.clone(), evals, rms, env


def orbit_along(env, currents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(s, x, y) of the beam centroid at every element end, in m and mm, through the machine with its errors."""
    model, errors = env.machine.model, env.machine.errors
    model.apply(currents, None, errors)
    with torch.no_grad():
        x, y = model.segment.get_beam_attrs_along_segment(("mu_x", "mu_y"), model.centroid_beam(errors.injection))
    lengths = torch.tensor([float(e.length) for e in model.segment.elements])
    s = torch.cat([torch.zeros(1), lengths.cumsum(0)])
    return s, x.reshape(-1)[: len(s)] * 1e3, y.reshape(-1)[: len(s)] * 1e3


def main() -> None:
    torch.set_num_threads(1)
    policy, _ = load_policy(asset_path("policies", "beam_cm1_tbsac.pt"))
    runs = {
        "TBSAC (shipped, calibrated)": correct(lambda env: CalibratedPolicy(policy, env)),
        "response matrix + SVD": correct(ResponseMatrixSVD),
        "model gradient (cheetah)": correct(ModelGradient),
    }
    currents, _, _, env = runs["TBSAC (shipped, calibrated)"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), gridspec_kw={"height_ratios": [3, 2]})
    model = env.machine.model
    start = 0.0
    for e in model.segment.elements:  # shade the solenoid halves
        length = float(e.length)
        if type(e).__name__ == "Solenoid":
            top.axvspan(start, start + length, color="0.9", lw=0)
        start += length
    bpm_s, start = [], 0.0
    for e in model.segment.elements:
        start += float(e.length)
        if type(e).__name__ == "BPM":
            bpm_s.append(start)
    for label, cur, style in (("before", torch.zeros_like(currents), "--"), ("after TBSAC", currents, "-")):
        s, x, y = orbit_along(env, cur)
        top.plot(s, x, style, color="tab:red", label=f"x {label}")
        top.plot(s, y, style, color="tab:blue", label=f"y {label}")
        bpm = env.machine.model.readings_mm().reshape(-1)  # as the BPMs see it (no noise), offsets included
        top.plot(bpm_s, bpm[0::2], "o", color="tab:red", ms=4, alpha=0.6)
        top.plot(bpm_s, bpm[1::2], "s", color="tab:blue", ms=4, alpha=0.6)
    top.axhline(0.0, color="k", lw=0.5)
    top.set_xlabel("s along CM1 (m); grey: solenoids; markers: BPM readings")
    top.set_ylabel("beam centroid (mm)")
    top.set_title(f"{TASK} (draw seed {SEED}): before and after zero-shot TBSAC", fontsize=10)
    top.legend(ncol=2, fontsize=8)
    for label, (_, evals, rms, _) in runs.items():
        bottom.plot(evals, rms, "o-", ms=3, label=f"{label}: {evals[-1]} evaluations")
    bottom.axhline(1.0, color="k", lw=0.5, ls=":")
    bottom.axhline(0.5, color="k", lw=0.5, ls="--")
    bottom.set_xlabel("machine evaluations (reset reading and probe step included)")
    bottom.set_ylabel("orbit RMS as read (mm)")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(OUT)


if __name__ == "__main__":
    main()
