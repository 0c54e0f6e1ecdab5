"""Beam-line lattice files: one JSON format, a strict loader, and the design-energy bookkeeping.

A lattice file (``assets/beam/<name>.json``) is one JSON object::

    {
      "format": "embodied-beam-lattice-v1",
      "name": "CM1",
      "description": "free text",
      "beam": {
        "species": "40Ar12+",            # label only
        "mass_u": 39.95580,              # ion mass in unified atomic mass units (electrons removed)
        "charge_state": 12,              # charge in units of e (signed: -1 for electrons)
        "mass_number": 40,               # nucleons, for the per-nucleon energy below
        "kinetic_energy_per_nucleon_eV": 1.356e6,
        "current_A": 1e-4,               # beam current the current monitors read
        "twiss": {"beta_x_m": 0.5, "alpha_x": 0.0, "emittance_x_m": 1e-6,
                  "beta_y_m": 0.5, "alpha_y": 0.0, "emittance_y_m": 1e-6}   # rms, geometric
      },
      "elements": [ {"type": "...", "name": "...", ...}, ... ]   # in beam order
    }

Every number's unit is in its key (``_m``, ``_T``, ``_A``, ``_V``, ``_deg``, ``_Hz``), so a
value in the wrong unit is caught by a range check (an 85 in ``length_m`` is refused as "is
it in mm?"). Element types and their fields (all required unless marked optional):

``drift``
    ``length_m``.
``solenoid``
    ``length_m``, ``field_per_current_T_per_A``, ``current_A`` (design setting),
    ``max_current_A``; optional ``correctors`` = ``{"h": NAME, "v": NAME,
    "integrated_field_T_m_per_A": ..., "max_current_A": ...}``: horizontal and vertical
    steering coils wound on the solenoid. The model builds such a solenoid as half solenoid,
    thin combined corrector, half solenoid (cheetah's ``Superimposed`` freezes the base
    element's parameters at construction, so later field or offset changes would be lost).
``cavity``
    ``length_m``, ``voltage_V`` (effective voltage: the on-crest energy gain per unit charge,
    >= 0), ``phase_deg`` (synchronous phase, 0 on crest, negative for longitudinal focusing),
    ``frequency_Hz``. The sign cheetah needs for the beam's charge is applied by the model.
``bpm``
    (name only): reads the beam centroid in x and y.
``aperture``
    ``radius_m``: a round beam pipe; particles outside are lost.
``current_monitor``
    (name only): reads the current of the surviving particles (an ACCT).
``rfq``
    ``aperture_radius_m`` and ``acceptance`` = ``{"beta_x_m", "alpha_x", "emittance_x_m",
    "beta_y_m", "alpha_y", "emittance_y_m"}``: the RFQ's entrance aperture and its transverse
    acceptance ellipses (geometric, m rad). A particle is transmitted when it is inside the
    aperture and its Courant-Snyder invariant is below the acceptance in both planes.
``faraday_cup``
    (name only): reads the current transmitted by the RFQ; must come after the ``rfq``.

Names must be Python identifiers (cheetah addresses elements as ``segment.NAME``) and unique,
corrector names included. Any violation raises :class:`LatticeError` naming the file, the
element (index, name and type) and the field.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "embodied-beam-lattice-v1"
AMU_EV = 931.49410242e6
"""Unified atomic mass unit in eV (CODATA 2018)."""
SPEED_OF_LIGHT = 299_792_458.0
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LatticeError(ValueError):
    """A lattice file is malformed: the message names the file, element and field."""


# (low, high, hint): the physical range a field may take; the hint says what a violation suggests.
_Range = tuple[float, float, str]
_LENGTH: _Range = (0.0, 20.0, "lengths are in metres (is it in mm?)")
_POS_LENGTH: _Range = (1e-6, 20.0, "lengths are in metres (is it in mm?)")
_RADIUS: _Range = (1e-5, 1.0, "radii are in metres (is it in mm?)")
_CURRENT: _Range = (-1e4, 1e4, "currents are in amperes")
_MAX_CURRENT: _Range = (1e-6, 1e4, "currents are in amperes, > 0")
_FIELD_PER_A: _Range = (-1.0, 1.0, "T per A; a solenoid reaches at most ~20 T")
_KICK_PER_A: _Range = (0.0, 1.0, "T m per A, > 0 (polarity errors belong to the error model)")
_VOLTAGE: _Range = (0.0, 1e8, "volts, >= 0 (the model applies the charge's sign)")
_PHASE: _Range = (-180.0, 180.0, "degrees")
_FREQUENCY: _Range = (1e3, 1e11, "hertz (is it in MHz?)")
_BETA: _Range = (1e-6, 1e4, "metres, > 0")
_ALPHA: _Range = (-1e3, 1e3, "dimensionless")
_EMITTANCE: _Range = (1e-12, 1e-2, "geometric emittance in m rad (is it in mm mrad?)")

TWISS_FIELDS: dict[str, _Range] = {
    "beta_x_m": _BETA,
    "alpha_x": _ALPHA,
    "emittance_x_m": _EMITTANCE,
    "beta_y_m": _BETA,
    "alpha_y": _ALPHA,
    "emittance_y_m": _EMITTANCE,
}
CORRECTOR_FIELDS: dict[str, Any] = {
    "h": "name",
    "v": "name",
    "integrated_field_T_m_per_A": _KICK_PER_A,
    "max_current_A": _MAX_CURRENT,
}

ELEMENT_FIELDS: dict[str, dict[str, Any]] = {
    "drift": {"length_m": _LENGTH},
    "solenoid": {
        "length_m": _POS_LENGTH,
        "field_per_current_T_per_A": _FIELD_PER_A,
        "current_A": _CURRENT,
        "max_current_A": _MAX_CURRENT,
    },
    "cavity": {"length_m": _POS_LENGTH, "voltage_V": _VOLTAGE, "phase_deg": _PHASE, "frequency_Hz": _FREQUENCY},
    "bpm": {},
    "aperture": {"radius_m": _RADIUS},
    "current_monitor": {},
    "rfq": {"aperture_radius_m": _RADIUS, "acceptance": TWISS_FIELDS},
    "faraday_cup": {},
}
"""Required fields per element type: a range for numbers, a dict for a nested block."""
OPTIONAL_FIELDS: dict[str, dict[str, Any]] = {"solenoid": {"correctors": CORRECTOR_FIELDS}}

BEAM_FIELDS: dict[str, Any] = {
    "species": "text",
    "mass_u": (1e-4, 300.0, "atomic mass units"),
    "charge_state": (-100.0, 100.0, "units of e, non-zero"),
    "mass_number": (1.0, 300.0, "nucleons (use 1 for electrons' per-particle energy)"),
    "kinetic_energy_per_nucleon_eV": (1e3, 1e12, "eV per nucleon (is it in MeV/u?)"),
    "current_A": (0.0, 10.0, "amperes"),
    "twiss": TWISS_FIELDS,
}


@dataclass(frozen=True)
class BeamSpec:
    species: str
    mass_u: float
    charge_state: float
    mass_number: float
    kinetic_energy_per_nucleon_eV: float
    current_A: float
    twiss: dict[str, float]

    @property
    def mass_eV(self) -> float:
        return self.mass_u * AMU_EV

    @property
    def kinetic_energy_eV(self) -> float:
        return self.kinetic_energy_per_nucleon_eV * self.mass_number


@dataclass(frozen=True)
class ElementSpec:
    """One element as read from the file, with the design beam energy at its entrance."""

    type: str
    name: str
    params: dict[str, Any]
    kinetic_energy_eV: float
    """Design kinetic energy of the beam entering the element (cavities upstream included)."""
    brho_Tm: float
    """Magnetic rigidity of the design beam entering the element (T m)."""


@dataclass(frozen=True)
class Lattice:
    name: str
    description: str
    beam: BeamSpec
    elements: tuple[ElementSpec, ...]
    source: str = ""
    """The file it was read from (for error messages)."""
    exit_kinetic_energy_eV: float = 0.0

    def of_type(self, *types: str) -> list[ElementSpec]:
        return [e for e in self.elements if e.type in types]

    @property
    def corrector_names(self) -> list[str]:
        """Corrector names in beam order, horizontal before vertical per solenoid."""
        out: list[str] = []
        for e in self.of_type("solenoid"):
            if "correctors" in e.params:
                out += [e.params["correctors"]["h"], e.params["correctors"]["v"]]
        return out

    @property
    def bpm_names(self) -> list[str]:
        return [e.name for e in self.of_type("bpm")]

    @property
    def length_m(self) -> float:
        return sum(float(e.params.get("length_m", 0.0)) for e in self.elements)

    def element(self, name: str) -> ElementSpec:
        for e in self.elements:
            if e.name == name:
                return e
        raise KeyError(f"lattice {self.name!r} has no element {name!r}; it has {[e.name for e in self.elements]}")


def brho(kinetic_energy_eV: float, mass_eV: float, charge_state: float) -> float:
    """Magnetic rigidity B rho (T m) of a particle of total charge ``charge_state`` e."""
    pc = math.sqrt(kinetic_energy_eV**2 + 2.0 * kinetic_energy_eV * mass_eV)
    return pc / (SPEED_OF_LIGHT * abs(charge_state))


# ---------------------------------------------------------------------- validation
def _check_number(value: Any, where: str, key: str, rng: _Range) -> float:
    low, high, hint = rng
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LatticeError(f"{where}: field {key!r} must be a number ({hint}), got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise LatticeError(f"{where}: field {key!r} must be finite, got {value!r}")
    if not low <= value <= high:
        raise LatticeError(f"{where}: field {key!r} = {value!r} is outside [{low:g}, {high:g}]: {hint}")
    return float(value)


def _check_name(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise LatticeError(f"{where}: field {key!r} must be a Python identifier (letters, digits, _), got {value!r}")
    return value


def _check_block(
    block: Any, schema: dict[str, Any], where: str, optional: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Validate a JSON object against ``schema`` (required) and ``optional`` fields."""
    optional = optional or {}
    if not isinstance(block, dict):
        raise LatticeError(f"{where}: expected a JSON object, got {type(block).__name__}")
    unknown = sorted(set(block) - set(schema) - set(optional))
    if unknown:
        import difflib

        hints = [difflib.get_close_matches(u, list(schema) + list(optional), n=1) for u in unknown]
        said = ", ".join(
            f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for u, h in zip(unknown, hints, strict=True)
        )
        raise LatticeError(f"{where}: unknown field {said}; allowed: {sorted(schema) + sorted(optional)}")
    missing = sorted(set(schema) - set(block))
    if missing:
        raise LatticeError(f"{where}: missing field {missing[0]!r} (required: {sorted(schema)})")
    out: dict[str, Any] = {}
    for key, value in block.items():
        rule = schema.get(key, optional.get(key))
        if rule == "name":
            out[key] = _check_name(value, where, key)
        elif rule == "text":
            if not isinstance(value, str):
                raise LatticeError(f"{where}: field {key!r} must be a string, got {value!r}")
            out[key] = value
        elif isinstance(rule, dict):
            out[key] = _check_block(value, rule, f"{where} field {key!r}")
        else:
            out[key] = _check_number(value, where, key, rule)
    return out


