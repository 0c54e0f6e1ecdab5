#!/usr/bin/env bash
# Train one task with one learner over several seeds, one run folder per seed, resumable:
# a seed whose folder already has a checkpoint continues from it (finished ones just re-evaluate).
#
#   scripts/seed_sweep.sh Control/Pendulum-v0 sac "1 2 3" --total-steps 20000 algo.learning_starts=1000
#
# Results: runs/sweep/<task>__<algo>__<seed>/eval.json; a summary line per seed on stdout.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,8p' "$0"; exit 2
fi
task=$1; algo=$2; seeds=$3; shift 3
bin="$(dirname "$0")/../.venv/bin/embodied"
[ -x "$bin" ] || bin=embodied
for seed in $seeds; do
  dir="runs/sweep/${task//\//_}__${algo}__${seed}"
  if [ -f "$dir/checkpoint.pt" ]; then
    "$bin" train "$task" --algo "$algo" --resume "$dir" --no-progress
  else
    "$bin" train "$task" --algo "$algo" --seed "$seed" --run-dir "$dir" --no-progress "$@"
  fi
  python3 -c "import json,sys; s=json.load(open('$dir/eval.json')); print(f\"seed $seed: return {s['return_mean']:.1f} +- {s['return_std']:.1f}\")"
done
