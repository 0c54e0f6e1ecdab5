#!/usr/bin/env bash
# Creates bench/.venv-tacto: TACTO (PyPI `tacto` 0.0.3, pyrender on OSMesa), the peer that
# bench/tactile.py measures in the same run. It gets its own virtual environment because its
# pins clash with the suite's: it asks for a networkx and a PyOpenGL too old for Python 3.11 and
# for headless OSMesa. (Its urdfpy also calls `np.float`, removed in NumPy 1.24, but only for
# URDF <material> colours: bench/tacto_peer.py writes URDFs without them.)
#
#     bash scripts/setup_tacto.sh          # idempotent; re-run to repair
#
# Needs: python3 (3.10+), the package registry, and Debian's libosmesa6 (installed here with
# apt-get when missing and when we may; otherwise the script says what to run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/bench/.venv-tacto"
PY="${PY:-python3}"

# --- OSMesa: pyrender's CPU (headless) OpenGL -----------------------------------------------
if ! ldconfig -p 2>/dev/null | grep -q 'libOSMesa\.so'; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "# installing libosmesa6 (pyrender's headless OpenGL)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6 >/dev/null
    else
        echo "error: libOSMesa.so is missing; run: sudo apt-get install -y libosmesa6" >&2
        exit 1
    fi
fi

# --- the venv ----------------------------------------------------------------------------------
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
# tacto's own requirements, then the fixes to what it pins: networkx>=2.6 (urdfpy pins 2.2,
# which imports `fractions.gcd`, gone since 3.9), PyOpenGL>=3.1.5 (pyrender pins 3.1.0, whose
# OSMesa binding fails). pip warns about both pins; that is expected. One OpenCV only (headless).
"${PIP[@]}" tacto
"${PIP[@]}" --upgrade "networkx>=2.6" "PyOpenGL>=3.1.5" "numpy>=1.26"
echo "# (pip's complaints about urdfpy's networkx==2.2 and pyrender's PyOpenGL==3.1.0 pins are expected)"
if "$VENV/bin/pip" show opencv-python >/dev/null 2>&1; then
    # tacto only needs cv2 for blur/colour conversion; keep the server-friendly wheel.
    "$VENV/bin/pip" uninstall -q -y opencv-python
    "${PIP[@]}" --force-reinstall --no-deps opencv-python-headless
fi

# --- smoke check -------------------------------------------------------------------------------
PYOPENGL_PLATFORM=osmesa "$VENV/bin/python" - <<'EOF'
import pyrender, tacto  # noqa: F401
r = pyrender.OffscreenRenderer(16, 16)
r.delete()
print("tacto venv ok:", tacto.__file__)
EOF