def parse_lattice(data: Any, source: str = "<lattice>") -> Lattice:
    """Validate a lattice already read from JSON and return it; raise LatticeError otherwise."""
    top = {"format": "text", "name": "text", "description": "text", "beam": BEAM_FIELDS, "elements": "list"}
    if not isinstance(data, dict):
        raise LatticeError(f"{source}: a lattice file is one JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(top))
    missing = sorted(set(top) - set(data) - {"description"})
    if unknown or missing:
        raise LatticeError(f"{source}: unknown top-level fields {unknown} / missing {missing}; expected {sorted(top)}")
    if data["format"] != FORMAT:
        raise LatticeError(f"{source}: field 'format' must be {FORMAT!r}, got {data['format']!r}")
    if not isinstance(data["name"], str) or not data["name"]:
        raise LatticeError(f"{source}: field 'name' must be a non-empty string")
    beam_block = _check_block(data["beam"], BEAM_FIELDS, f"{source}: beam")
    if beam_block["charge_state"] == 0:
        raise LatticeError(f"{source}: beam: field 'charge_state' must be non-zero")
    beam = BeamSpec(**beam_block)
    if not isinstance(data["elements"], list) or not data["elements"]:
        raise LatticeError(f"{source}: field 'elements' must be a non-empty list")

    elements: list[ElementSpec] = []
    seen: set[str] = set()
    kinetic = beam.kinetic_energy_eV
    for i, raw in enumerate(data["elements"]):
        head = f"{source}: element #{i}"
        if not isinstance(raw, dict):
            raise LatticeError(f"{head}: expected a JSON object, got {type(raw).__name__}")
        kind = raw.get("type")
        if kind not in ELEMENT_FIELDS:
            raise LatticeError(f"{head}: unknown element type {kind!r}; known types: {sorted(ELEMENT_FIELDS)}")
        where = f"{head} {raw.get('name', '?')!r} ({kind})"
        name = _check_name(raw.get("name"), where, "name")
        params = {k: v for k, v in raw.items() if k not in ("type", "name")}
        params = _check_block(params, ELEMENT_FIELDS[kind], where, OPTIONAL_FIELDS.get(kind))
        names = [name] + ([params["correctors"]["h"], params["correctors"]["v"]] if "correctors" in params else [])
        for n in names:
            if n in seen:
                raise LatticeError(f"{where}: name {n!r} is used twice")
            seen.add(n)
        if kind == "solenoid":
            bmax = abs(params["field_per_current_T_per_A"]) * params["max_current_A"]
            if bmax > 20.0:
                raise LatticeError(
                    f"{where}: field 'max_current_A' gives {bmax:.3g} T at full current; check the units"
                )
            if abs(params["current_A"]) > params["max_current_A"]:
                raise LatticeError(
                    f"{where}: field 'current_A' {params['current_A']} exceeds max_current_A {params['max_current_A']}"
                )
        elements.append(ElementSpec(kind, name, params, kinetic, brho(kinetic, beam.mass_eV, beam.charge_state)))
        if kind == "cavity":
            kinetic += abs(beam.charge_state) * params["voltage_V"] * math.cos(math.radians(params["phase_deg"]))
            if kinetic <= 0:
                raise LatticeError(f"{where}: the design beam is stopped here (kinetic energy {kinetic:.3g} eV)")

    types = [e.type for e in elements]
    if types.count("rfq") > 1:
        raise LatticeError(f"{source}: at most one 'rfq' element, found {types.count('rfq')}")
    for e in elements:
        if e.type == "faraday_cup" and ("rfq" not in types or types.index("rfq") > elements.index(e)):
            raise LatticeError(f"{source}: element {e.name!r} (faraday_cup) must come after an 'rfq' element")
    return Lattice(
        name=data["name"],
        description=data.get("description", ""),
        beam=beam,
        elements=tuple(elements),
        source=source,
        exit_kinetic_energy_eV=kinetic,
    )


def lattice_path(name_or_path: str | Path) -> Path:
    """A shipped lattice by name (``"cm1"``) or a path to a JSON file."""
    text = str(name_or_path)
    if text.endswith(".json") or "/" in text or text.startswith((".", "~")):
        path = Path(text).expanduser()
    else:
        from embodied.assets import ASSETS_DIR

        path = ASSETS_DIR / "beam" / f"{text.lower()}.json"
    if not path.is_file():
        raise FileNotFoundError(f"lattice {text!r} not found (looked at {path}); shipped lattices: {list_lattices()}")
    return path


def list_lattices() -> list[str]:
    """Names of the lattices shipped in ``assets/beam/``."""
    from embodied.assets import ASSETS_DIR

    return sorted(p.stem for p in (ASSETS_DIR / "beam").glob("*.json"))


def load_lattice(name_or_path: str | Path) -> Lattice:
    """Read, validate and return a lattice (a shipped name such as ``"cm1"``, or a path)."""
    path = lattice_path(name_or_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        raise LatticeError(f"{path}: not valid JSON: {err}") from None
    except ValueError as err:  # NaN / Infinity literals
        raise LatticeError(f"{path}: {err}") from None
    return parse_lattice(data, str(path))


def _refuse_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} is not allowed in a lattice file")


def to_json(lattice: Lattice) -> dict[str, Any]:
    """The JSON object a lattice was read from (round-trips through :func:`parse_lattice`)."""
    beam = {k: getattr(lattice.beam, k) for k in BEAM_FIELDS}
    elements = [{"type": e.type, "name": e.name, **e.params} for e in lattice.elements]
    return {
        "format": FORMAT,
        "name": lattice.name,
        "description": lattice.description,
        "beam": beam,
        "elements": elements,
    }
