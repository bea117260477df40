"""The calibration document: what the trainer needs to know about the circuit.

A calibration is one versioned JSON file holding the neuron activation (static; load-aware and
coupled-model parts are added by later stages), the device conductance window and levels, the
rails, and the provenance and residuals of every fit. It loads back into the same objects.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memspice.circuit.wiring import Rails
from memspice.errors import ConfigError

#: Bump when the JSON layout changes incompatibly; loaders refuse other versions.
FORMAT_VERSION = 1
FORMAT_NAME = "memspice-calibration"


def _finite(name: str, value: float) -> float:
    if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class TanhActivation:
    """``V_out = c1 + c2·tanh(c4·(V_in − c3))``.

    Attributes:
        c1: output offset (V).
        c2: output half-swing (V); negative for an inverting stage.
        c3: input switching point (V).
        c4: steepness (1/V); ``c2·c4`` is the small-signal gain at ``V_in = c3``.
    """

    c1: float
    c2: float
    c3: float
    c4: float

    def __post_init__(self) -> None:
        for name in ("c1", "c2", "c3", "c4"):
            _finite(f"activation {name}", getattr(self, name))
        if self.c4 <= 0:
            raise ConfigError(f"activation c4 must be positive, got {self.c4}")
        if self.c2 == 0:
            raise ConfigError("activation c2 must be non-zero")

    def __call__(self, v_in: np.ndarray) -> np.ndarray:
        return self.c1 + self.c2 * np.tanh(self.c4 * (v_in - self.c3))

    def derivative(self, v_in: np.ndarray) -> np.ndarray:
        """``dV_out/dV_in`` (V/V)."""
        t = np.tanh(self.c4 * (v_in - self.c3))
        return self.c2 * self.c4 * (1.0 - t * t)

    @property
    def gain(self) -> float:
        """Peak small-signal gain ``|c2·c4|`` (V/V)."""
        return abs(self.c2 * self.c4)


@dataclass(frozen=True, slots=True)
class NeuronActivation:
    """The two outputs of a two-inverter neuron as functions of its column voltage.

    Attributes:
        inverting: column → ``outn`` (after inverter 1; ``c2 < 0``).
        noninverting: column → ``outp`` (after inverter 2; ``c2 > 0``).
    """

    inverting: TanhActivation
    noninverting: TanhActivation

    def __post_init__(self) -> None:
        if self.inverting.c2 >= 0:
            raise ConfigError("the inverting activation needs c2 < 0")
        if self.noninverting.c2 <= 0:
            raise ConfigError("the non-inverting activation needs c2 > 0")


@dataclass(frozen=True, slots=True)
class DeviceWindow:
    """Programmable conductance window of the memristors.

    Attributes:
        g_min_siemens: lowest conductance (S), > 0.
        g_max_siemens: highest conductance (S), > g_min.
        levels: number of distinguishable levels (0 = continuous).
    """

    g_min_siemens: float
    g_max_siemens: float
    levels: int = 0

    def __post_init__(self) -> None:
        g_min = _finite("g_min_siemens", self.g_min_siemens)
        g_max = _finite("g_max_siemens", self.g_max_siemens)
        if g_min <= 0:
            raise ConfigError(f"g_min must be positive, got {g_min} S")
        if g_min >= g_max:
            raise ConfigError(f"g_min ({g_min} S) must be below g_max ({g_max} S)")
        if not isinstance(self.levels, int) or self.levels < 0 or self.levels == 1:
            raise ConfigError(f"levels must be 0 (continuous) or at least 2, got {self.levels!r}")



def _coefficients(name: str, values: Any) -> tuple[float, ...]:
    coeffs = tuple(_finite(name, v) for v in values)
    if not coeffs:
        raise ConfigError(f"{name} needs at least one coefficient")
    return coeffs


@dataclass(frozen=True, slots=True)
class LoadAwareActivation:
    """Activation parameters as polynomials in the logarithm of the stage's load conductance.

    With ``u = ln(G / g_scale_siemens)`` and polynomials ``P(u) = Σ_k coeffs[k]·u^k``:
    ``c1 = P_c1(u)``, ``c2 = c2_sign·exp(P_log_abs_c2(u))``, ``c3 = P_c3(u)``,
    ``c4 = exp(P_log_c4(u))`` for ``G`` in ``[g_load_min_siemens, g_load_max_siemens]`` (outside
    that range the model extrapolates). The logarithm of ``G`` suits load grids that span
    decades (0.1–2 MΩ); the logarithms of ``|c2|`` and ``c4`` keep them of fixed sign.

    Attributes:
        c1: coefficients of ``c1`` (V), lowest power first.
        log_abs_c2: coefficients of ``ln(|c2| / 1 V)``.
        c3: coefficients of ``c3`` (V).
        log_c4: coefficients of ``ln(c4 · 1 V)``.
        c2_sign: +1 (non-inverting) or −1 (inverting).
        g_scale_siemens: conductance unit inside the logarithm (S), e.g. 1e-6.
        g_load_min_siemens: smallest load conductance characterized (S).
        g_load_max_siemens: largest load conductance characterized (S).
        rms_v: RMS over all characterized curves of (model at that load − SPICE) (V).
        max_abs_v: largest absolute error over those curves (V).
    """

    c1: tuple[float, ...]
    log_abs_c2: tuple[float, ...]
    c3: tuple[float, ...]
    log_c4: tuple[float, ...]
    c2_sign: float
    g_scale_siemens: float
    g_load_min_siemens: float
    g_load_max_siemens: float
    rms_v: float
    max_abs_v: float

    def __post_init__(self) -> None:
        for name in ("c1", "log_abs_c2", "c3", "log_c4"):
            object.__setattr__(self, name, _coefficients(f"load-aware {name}", getattr(self, name)))
        if self.c2_sign not in (1.0, -1.0):
            raise ConfigError(f"c2_sign must be +1 or -1, got {self.c2_sign!r}")
        if _finite("g_scale_siemens", self.g_scale_siemens) <= 0:
            raise ConfigError("g_scale_siemens must be positive")
        g_lo = _finite("g_load_min_siemens", self.g_load_min_siemens)
        g_hi = _finite("g_load_max_siemens", self.g_load_max_siemens)
        if not 0 < g_lo < g_hi:
            raise ConfigError(f"load conductance range must satisfy 0 < min < max, got [{g_lo}, {g_hi}] S")
        _finite("rms_v", self.rms_v)
        _finite("max_abs_v", self.max_abs_v)

    def at(self, g_load_siemens: float) -> TanhActivation:
        """The activation under a load of ``g_load_siemens`` (S), which must be > 0."""
        g = _finite("g_load_siemens", g_load_siemens)
        if g <= 0:
            raise ConfigError(f"load conductance must be positive, got {g} S")
        u = math.log(g / self.g_scale_siemens)
        poly = np.polynomial.polynomial.polyval
        return TanhActivation(
            c1=float(poly(u, self.c1)),
            c2=self.c2_sign * math.exp(float(poly(u, self.log_abs_c2))),
            c3=float(poly(u, self.c3)),
            c4=math.exp(float(poly(u, self.log_c4))),
        )


@dataclass(frozen=True, slots=True)
class LoadAwareNeuron:
    """Load-aware activations of both neuron outputs (each stage loaded by the same ``G``).

    Attributes:
        inverting: column → ``outn`` as a function of the load conductance.
        noninverting: column → ``outp`` as a function of the load conductance.
    """

    inverting: LoadAwareActivation
    noninverting: LoadAwareActivation


@dataclass(frozen=True, slots=True)
class InverterCurrentModel:
    """DC output current of one inverter, tabulated on a (V_in, V_out) grid.

    Attributes:
        v_in: input grid (V), strictly increasing.
        v_out: output grid (V), strictly increasing.
        current_a: ``current_a[i][j]`` is the current (A) the inverter delivers into its output
            node at ``(v_in[i], v_out[j])`` (positive = sourcing).
        interp_rms_a: RMS error (A) of the cubic spline interpolant at held-out midpoints.
        interp_max_a: largest absolute error (A) at those points.
    """

    v_in: tuple[float, ...]
    v_out: tuple[float, ...]
    current_a: tuple[tuple[float, ...], ...]
    interp_rms_a: float
    interp_max_a: float

    def __post_init__(self) -> None:
        v_in = tuple(_finite("v_in", v) for v in self.v_in)
        v_out = tuple(_finite("v_out", v) for v in self.v_out)
        for name, grid in (("v_in", v_in), ("v_out", v_out)):
            if len(grid) < 4 or any(b <= a for a, b in zip(grid[:-1], grid[1:])):
                raise ConfigError(f"inverter current {name} grid needs >= 4 strictly increasing points")
        table = tuple(tuple(_finite("current_a", c) for c in row) for row in self.current_a)
        if len(table) != len(v_in) or any(len(row) != len(v_out) for row in table):
            raise ConfigError("inverter current table shape does not match its grids")
        object.__setattr__(self, "v_in", v_in)
        object.__setattr__(self, "v_out", v_out)
        object.__setattr__(self, "current_a", table)
        _finite("interp_rms_a", self.interp_rms_a)
        _finite("interp_max_a", self.interp_max_a)

    def table(self) -> np.ndarray:
        """The current table as a ``(len(v_in), len(v_out))`` array (A)."""
        return np.asarray(self.current_a, dtype=np.float64)

    def interpolant(self) -> Any:
        """A bicubic ``scipy.interpolate.RectBivariateSpline`` (``.ev(vin, vout, dx=, dy=)``)."""
        from scipy.interpolate import RectBivariateSpline

        return RectBivariateSpline(np.asarray(self.v_in), np.asarray(self.v_out), self.table(), kx=3, ky=3, s=0)


#: PHAX device window: G = 8 µS·x, x ∈ [0.015, 1] (Yakopcic model, a1 = a2 = 1.6e-4).
PHAX_WINDOW = DeviceWindow(g_min_siemens=8e-6 * 0.015, g_max_siemens=8e-6)


@dataclass(frozen=True, slots=True)
class Calibration:
    """Everything the trainer consumes about the circuit.

    Attributes:
        rails: supply rails.
        activation: static neuron activation.
        device: memristor conductance window.
        source: provenance (technology, sizing, corner, load, command) — free-form strings.
        residuals: fit residuals by name (V), e.g. ``{"noninverting_rms": 1e-4}``.
        extras: JSON-safe payloads of later calibration modes (load-aware, coupled), by name.
        load_aware: activation as a function of load conductance (optional).
        inverter_current: inverter output-current table for the coupled model (optional).
    """

    rails: Rails
    activation: NeuronActivation
    device: DeviceWindow
    source: dict[str, str] = field(default_factory=dict)
    residuals: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    load_aware: LoadAwareNeuron | None = None
    inverter_current: InverterCurrentModel | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict including the format name and version.

        The optional models are written only when present, so documents without them are
        byte-identical to earlier ones (and keep their digests).
        """
        data = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **asdict(self)}
        for key in ("load_aware", "inverter_current"):
            if data[key] is None:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: another format or version, or a missing/invalid field.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ConfigError("not a memspice calibration document (missing 'format')")
        if data.get("version") != FORMAT_VERSION:
            raise ConfigError(
                f"calibration format version {data.get('version')!r} is not supported "
                f"(this memspice reads version {FORMAT_VERSION})"
            )
        try:
            act = data["activation"]
            return cls(
                rails=Rails(**data["rails"]),
                activation=NeuronActivation(
                    inverting=TanhActivation(**act["inverting"]),
                    noninverting=TanhActivation(**act["noninverting"]),
                ),
                device=DeviceWindow(**data["device"]),
                source={str(k): str(v) for k, v in data.get("source", {}).items()},
                residuals={str(k): float(v) for k, v in data.get("residuals", {}).items()},
                extras=dict(data.get("extras", {})),
                load_aware=_load_aware_from(data.get("load_aware")),
                inverter_current=None if data.get("inverter_current") is None
                else InverterCurrentModel(**data["inverter_current"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"calibration document is incomplete or malformed: {type(exc).__name__}: {exc}") from exc

    def digest(self) -> str:
        """Stable SHA-256 of the canonical JSON (used to tie trained weights to it)."""
        import hashlib

        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _load_aware_from(data: dict[str, Any] | None) -> LoadAwareNeuron | None:
    if data is None:
        return None
    return LoadAwareNeuron(
        inverting=LoadAwareActivation(**data["inverting"]),
        noninverting=LoadAwareActivation(**data["noninverting"]),
    )


def save_calibration(calibration: Calibration, path: Path) -> None:
    """Write a calibration atomically (temp file + rename)."""
    from memspice.safe_io import write_text_atomic

    write_text_atomic(Path(path), json.dumps(calibration.to_dict(), indent=2, sort_keys=True) + "\n")


def load_calibration(path: Path) -> Calibration:
    """Read a calibration JSON file.

    Raises:
        ConfigError: missing file, invalid JSON, or another format version.
    """
    from memspice.safe_io import read_document

    path = Path(path)
    try:
        data = json.loads(read_document(path, "calibration file"), parse_constant=_refuse_constant)
    except FileNotFoundError as exc:
        raise ConfigError(f"calibration file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"calibration file {path} is a directory") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"calibration file {path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read calibration file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"calibration file {path}: {exc}") from exc
    try:
        return Calibration.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"calibration file {path}: {exc}") from exc


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a calibration may hold")


def phax_reference_calibration(rails: Rails = Rails()) -> Calibration:
    """A calibration built in code from PHAX's published fits (TSMC 90 nm, ±0.25 V, 0.9 MΩ load).

    One inverter: c4 ≈ 31.8 /V; two inverters: c4 ≈ 193 /V. The swing is taken as 0.96 of the
    half-supply. Useful for tests and as a starting point; real runs calibrate from SPICE.
    """
    half = rails.half_swing
    mid = rails.mid
    return Calibration(
        rails=rails,
        activation=NeuronActivation(
            inverting=TanhActivation(c1=mid, c2=-0.96 * half, c3=mid, c4=31.8),
            noninverting=TanhActivation(c1=mid, c2=0.96 * half, c3=mid, c4=193.0),
        ),
        device=PHAX_WINDOW,
        source={"origin": "PHAX published fits (TSMC 90 nm LVT, 0.9 MOhm load)"},
    )
