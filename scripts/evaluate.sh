#!/usr/bin/env bash
# Evaluate a checkpoint (or a run folder) on its task, optionally under sim-to-real adapters,
# and save the JSON summary next to it.
#
#   scripts/evaluate.sh runs/<run folder> [episodes] [adapters.noise.std=0.05 ...]
set -euo pipefail
if [ $# -lt 1 ]; then
  sed -n '2,5p' "$0"; exit 2
fi
run=$1; episodes=${2:-20}; shift $(( $# >= 2 ? 2 : 1 ))
bin="$(dirname "$0")/../.venv/bin/embodied"
[ -x "$bin" ] || bin=embodied
task=$(python3 -c "import json,sys; print(json.load(open('$run/run.json'))['task_id'])")
"$bin" eval "$task" --checkpoint "$run" --episodes "$episodes" --output "$run/eval_${episodes}.json" "$@"
