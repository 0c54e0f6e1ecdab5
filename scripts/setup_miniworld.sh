#!/usr/bin/env bash
# Creates bench/.venv-miniworld: MiniWorld (PyPI `miniworld`, pyglet + OpenGL), the peer that
# bench/nav.py measures in the same run. It gets its own virtual environment so its pyglet and
# gymnasium pins never touch the suite's. It renders through OpenGL, so it runs under a virtual X
# server: Debian's `xvfb` (xvfb-run), installed here with apt-get when missing and when we may.
#
#     bash scripts/setup_miniworld.sh          # idempotent; re-run to repair
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/bench/.venv-miniworld"
PY="${PY:-python3}"

# --- Xvfb: a headless X server for pyglet's OpenGL context ----------------------------------
if ! command -v xvfb-run >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "# installing xvfb (MiniWorld needs an X display for OpenGL)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb libgl1 libglu1-mesa >/dev/null
    else
        echo "error: xvfb-run is missing; run: sudo apt-get install -y xvfb libgl1 libglu1-mesa" >&2
        exit 1
    fi
fi

# --- the venv ----------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "miniworld==2.1.0"

# --- smoke test: one env, one step, under Xvfb ----------------------------------------------
xvfb-run -a -s "-screen 0 1024x768x24" "$VENV/bin/python" - <<'PY'
import gymnasium as gym
import miniworld  # noqa: F401  (registers MiniWorld-* ids)

env = gym.make("MiniWorld-FourRooms-v0", obs_width=128, obs_height=128)
obs, _ = env.reset(seed=0)
obs, *_ = env.step(env.action_space.sample())
print("# miniworld ok:", obs.shape, obs.dtype)
PY
