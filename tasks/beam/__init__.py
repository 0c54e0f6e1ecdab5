"""Accelerator beam-control tasks on cheetah: orbit correction in CAFe II-style cryomodules and
RFQ transmission tuning in a light-particle injector, each with a 'real machine' twin.

A ``-Twin-`` id is the same lattice with a different, never-trained-on error draw
(salted seeds, other distributions) and unmodelled effects (corrector scale about 1/1.85,
swapped polarities, BPM noise and offsets, injection errors): use it only to test zero-shot
transfer. See ``embodied.sim.beam`` for the simulation and its API.
"""

from embodied.tasks.registry import register

_ORBIT = {
    "CM1": "5 cells, 5 BPMs, 10 correctors",
    "CM2": "4 cells, 4 BPMs, 8 correctors",
    "CM3": "5 cells, 5 BPMs, 10 correctors",
}

for _cm, _what in _ORBIT.items():
    for _twin in (False, True):
        register(
            f"Beam/OrbitCorrection-{_cm}{'-Twin' if _twin else ''}-v0",
            vector_entry_point="embodied.tasks.beam.orbit_correction:OrbitCorrectionEnv",
            cfg_entry_point="embodied.tasks.beam.orbit_correction:OrbitCorrectionCfg",
            max_episode_steps=50,
            backends=("cheetah",),
            kwargs={"lattice": _cm.lower(), "twin": _twin},
            description=(
                f"Correct the beam orbit in CAFe II-style cryomodule {_cm} ({_what}) with incremental corrector"
                " steps, TBSAC's trend observation and reward"
                + (" - the 'real machine' twin, for zero-shot evaluation only." if _twin else ".")
            ),
        )

for _twin in (False, True):
    register(
        f"Beam/RFQTransmission-LPI{'-Twin' if _twin else ''}-v0",
        vector_entry_point="embodied.tasks.beam.rfq_transmission:RFQTransmissionEnv",
        cfg_entry_point="embodied.tasks.beam.rfq_transmission:RFQTransmissionCfg",
        max_episode_steps=50,
        backends=("cheetah",),
        kwargs={"twin": _twin},
        description=(
            "Tune two LEBT solenoids and their steerers for RFQ transmission >= 85 % (macro-particles, current"
            " monitor and Faraday cup read-outs)"
            + (" - the 'real machine' twin, for zero-shot evaluation only." if _twin else ".")
        ),
    )
