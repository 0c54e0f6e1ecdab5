"""Learning curves for docs/tactile.md: teacher, AACD (frozen / fine-tuned critic) and AAC on peg insertion.

    .venv/bin/python scripts/tactile_learning_figures.py    # writes docs/figures/tactile_learning.png
    .venv/bin/python scripts/tactile_learning_figures.py --results bench/results/tactile_learning_480k \
        --out docs/figures/tactile_learning_480k.png          # a longer budget's pieces

Reads the pieces bench/tactile_learning.py wrote (bench/results/tactile_learning/<method>_seed<k>.json,
each with its episodic-return curve against env steps) and draws every seed thin and the mean
over seeds thick. The students' curves start at their own step 0 (after the teacher's 200k).
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
LABELS = {
    "teacher": "teacher (privileged PPO)",
    "aacd_finetune": "AACD, fine-tuned critic",
    "aacd_frozen": "AACD, frozen critic",
    "aac": "AAC (fresh critic)",
}


def curves(pieces: Path, method: str) -> list[np.ndarray]:
    """Each seed's (steps, return) curve for one method, as (K, 2) arrays."""
    return [np.asarray(json.loads(p.read_text())["curve"]) for p in sorted(pieces.glob(f"{method}_seed*.json"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results",
                        help="the folder bench/tactile_learning.py --results wrote (its tactile_learning/ pieces)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "tactile_learning.png")
    args = parser.parse_args()
    pieces = args.results / "tactile_learning"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, methods, title in (
        (axes[0], ["teacher"], "stage 1: privileged teacher"),
        (axes[1], ["aacd_finetune", "aacd_frozen", "aac"], "stage 2: tactile-image students (full augmentation)"),
    ):
        for i, method in enumerate(methods):
            runs = curves(pieces, method)
            if not runs:
                continue
            colour = f"C{i}"
            for run in runs:
                ax.plot(run[:, 0] / 1e3, run[:, 1], color=colour, alpha=0.3, linewidth=0.8)
            grid = np.linspace(max(r[0, 0] for r in runs), min(r[-1, 0] for r in runs), 60)
            mean = np.mean([np.interp(grid, r[:, 0], r[:, 1]) for r in runs], axis=0)
            ax.plot(grid / 1e3, mean, color=colour, linewidth=2.0, label=f"{LABELS[method]} ({len(runs)} seeds)")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("env steps (thousands)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("episodic return (training)")
    fig.suptitle("Tactile/PegInsert-v0 on one CPU core per run", fontsize=11)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
