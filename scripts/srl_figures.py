"""FAS curves for docs/srl.md: each method's return against primitive steps per decision, per task.

    .venv/bin/python scripts/srl_figures.py        # reads bench/results/srl.json, writes docs/figures/srl_fas.png

Reads what ``bench/srl.py`` wrote (``<Task>.fas_curves.<method>.<seed>``: [steps per decision,
mean return] pairs) and draws one panel per task: the mean over the seeds present for every
method, SAC with action repeat dashed, SRL solid, the planner dotted, each legend entry with its
mean FAS. The Frequency-Averaged Score is the normalised area under such a curve.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STYLES = {  # method: (colour, line style)
    "sac1": ("C0", "--"), "sac4": ("C1", "--"), "sac8": ("C2", "--"), "sac16": ("C3", "--"),
    "srl4": ("C1", "-"), "srl8": ("C2", "-"), "srl16": ("C3", "-"), "planner": ("k", ":"),
}


def mean_curve(per_seed: dict[str, list[list[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Steps per decision and the return averaged over the seeds (every seed has the same lengths)."""
    curves = np.asarray(list(per_seed.values()), dtype=float)  # (seeds, lengths, 2)
    return curves[0, :, 0], curves[:, :, 1].mean(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "srl.json")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "srl_fas.png")
    args = parser.parse_args()
    report = json.loads(args.results.read_text())
    tasks = [task for task in report.get("budget", {}) if report.get(task, {}).get("fas_curves")]
    if not tasks:
        raise SystemExit(f"no FAS curves in {args.results}: run bench/srl.py first")
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        result = report[task]
        for method, per_seed in result["fas_curves"].items():
            lengths, returns = mean_curve(per_seed)
            colour, style = STYLES.get(method, ("grey", "-"))
            label = f"{method}: FAS {result['fas'][method]:.3f}"
            ax.plot(lengths, returns, color=colour, linestyle=style, marker="o", markersize=3, label=label)
        seeds = sorted({seed for per_seed in result["fas_curves"].values() for seed in per_seed}, key=int)
        budget = report["budget"][task]
        ax.set(xlabel="primitive steps per decision", ylabel="mean return",
               title=f"{task}, {budget / 1000:g}k steps, seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
