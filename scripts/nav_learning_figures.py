"""In-context learning curves for docs/nav_relic.md: success and return by episode index within held-out trials.

    .venv/bin/python scripts/nav_learning_figures.py     # reads bench/results/nav_learning_best250000.json
    .venv/bin/python scripts/nav_learning_figures.py --results bench/results/nav_learning_random_start_constant.json \
        --out docs/figures/nav_learning_random_start.png

Reads what ``bench/nav_learning.py`` wrote (random policy, ReLIC, the LSTM; one value per episode
index, averaged over the held-out trials and the seeds) and draws success with its 95 % binomial
interval and the mean return (each seed's faintly), so a learner that uses its context rises from
left to right.
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
LABELS = {"random": "uniform random", "relic": "ReLIC (transformer, Sink-KV)", "lstm": "LSTM (RL^2)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "nav_learning_best250000.json")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "nav_learning.png")
    args = parser.parse_args()
    report = json.loads(args.results.read_text())
    trials = report["held_out_trials"]
    fig, (ax_s, ax_r) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, name in enumerate(("random", "relic", "lstm")):
        if "success_by_episode" not in report.get(name, {}):
            continue
        result = report[name]
        success = np.asarray(result["success_by_episode"])
        episodes = np.arange(1, len(success) + 1)
        half = result.get("success_ci95_by_episode", 1.96 * np.sqrt(success * (1 - success) / trials))
        seeds = result.get("seeds", [])
        label = LABELS[name] + (f", {len(seeds)} seeds" if len(seeds) > 1 else "")
        ax_s.errorbar(episodes, success, yerr=half, color=f"C{i}", marker="o", capsize=3, label=label)
        ax_r.plot(episodes, result["return_by_episode"], color=f"C{i}", marker="o", label=label)
        for seed_result in result.get("per_seed", {}).values() if len(seeds) > 1 else ():
            ax_r.plot(episodes, seed_result["return_by_episode"], color=f"C{i}", alpha=0.35, linewidth=1)
    start = "random cells" if report.get("random_start") else "the corner"
    budget = report.get("budget_env_steps")
    title = f"held-out goals, start at {start}" + (f", {budget / 1e6:g}M training steps" if budget else "")
    ax_s.set(xlabel="episode within the trial", ylabel="success (95 % interval)", ylim=(0, 1), title=title)
    optimal = 94.4 if report.get("random_start") else 92.0  # 101 - mean distance to the held-out goals
    ax_r.axhline(optimal, color="grey", linestyle="--", linewidth=1)
    ax_r.set(xlabel="episode within the trial", ylabel=f"mean return (dashed: {optimal:g}, the goal known)", title=title)
    for ax in (ax_s, ax_r):
        ax.set_xticks(episodes)
        ax.grid(alpha=0.3)
    ax_s.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
