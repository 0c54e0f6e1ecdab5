"""TACTO peer for bench/tactile.py: images per second of TACTO's renderer, a sphere pressed into its gel.

Runs INSIDE bench/.venv-tacto (made by scripts/setup_tacto.sh), not the suite's venv:

    PYOPENGL_PLATFORM=osmesa bench/.venv-tacto/bin/python bench/tacto_peer.py --frames 200

Prints one JSON object: ``tacto_images_per_s`` (``Sensor.render()`` calls per second, one camera,
so one image each; median of ``--rounds`` windows), ``loop_images_per_s`` (the same with the
PyBullet step that feeds it),
``resolution`` [H, W], versions and the contact check.

The scene follows TACTO's own demos with nothing from outside the package: its DIGIT config
(shipped inside ``tacto``), a fixed sensor body in PyBullet whose +x face is the gel, and a sphere
held against that face by a constant force, so PyBullet reports a contact and TACTO renders the
pressed sphere (it renders the background alone without a contact). The URDFs are written to a
temporary folder; the sphere is a URDF primitive (urdfpy meshes it as an icosphere). The URDFs
carry no <material>: urdfpy's colour parser calls ``np.float``, gone from NumPy >= 1.24.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")  # headless, CPU: pyrender on Debian's OSMesa

import numpy as np  # noqa: E402

# The DIGIT config's gel: centre (0.022, 0, 0.015) in the sensor frame, 0.02 wide (y), 0.03 high (z),
# facing +x. The sensor body's collision box ends at the gel's plane so contacts happen there.
GEL_X, GEL_Z = 0.022, 0.015

SENSOR_URDF = f"""<?xml version="1.0"?>
<robot name="tacto_sensor">
  <link name="base">
    <inertial><origin xyz="0 0 0"/><mass value="0.1"/>
      <inertia ixx="1e-5" ixy="0" ixz="0" iyy="1e-5" iyz="0" izz="1e-5"/></inertial>
    <collision><origin xyz="{GEL_X / 2} 0 {GEL_Z}"/><geometry><box size="{GEL_X} 0.02 0.03"/></geometry></collision>
  </link>
</robot>
"""


def sphere_urdf(radius: float) -> str:
    return f"""<?xml version="1.0"?>
<robot name="sphere">
  <link name="ball">
    <inertial><origin xyz="0 0 0"/><mass value="0.05"/>
      <inertia ixx="1e-6" ixy="0" ixz="0" iyy="1e-6" iyz="0" izz="1e-6"/></inertial>
    <visual><origin xyz="0 0 0"/><geometry><sphere radius="{radius}"/></geometry></visual>
    <collision><origin xyz="0 0 0"/><geometry><sphere radius="{radius}"/></geometry></collision>
  </link>
</robot>
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200, help="timed frames (after --warmup)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="timing windows (median kept)")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--radius", type=float, default=0.006, help="sphere radius, m")
    parser.add_argument("--press", type=float, default=20.0, help="force holding the sphere on the gel, N")
    args = parser.parse_args()

    import pybullet as p
    import pyrender
    import tacto

    cid = p.connect(p.DIRECT)
    p.setGravity(0, 0, 0, physicsClientId=cid)
    with tempfile.TemporaryDirectory() as tmp:
        sensor_path, sphere_path = Path(tmp, "sensor.urdf"), Path(tmp, "sphere.urdf")
        sensor_path.write_text(SENSOR_URDF)
        sphere_path.write_text(sphere_urdf(args.radius))
        sensor_id = p.loadURDF(str(sensor_path), useFixedBase=True, physicsClientId=cid)
        start = [GEL_X + args.radius - 0.0005, 0.0, GEL_Z]  # 0.5 mm into the gel
        sphere_id = p.loadURDF(str(sphere_path), basePosition=start, physicsClientId=cid)

        sensor = tacto.Sensor(width=args.width, height=args.height, visualize_gui=False, cid=cid)
        sensor.add_camera(sensor_id, [-1])
        sensor.add_object(str(sphere_path), sphere_id)

    def physics() -> None:
        # Hold the sphere on the gel (no gravity): constant press along -x, pinned at y = z = centre.
        pos, _ = p.getBasePositionAndOrientation(sphere_id, physicsClientId=cid)
        p.resetBasePositionAndOrientation(sphere_id, [pos[0], 0.0, GEL_Z], [0, 0, 0, 1], physicsClientId=cid)
        p.applyExternalForce(
            sphere_id, -1, [-args.press, 0, 0], [pos[0], 0.0, GEL_Z], p.WORLD_FRAME, physicsClientId=cid
        )
        p.stepSimulation(physicsClientId=cid)

    for _ in range(args.warmup):
        physics()
        colors, depths = sensor.render()
    contact = bool(sensor.get_force("cam0"))
    # TACTO returns the indentation depth (gel at rest minus now): the sphere must show in it.
    indented = float(np.mean(depths[0] > 1e-5))
    max_depth_mm = float(depths[0].max() * 1e3)

    # ``--rounds`` windows of frames / rounds each; the median window is kept (the machine is shared).
    render_rates, loop_rates, cpu_rates = [], [], []
    per_round = max(args.frames // args.rounds, 1)
    for _ in range(args.rounds):
        render_s = render_cpu = 0.0
        t_loop = time.perf_counter()
        for _ in range(per_round):
            physics()
            t0, c0 = time.perf_counter(), time.process_time()
            colors, depths = sensor.render()
            render_s += time.perf_counter() - t0
            render_cpu += time.process_time() - c0  # all threads of this process (llvmpipe's too)
        render_rates.append(per_round / render_s)
        cpu_rates.append(per_round / max(render_cpu, 1e-9))
        loop_rates.append(per_round / (time.perf_counter() - t_loop))
    p.disconnect(cid)

    def version(mod: str) -> str | None:
        try:
            from importlib.metadata import version as v

            return v(mod)
        except Exception:  # noqa: BLE001 - a missing version is not an error for a report
            return None

    print(
        json.dumps(
            {
                "tacto_images_per_s": statistics.median(render_rates),
                "tacto_images_per_cpu_s": statistics.median(cpu_rates),
                "loop_images_per_s": statistics.median(loop_rates),
                "rounds": render_rates,
                "frames": per_round * args.rounds,
                # llvmpipe (OSMesa) threads: unset = one per CPU core
                "lp_num_threads": os.environ.get("LP_NUM_THREADS"),
                "resolution": list(colors[0].shape[:2]),
                "contact": contact,
                "indented_pixels_fraction": indented,  # > 0: the sphere was rendered into the gel
                "max_indentation_mm": max_depth_mm,
                "pyopengl_platform": os.environ.get("PYOPENGL_PLATFORM"),
                "versions": {
                    "tacto": version("tacto"),
                    "pyrender": pyrender.__version__,
                    "pyopengl": version("PyOpenGL"),
                    "pybullet": version("pybullet"),
                    "numpy": np.__version__,
                    "python": sys.version.split()[0],
                },
                "cpu": platform.processor() or platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
