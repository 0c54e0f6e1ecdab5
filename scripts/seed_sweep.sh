#!/usr/bin/env bash
# Train one task with one learner over several seeds: a shorthand for `embodied sweep`
# (Ray Tune trials, a trial per CPU; docs/scaleout.md). Run it again after a stop to resume.
#
#   scripts/seed_sweep.sh Control/Pendulum-v0 sac "1 2 3" --total-steps 20000 algo.learning_starts=1000
#
# Results: runs/sweeps/<task>__<algo>/results/<task>__<algo>__<seed>...json; a line per seed on stdout.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,8p' "$0"; exit 2
fi
task=$1; algo=$2; seeds=$3; shift 3
bin="$(dirname "$0")/../.venv/bin/embodied"
[ -x "$bin" ] || bin=embodied
name="${task//\//_}__${algo}"
if [ -d "runs/sweeps/$name" ]; then
  exec "$bin" sweep --name "$name" --resume
fi
exec "$bin" sweep --name "$name" --tasks "$task" --algos "$algo" --seeds "${seeds// /,}" "$@"
