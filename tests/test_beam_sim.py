"""Beam simulation: lattice physics against analytic transfer matrices, batching, errors, RFQ, bad input."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from embodied.sim.beam import (
    BeamlineModel,
    BeamMachine,
    ErrorsCfg,
    LatticeError,
    MachineErrors,
    TwinCfg,
    draw_errors,
    load_lattice,
    nominal_model,
    parse_lattice,
    source_particles,
    track_transmission,
)
from embodied.sim.beam.errors import magnitudes_from_cfg
from embodied.sim.beam.lattice import FORMAT, brho, to_json

CPU = torch.device("cpu")


def solenoid_matrix(k: float, length: float) -> np.ndarray:
    """Lab-frame 4x4 solenoid matrix (x, x', y, y'), k = B / (2 B rho) (textbook, e.g. Wiedemann)."""
    c, s = math.cos(k * length), math.sin(k * length)
    sk = s / k if k else length
    return np.array(
        [
            [c * c, s * c / k if k else length, s * c, s * sk],
            [-k * s * c, c * c, -k * s * s, s * c],
            [-s * c, -s * sk, c * c, s * c / k if k else length],
            [k * s * s, -s * c, -k * s * c, c * c],
        ]
    )


def drift_matrix(length: float) -> np.ndarray:
    m = np.eye(4)
    m[0, 1] = m[2, 3] = length
    return m


def toy_lattice(field_T: float = 0.8, drift_m: float = 0.4) -> dict:
    """Proton beam: one solenoid with correctors, a drift, a BPM (analytic transfer matrices apply)."""
    return {
        "format": FORMAT,
        "name": "toy",
        "beam": {
            "species": "H+",
            "mass_u": 1.00727646688,
            "charge_state": 1,
            "mass_number": 1,
            "kinetic_energy_per_nucleon_eV": 2.0e6,
            "current_A": 1e-3,
            "twiss": {
                "beta_x_m": 1.0,
                "alpha_x": 0.0,
                "emittance_x_m": 1e-6,
                "beta_y_m": 1.0,
                "alpha_y": 0.0,
                "emittance_y_m": 1e-6,
            },
        },
        "elements": [
            {
                "type": "solenoid",
                "name": "S1",
                "length_m": 0.3,
                "field_per_current_T_per_A": 0.01,
                "current_A": field_T / 0.01,
                "max_current_A": 200.0,
                "correctors": {"h": "H1", "v": "V1", "integrated_field_T_m_per_A": 1e-4, "max_current_A": 10.0},
            },
            {"type": "drift", "name": "D1", "length_m": drift_m},
            {"type": "bpm", "name": "B1"},
        ],
    }


# ---------------------------------------------------------------------- lattice physics
def test_design_rigidity_of_40ar12_matches_the_paper():
    lat = load_lattice("cm1")
    assert lat.elements[0].brho_Tm == pytest.approx(0.559, abs=0.002)  # TBSAC: Brho about 0.559 T m
    assert lat.exit_kinetic_energy_eV > lat.beam.kinetic_energy_eV  # positive ions gain energy (cavity sign)
    cm2, cm3 = load_lattice("cm2"), load_lattice("cm3")
    assert cm2.beam.kinetic_energy_eV == pytest.approx(lat.exit_kinetic_energy_eV, rel=1e-6)
    assert (len(lat.bpm_names), len(cm2.bpm_names), len(cm3.bpm_names)) == (5, 4, 5)
    assert len(lat.corrector_names) == 10


@pytest.mark.parametrize("plane", [0, 1])
def test_corrector_kick_moves_bpm_by_the_analytic_transfer_matrix(plane):
    lat = parse_lattice(toy_lattice(), "toy")
    model = BeamlineModel(lat)
    e = lat.elements[0]
    k = 0.8 / (2 * e.brho_Tm)
    theta = 1e-4 / e.brho_Tm * 3.0  # 3 A
    currents = torch.zeros(1, 2)
    currents[0, plane] = 3.0
    reading = model.orbit_mm(currents)[0].double().numpy() * 1e-3
    kick = np.zeros(4)
    kick[1 + 2 * plane] = theta
    expected = drift_matrix(0.4) @ solenoid_matrix(k, 0.15) @ kick  # corrector sits mid-solenoid
    np.testing.assert_allclose(reading, expected[[0, 2]], rtol=1e-4, atol=1e-9)
    assert abs(reading[plane]) > 1e-5  # a real displacement, not a trivially passing zero


def test_solenoid_offset_gives_the_analytic_kick_and_sign():
    lat = parse_lattice(toy_lattice(), "toy")
    model = BeamlineModel(lat)
    k = 0.8 / (2 * lat.elements[0].brho_Tm)
    errors = MachineErrors.ideal(lat, 1)
    errors.solenoid_offset_m[0, 0] = torch.tensor([1e-3, -0.5e-3])
    reading = model.orbit_mm(torch.zeros(1, 2), errors)[0].double().numpy() * 1e-3
    d = np.array([1e-3, 0.0, -0.5e-3, 0.0])
    r_sol = solenoid_matrix(k, 0.3)
    expected = drift_matrix(0.4) @ (d - r_sol @ d)  # x_out = R (x_in - d) + d with x_in = 0
    np.testing.assert_allclose(reading, expected[[0, 2]], rtol=1e-4, atol=1e-9)
    # A focusing lens displaced by +x pulls the beam towards +x.
    assert reading[0] > 0 and reading[1] < 0


def test_cm1_response_matches_product_of_cheetah_element_maps():
    model = nominal_model("cm1")
    response = model.response_matrix()[0]
    # Independent path: multiply element maps from corrector DCH1 to BPM1, energy updated at the cavity.
    model.apply()
    elements = list(model.segment.elements)
    start = elements.index(model.correctors[0]) + 1
    stop = elements.index(model.bpms[0])
    tm, energy = torch.eye(7, dtype=torch.float64), model.energy
    for el in elements[start:stop]:
        tm = el.first_order_transfer_map(energy, model.species).double() @ tm
        if el.__class__.__name__ == "Cavity":
            energy = energy + float(model.lattice.beam.charge_state) * float(-el.voltage) * math.cos(
                math.radians(float(el.phase))
            )
    rad_per_A = model.corrector_rad_per_A[0]
    assert response[0, 0].item() == pytest.approx(tm[0, 1].item() * rad_per_A * 1e3, rel=1e-3)
    assert response[1, 0].item() == pytest.approx(tm[2, 1].item() * rad_per_A * 1e3, rel=1e-3)
    assert torch.all(response[:2, 2:] == 0)  # downstream correctors cannot move an upstream BPM


def test_zero_errors_give_zero_orbit_and_orbit_is_differentiable():
    model = nominal_model("cm3")
    currents = torch.zeros(2, model.n_correctors, requires_grad=True)
    readings = model.orbit_mm(currents, MachineErrors.ideal(model.lattice, 2))
    assert readings.shape == (2, 10)
    assert readings.abs().max() < 1e-9
    (readings + 1.0).square().sum().backward()
    assert currents.grad is not None and currents.grad.abs().sum() > 0
    jac = torch.autograd.functional.jacobian(lambda c: model.orbit_mm(c), torch.zeros(1, model.n_correctors))
    torch.testing.assert_close(jac[0, :, 0, :], model.response_matrix()[0], atol=1e-5, rtol=1e-4)


def test_one_batched_track_equals_a_per_env_loop():
    model = nominal_model("cm2")
    gen = torch.Generator().manual_seed(3)
    errors, _, _ = draw_errors(model.lattice, magnitudes_from_cfg(ErrorsCfg(bpm_offset_mm=0.5), 6, CPU), gen)
    currents = torch.randn(6, model.n_correctors, generator=gen)
    batched = model.orbit_mm(currents, errors)
    looped = torch.cat([model.orbit_mm(currents[i : i + 1], errors.select(slice(i, i + 1))) for i in range(6)])
    torch.testing.assert_close(batched, looped, atol=1e-6, rtol=1e-5)
    assert batched.std(0).min() > 0  # the envs really differ


def test_a_new_setting_is_never_served_a_stale_cached_map():
    model = nominal_model("cm1")
    errors = MachineErrors.ideal(model.lattice, 1)
    first = model.orbit_mm(torch.zeros(1, 10), errors).clone()
    errors.solenoid_offset_m[0, 2, 1] = 2e-3  # in place, as a reset does
    second = model.orbit_mm(torch.zeros(1, 10), errors)
    assert not torch.allclose(first, second)
    errors.solenoid_offset_m[0, 2, 1] = 0.0
    torch.testing.assert_close(model.orbit_mm(torch.zeros(1, 10), errors), first)


# ---------------------------------------------------------------------- machine errors, twin, counting
def test_error_draws_follow_their_magnitudes():
    lat = load_lattice("cm1")
    gen = torch.Generator().manual_seed(0)
    mags = magnitudes_from_cfg(ErrorsCfg(solenoid_offset_mm=3.0, solenoid_field_error=0.2), 2000, CPU)
    errors, noise, _ = draw_errors(lat, mags, gen)
    off = errors.solenoid_offset_m * 1e3
    assert off.abs().max() <= 3.0 and off.abs().max() > 2.9
    assert off.std().item() == pytest.approx(3.0 / math.sqrt(3), rel=0.05)  # uniform
    assert (errors.solenoid_field_scale - 1).abs().max() <= 0.2
    assert torch.all(errors.corrector_gain == 1.0) and torch.all(noise == 0)


def test_twin_differs_from_the_nominal_draw_and_has_unmodelled_effects():
    lat = load_lattice("cm1")
    mags = magnitudes_from_cfg(ErrorsCfg(), 500, CPU)
    nominal, _, _ = draw_errors(lat, mags, torch.Generator().manual_seed(1))
    twin_cfg = TwinCfg()
    twin, noise, _ = draw_errors(lat, mags, torch.Generator().manual_seed(1), twin_cfg)
    assert not torch.allclose(nominal.solenoid_offset_m, twin.solenoid_offset_m)
    gains = twin.corrector_gain
    assert torch.all(gains[:, 1] < 0) and torch.all(gains[:, 6] < 0) and torch.all(gains[:, 0] > 0)
    assert gains.abs().mean().item() == pytest.approx(0.54, rel=0.02)
    assert torch.all(noise > 0) and twin.bpm_offset_m.abs().max() > 0
    polarity, scale = twin_cfg.operator_calibration(10)
    assert polarity.tolist() == [1, -1, 1, 1, 1, 1, -1, 1, 1, 1] and scale == 0.54


def test_machine_counts_evaluations_and_refuses_bad_settings():
    machine = BeamMachine("cm1", 3, ErrorsCfg(), CPU)
    gen = torch.Generator().manual_seed(0)
    machine.redraw(torch.arange(3), gen)
    machine.read_orbit(torch.zeros(3, 10), gen)
    machine.read_orbit(torch.zeros(1, 10), gen, env_ids=torch.tensor([2]))
    assert machine.counter.episode.tolist() == [1, 1, 2]
    bad = torch.zeros(3, 10)
    bad[1, 4] = float("nan")
    with pytest.raises(ValueError, match=r"DCH3 current is nan in env 1"):
        machine.read_orbit(bad, gen)
    bad[1, 4] = 31.0
    with pytest.raises(ValueError, match=r"DCH3 set to 31 A in env 1, beyond its limit \+-30 A"):
        machine.read_orbit(bad, gen)
    with pytest.raises(ValueError, match="expected 10"):
        machine.read_orbit(torch.zeros(3, 8), gen)
    assert machine.counter.episode.tolist() == [1, 1, 2]  # refused settings are not evaluations


# ---------------------------------------------------------------------- RFQ transmission
def test_rfq_transmission_is_one_for_a_tiny_centred_beam_and_drops_with_steering():
    model = BeamlineModel("lpi")
    kicks = torch.tensor([0.0, 2.0, 4.0, 6.0, 10.0, 20.0])  # STH1 current (A), about 1 mrad per A
    n = len(kicks)
    ideal = MachineErrors.ideal(model.lattice, n)
    sol = torch.tensor(model.solenoid_design_current_A).expand(n, -1)
    steer = torch.zeros(n, 4)
    steer[:, 0] = kicks
    tiny = source_particles(model, 400, seed=0, emittance_scale=1e-4)
    result = track_transmission(model, tiny, steer, sol, ideal)
    assert result.transmission[0].item() == 1.0  # a point-like beam on axis passes entirely
    assert result.transmission[-1].item() == 0.0  # and misses the acceptance when steered 20 mrad off
    full = track_transmission(model, source_particles(model, 1000, seed=0), steer, sol, ideal)
    assert 0.9 < full.transmission[0].item() < 1.0  # design settings: good, not perfect (Gaussian tails)
    assert torch.all(full.transmission[1:] < full.transmission[:-1])  # more steering error, less transmission
    assert full.transmission[3].item() < 0.85
    torch.testing.assert_close(full.bpm_positions_m[0], torch.zeros(2, 2), atol=1e-7, rtol=0)  # centred sample


def test_rfq_aperture_and_acceptance_each_cut():
    model = BeamlineModel("lpi")
    rfq = model.rfq
    p = torch.zeros(4, 7)
    p[1, 0] = rfq["aperture_radius_m"] * 1.01  # outside the aperture
    acc = rfq["acceptance"]
    p[2, 1] = 1.01 * math.sqrt(acc["emittance_x_m"] / acc["beta_x_m"])  # just outside the x ellipse
    p[3, 3] = 0.99 * math.sqrt(acc["emittance_y_m"] / acc["beta_y_m"])  # just inside the y ellipse
    from embodied.sim.beam import rfq_accepted

    assert rfq_accepted(p, rfq).tolist() == [True, False, False, True]


def test_lebt_apertures_lose_particles_in_the_current_monitor_reading():
    machine = BeamMachine("lpi", 2, ErrorsCfg(), CPU, num_particles=500)
    gen = torch.Generator().manual_seed(0)
    steer = torch.zeros(2, 4)
    steer[1, 0] = 20.0  # 20 mrad at SOL1: the beam scrapes the 40 mm bore of SOL2's aperture
    out, result = machine.read_transmission(
        steer, machine.model._t(machine.model.solenoid_design_current_A).expand(2, -1), gen
    )
    assert result.monitor_fractions[0, 0] == 1.0 and result.monitor_fractions[1, 0] < 1.0
    assert out["monitors_mA"][0, 0].item() == pytest.approx(10.0)
    with pytest.raises(ValueError, match="SOL1 current is negative"):
        machine.read_transmission(torch.zeros(2, 4), torch.tensor([[-1.0, 100.0], [100.0, 100.0]]), gen)


# ---------------------------------------------------------------------- malformed lattice files
def _valid() -> dict:
    return json.loads(json.dumps(toy_lattice()))


def test_shipped_lattices_round_trip():
    for name in ("cm1", "cm2", "cm3", "lpi"):
        lat = load_lattice(name)
        again = parse_lattice(json.loads(json.dumps(to_json(lat))), lat.source)
        assert again == lat


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["elements"][1].update(type="quadrupole"), r"element #1: unknown element type 'quadrupole'"),
        (lambda d: d["elements"][1].pop("length_m"), r"element #1 'D1' \(drift\): missing field 'length_m'"),
        (
            lambda d: d["elements"][1].update(length_mm=400),
            r"'D1' \(drift\): unknown field 'length_mm' \(did you mean 'length_m'\?\)",
        ),
        (lambda d: d["elements"][1].update(length_m=85), r"'D1' \(drift\): field 'length_m' = 85 .*is it in mm\?"),
        (lambda d: d["elements"][1].update(length_m="0.4"), r"'D1' \(drift\): field 'length_m' must be a number"),
        (lambda d: d["elements"][1].update(name="D-1"), r"field 'name' must be a Python identifier"),
        (lambda d: d["elements"][2].update(name="S1"), r"name 'S1' is used twice"),
        (lambda d: d["elements"][0]["correctors"].update(v="H1"), r"name 'H1' is used twice"),
        (lambda d: d["elements"][0].update(current_A=500.0), r"'S1' \(solenoid\): field 'current_A' .*"),
        (
            lambda d: d["beam"].update(kinetic_energy_per_nucleon_eV=1.356),
            r"beam: field 'kinetic_energy_per_nucleon_eV'",
        ),
        (lambda d: d["beam"]["twiss"].pop("alpha_y"), r"beam field 'twiss': missing field 'alpha_y'"),
        (lambda d: d.update(format="v0"), r"field 'format' must be"),
        (
            lambda d: d["elements"].insert(
                0,
                {
                    "type": "cavity",
                    "name": "C",
                    "length_m": 0.2,
                    "voltage_V": 1e5,
                    "phase_deg": -30,
                    "frequency_Hz": 162.5,
                },
            ),
            r"'C' \(cavity\): field 'frequency_Hz' = 162.5 .*is it in MHz\?",
        ),
        (lambda d: d["elements"].append({"type": "faraday_cup", "name": "FC"}), r"must come after an 'rfq'"),
    ],
)
def test_malformed_lattice_names_file_element_and_field(edit, message):
    data = _valid()
    edit(data)
    with pytest.raises(LatticeError, match=message) as err:
        parse_lattice(data, "bad.json")
    assert str(err.value).startswith("bad.json")


NUMERIC_FIELDS = [(1, "length_m"), (0, "length_m"), (0, "field_per_current_T_per_A"), (0, "max_current_A")]


@settings(max_examples=60, deadline=None)
@given(
    where=st.sampled_from(NUMERIC_FIELDS),
    bad=st.one_of(
        st.sampled_from([float("nan"), float("inf"), -float("inf"), True, None, "1", [1.0], {"v": 1}]),
        st.floats(min_value=1e5, max_value=1e300),
        st.floats(max_value=-1e5, min_value=-1e300),
    ),
)
def test_bad_numbers_are_refused_with_element_and_field(where, bad):
    index, key = where
    data = _valid()
    data["elements"][index][key] = bad
    with pytest.raises(LatticeError) as err:
        parse_lattice(data, "fuzz.json")
    text = str(err.value)
    assert "fuzz.json" in text and repr(data["elements"][index]["name"]) in text and repr(key) in text


def test_non_finite_literals_in_a_file_are_refused(tmp_path):
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(_valid()).replace('"length_m": 0.4', '"length_m": NaN'))
    with pytest.raises(LatticeError, match=r"nan.json: non-finite number NaN"):
        load_lattice(path)
    with pytest.raises(FileNotFoundError, match="shipped lattices"):
        load_lattice("cm9")


def test_brho_matches_the_textbook_value_for_protons():
    # 1 GeV kinetic protons: p = 1.696 GeV/c, B rho = 5.657 T m.
    assert brho(1e9, 938.272e6, 1) == pytest.approx(5.657, rel=1e-3)
    assert copy.deepcopy(load_lattice("lpi")).elements[1].brho_Tm == pytest.approx(0.02704, rel=2e-3)
