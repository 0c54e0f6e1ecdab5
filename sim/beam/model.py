"""A lattice as a batched, differentiable cheetah model, with machine errors and knobs in amperes.

:class:`BeamlineModel` builds one cheetah ``Segment`` from a :class:`~.lattice.Lattice` and
keeps handles to every knob. Every parameter it sets carries a leading batch dimension, so one
``track`` call simulates ``B`` machines (cheetah broadcasts element parameters), and gradients
flow from BPM readings back to corrector currents.

Conventions
    Corrector settings are currents (A), horizontal then vertical per solenoid, in beam order
    (``lattice.corrector_names``). A current ``I`` kicks the beam by
    ``I * gain * integrated_field_T_m_per_A / Brho`` rad, where ``Brho`` is the design
    rigidity at the corrector and ``gain`` the calibration error (1 nominally, negative for a
    swapped polarity). Solenoid strength is ``k = I * field_per_current * scale / (2 Brho)``.
    BPM readings are the beam centroid minus the BPM's offset, in metres from the model and in
    millimetres, x/y interleaved (``x1, y1, x2, y2, ...``), from :meth:`BeamlineModel.readings_mm`.
    The cavity voltage is given to cheetah as ``-sign(q) * V``: cheetah's cavity accelerates
    electron-like particles for positive voltage, so positive ions need the sign flipped.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cheetah
import torch

from embodied.sim.beam.lattice import Lattice, load_lattice


@dataclass
class MachineErrors:
    """Static errors of ``B`` machines (drawn once per episode); all zero/one means ideal."""

    solenoid_offset_m: torch.Tensor
    """(B, n_solenoids, 2) transverse offset of each solenoid (x, y)."""
    solenoid_field_scale: torch.Tensor
    """(B, n_solenoids) actual field / set field (1 + field error)."""
    bpm_offset_m: torch.Tensor
    """(B, n_bpms, 2) electrical offset of each BPM: it reads beam position minus this."""
    corrector_gain: torch.Tensor
    """(B, n_correctors) actual kick / modelled kick: calibration scale times polarity (+-1)."""
    injection: torch.Tensor
    """(B, 4) incoming beam centroid error: x (m), x' (rad), y (m), y' (rad)."""

    @classmethod
    def ideal(cls, lattice: Lattice, batch_size: int, device: torch.device | str = "cpu") -> MachineErrors:
        ns, nb, nc = len(lattice.of_type("solenoid")), len(lattice.bpm_names), len(lattice.corrector_names)
        z = {"device": device, "dtype": torch.float32}
        return cls(
            solenoid_offset_m=torch.zeros(batch_size, ns, 2, **z),
            solenoid_field_scale=torch.ones(batch_size, ns, **z),
            bpm_offset_m=torch.zeros(batch_size, nb, 2, **z),
            corrector_gain=torch.ones(batch_size, nc, **z),
            injection=torch.zeros(batch_size, 4, **z),
        )

    def index_put(self, env_ids: torch.Tensor, other: MachineErrors) -> None:
        """Overwrite the errors of envs ``env_ids`` with ``other`` (batch ``len(env_ids)``)."""
        for f in fields(self):
            getattr(self, f.name)[env_ids] = getattr(other, f.name).to(getattr(self, f.name).device)

    def select(self, env_ids: torch.Tensor | slice) -> MachineErrors:
        return MachineErrors(**{f.name: getattr(self, f.name)[env_ids].clone() for f in fields(self)})

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name).clone() for f in fields(self)}

    @classmethod
    def from_dict(cls, state: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> MachineErrors:
        return cls(**{k: v.clone().to(device) for k, v in state.items()})


class BeamlineModel:
    """cheetah model of a lattice for a batch of machines; knobs in amperes (see module doc)."""

    def __init__(
        self, lattice: Lattice | str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> None:
        self.lattice = load_lattice(lattice) if isinstance(lattice, str) else lattice
        self.device = torch.device(device)
        self.dtype = dtype
        beam = self.lattice.beam
        t = self._t
        self.species = cheetah.Species(
            "beam_" + "".join(ch if ch.isalnum() else "_" for ch in beam.species),
            num_elementary_charges=t(beam.charge_state),
            mass_eV=t(beam.mass_eV),
        )
        self.energy = t(beam.mass_eV + beam.kinetic_energy_eV)
        """Total energy (eV) of the design beam entering the lattice (cheetah's ``energy``)."""
        charge_sign = 1.0 if beam.charge_state > 0 else -1.0

        self.solenoid_halves: list[list[cheetah.Solenoid]] = []
        self.solenoid_k_per_A: list[float] = []
        self.solenoid_design_current_A: list[float] = []
        self.solenoid_max_current_A: list[float] = []
        self.correctors: list[cheetah.CombinedCorrector] = []
        self.corrector_rad_per_A: list[float] = []
        self.corrector_max_current_A: list[float] = []
        self.bpms: list[cheetah.BPM] = []
        self.rfq = None
        parts: list[list[cheetah.Element]] = [[]]
        self.part_ends: list[str] = []
        """What ends each tracked part: 'current_monitor', 'rfq' or 'end'."""
        for e in self.lattice.elements:
            p = e.params
            if e.type == "drift":
                parts[-1].append(cheetah.Drift(length=t(p["length_m"]), name=e.name))
            elif e.type == "solenoid":
                k_per_A = p["field_per_current_T_per_A"] / (2.0 * e.brho_Tm)
                half = t(p["length_m"] / 2)
                k = t(k_per_A * p["current_A"])
                a = cheetah.Solenoid(length=half, k=k, misalignment=t([0.0, 0.0]), name=f"{e.name}_a")
                b = cheetah.Solenoid(length=half, k=k, misalignment=t([0.0, 0.0]), name=f"{e.name}_b")
                parts[-1].append(a)
                if "correctors" in p:
                    c = p["correctors"]
                    corr = cheetah.CombinedCorrector(length=t(0.0), name=f"{c['h']}_{c['v']}")
                    parts[-1].append(corr)
                    self.correctors.append(corr)
                    self.corrector_rad_per_A += [c["integrated_field_T_m_per_A"] / e.brho_Tm] * 2
                    self.corrector_max_current_A += [c["max_current_A"]] * 2
                parts[-1].append(b)
                self.solenoid_halves.append([a, b])
                self.solenoid_k_per_A.append(k_per_A)
                self.solenoid_design_current_A.append(p["current_A"])
                self.solenoid_max_current_A.append(p["max_current_A"])
            elif e.type == "cavity":
                parts[-1].append(
                    cheetah.Cavity(
                        length=t(p["length_m"]),
                        voltage=t(-charge_sign * p["voltage_V"]),
                        phase=t(p["phase_deg"]),
                        frequency=t(p["frequency_Hz"]),
                        name=e.name,
                    )
                )
            elif e.type == "bpm":
                bpm = cheetah.BPM(is_active=True, misalignment=t([0.0, 0.0]), name=e.name)
                parts[-1].append(bpm)
                self.bpms.append(bpm)
            elif e.type == "aperture":
                r = t(p["radius_m"])
                parts[-1].append(cheetah.Aperture(x_max=r, y_max=r, shape="elliptical", name=e.name))
            elif e.type in ("current_monitor", "rfq"):
                self.part_ends.append(e.type)
                if e.type == "rfq":
                    self.rfq = p
                parts.append([])
            # faraday_cup: read from the RFQ's output, nothing to track.
        self.part_ends.append("end")
        self.parts = [
            cheetah.Segment(elements=els or [cheetah.Marker(name=f"part{i}_empty")]) for i, els in enumerate(parts)
        ]
        self.segment = cheetah.Segment(elements=[el for part in parts for el in part], name=self.lattice.name)
        """The whole lattice as one cheetah Segment (knob handles above point into it)."""
        self._applied: dict[str, tuple] = {}
        """What each knob group was last set to (see ``_changed``)."""
        self.corrector_rad_per_A_t = t(self.corrector_rad_per_A)
        self.solenoid_k_per_A_t = t(self.solenoid_k_per_A)

    def _t(self, value) -> torch.Tensor:
        return torch.tensor(value, device=self.device, dtype=self.dtype)

    # ------------------------------------------------------------------ sizes and names
    @property
    def n_correctors(self) -> int:
        return len(self.corrector_rad_per_A)

    @property
    def n_bpms(self) -> int:
        return len(self.bpms)

    @property
    def n_solenoids(self) -> int:
        return len(self.solenoid_halves)

    # ------------------------------------------------------------------ knobs
    def apply(
        self,
        corrector_currents: torch.Tensor | None = None,
        solenoid_currents: torch.Tensor | None = None,
        errors: MachineErrors | None = None,
    ) -> None:
        """Set corrector currents (..., n_correctors), solenoid currents (..., n_solenoids) and errors.

        ``None`` leaves correctors at 0 A and solenoids at their design currents. Tensors may
        require grad; the readings are then differentiable with respect to them.
        """
        if corrector_currents is not None and corrector_currents.shape[-1] != self.n_correctors:
            raise ValueError(
                f"{self.lattice.name}: corrector currents have {corrector_currents.shape[-1]} values, expected {self.n_correctors}"
            )
        if solenoid_currents is not None and solenoid_currents.shape[-1] != self.n_solenoids:
            raise ValueError(
                f"{self.lattice.name}: solenoid currents have {solenoid_currents.shape[-1]} values, expected {self.n_solenoids}"
            )
        if corrector_currents is None:
            corrector_currents = torch.zeros(self.n_correctors, device=self.device, dtype=self.dtype)
        if solenoid_currents is None:
            solenoid_currents = self._t(self.solenoid_design_current_A)
        angles = corrector_currents * self.corrector_rad_per_A_t
        k = solenoid_currents * self.solenoid_k_per_A_t
        if errors is not None:
            angles = angles * errors.corrector_gain
            k = k * errors.solenoid_field_scale
        zeros2 = torch.zeros(2, device=self.device, dtype=self.dtype)
        sol_offset = errors.solenoid_offset_m if errors is not None else None
        bpm_offset = errors.bpm_offset_m if errors is not None else None
        # cheetah caches transfer maps under (id(tensor), tensor._version), and ids of freed tensors
        # are reused: whenever a knob tensor is replaced, its element's cache is dropped. Solenoids
        # and BPMs are replaced only when their values change, so their maps stay cached between steps.
        for i, corr in enumerate(self.correctors):
            corr.horizontal_angle = angles[..., 2 * i]
            corr.vertical_angle = angles[..., 2 * i + 1]
            corr.__dict__.pop("_cache", None)
        if self._changed("solenoids", k, sol_offset):
            for i, halves in enumerate(self.solenoid_halves):
                for half in halves:
                    half.k = k[..., i].clone()
                    half.misalignment = sol_offset[..., i, :].clone() if sol_offset is not None else zeros2
                    half.__dict__.pop("_cache", None)
        if self._changed("bpms", bpm_offset):
            for i, bpm in enumerate(self.bpms):
                bpm.misalignment = bpm_offset[..., i, :].clone() if bpm_offset is not None else zeros2
                bpm.__dict__.pop("_cache", None)

    def _changed(self, group: str, *tensors: torch.Tensor | None) -> bool:
        """Whether ``tensors`` differ from what ``group`` was last set to (always True with gradients)."""
        last = self._applied.get(group)
        if any(t is not None and t.requires_grad for t in tensors):
            self._applied.pop(group, None)
            return True
        if last is not None and all(
            (a is None and b is None) or (a is not None and b is not None and a.shape == b.shape and torch.equal(a, b))
            for a, b in zip(last, tensors, strict=True)
        ):
            return False
        self._applied[group] = tuple(None if t is None else t.detach().clone() for t in tensors)
        return True

    # ------------------------------------------------------------------ tracking
    def centroid_beam(self, injection: torch.Tensor | None = None) -> cheetah.ParameterBeam:
        """A ParameterBeam at the entrance with the lattice's Twiss and centroid ``injection`` (..., 4)."""
        tw = self.lattice.beam.twiss
        t = self._t
        inj = injection if injection is not None else torch.zeros(4, device=self.device, dtype=self.dtype)
        return cheetah.ParameterBeam.from_parameters(
            mu_x=inj[..., 0],
            mu_px=inj[..., 1],
            mu_y=inj[..., 2],
            mu_py=inj[..., 3],
            sigma_x=t((tw["beta_x_m"] * tw["emittance_x_m"]) ** 0.5),
            sigma_px=t((tw["emittance_x_m"] * (1 + tw["alpha_x"] ** 2) / tw["beta_x_m"]) ** 0.5),
            sigma_y=t((tw["beta_y_m"] * tw["emittance_y_m"]) ** 0.5),
            sigma_py=t((tw["emittance_y_m"] * (1 + tw["alpha_y"] ** 2) / tw["beta_y_m"]) ** 0.5),
            energy=self.energy,
            species=self.species,
            device=self.device,
            dtype=self.dtype,
        )

    def bpm_positions(self) -> torch.Tensor:
        """(..., n_bpms, 2) readings of the last track, in metres (beam centroid minus BPM offset)."""
        return torch.stack([b.reading for b in self.bpms], dim=-2)

    def readings_mm(self) -> torch.Tensor:
        """(..., 2 n_bpms) readings of the last track in mm, x/y interleaved."""
        pos = self.bpm_positions()
        return pos.reshape(*pos.shape[:-2], -1) * 1e3

    def orbit_mm(
        self,
        corrector_currents: torch.Tensor | None = None,
        errors: MachineErrors | None = None,
        solenoid_currents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Track the beam centroid with these settings; return BPM readings (..., 2 n_bpms) in mm.

        One cheetah ``track`` call for the whole batch; differentiable in the settings.
        """
        self.apply(corrector_currents, solenoid_currents, errors)
        self.segment.track(self.centroid_beam(errors.injection if errors is not None else None))
        return self.readings_mm()

    def response_matrix(self, errors: MachineErrors | None = None, delta_A: float = 1.0) -> torch.Tensor:
        """d readings / d currents, (B, 2 n_bpms, n_correctors) in mm/A, from one batched track.

        The orbit is affine in the corrector currents, so the difference quotient is exact.
        ``errors`` (batch B) gives the response of those machines; ``None`` the ideal one (B = 1).
        """
        nc = self.n_correctors
        batch = errors.corrector_gain.shape[0] if errors is not None else 1
        probes = torch.cat([torch.zeros(1, nc), delta_A * torch.eye(nc)]).to(self.device, self.dtype)  # (nc+1, nc)
        currents = probes[:, None, :].expand(nc + 1, batch, nc)
        readings = self.orbit_mm(currents, errors)  # (nc+1, B, 2 nb)
        if readings.dim() == 2:  # no batch dimension survived broadcasting
            readings = readings[:, None, :]
        return ((readings[1:] - readings[:1]) / delta_A).permute(1, 2, 0)


def nominal_model(lattice: str | Lattice = "cm1", device: torch.device | str = "cpu") -> BeamlineModel:
    """The error-free model of a lattice (for response matrices and gradient-based correction)."""
    return BeamlineModel(lattice, device=device)
