"""``validate_network``: a trained network back in SPICE, compared neuron by neuron.

Flow: check that the data fits the network → apply optional non-idealities to the netlisted
conductances → order samples for fast sweeps and cut them into batches → run the batches
(local pool or Dask; finished batches are reused on re-runs) → model voltages from the
trainer's own forward (:meth:`TrainedNetwork.layer_voltages`) → comparison, power, transient
figures → files in the run directory (:mod:`memspice.validate.report`).

Dense networks (:class:`TrainedNetwork`) and layer-described ones
(:class:`~memspice.train.conv_io.TrainedCrossbarNetwork`: conv, pooled, masked) go through the
same steps; only the circuit (a :class:`~memspice.validate.decks.ValidationCircuit`) and the
model voltages differ (:mod:`memspice.validate.layered`). A layered network without conv,
pooling or masks is validated as the dense network it is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memspice.circuit.builders import InverterSizing
from memspice.errors import ConfigError, DataError
from memspice.safe_io import check_output_dir, json_safe, write_atomic, write_text_atomic
from memspice.sim import SimOptions
from memspice.sim.info import simulator_info
from memspice.tech.technology import Technology
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.forward import LayerState, make_evaluator
from memspice.train.network_io import TrainedNetwork
from memspice.validate.compare import Comparison, LayerVoltages, compare
from memspice.validate.decks import (NetworkCircuit, TransientSpec, ValidationCircuit, balanced_cuts,
                                     similarity_order, sweep_work)
from memspice.validate.energy import static_power
from memspice.validate.execute import BatchFailure, BatchJob, BatchStore, ExecutionResult, Mode, execute
from memspice.validate.nonideal import DeviceDraw, NonIdeality, apply_device_nonidealities

MANIFEST_NAME = "manifest.json"

#: Samples per transient deck. Transient decks are long (``points_per_period`` time points per
#: sample), so they are cut small to run in parallel; the size is fixed, not derived from the
#: worker count, because each deck starts from the reset step and results must not depend on
#: how many workers ran them.
TRANSIENT_BATCH = 4


@dataclass(frozen=True)
class RunSettings:
    """How validation runs (not what it validates).

    Attributes:
        batch_size: samples per deck (one ngspice process each); the samples go into
            ``ceil(n / batch_size)`` batches of equal predicted Newton work (``similarity``)
            or equal size (``given``).
        workers: local ngspice processes at once (``None`` = CPU count).
        scheduler: Dask scheduler address or ``distributed.Client``; ``None`` = local pool.
        timeout_s: wall-clock limit per batch (s).
        order: ``similarity`` (one nearest-neighbour path through the model's neuron
            voltages, cut into batches of equal predicted work) or ``given``.
        transient_samples: samples also run in transient mode (0 = none).
        transient: time base of the transient mode.
        resume: reuse batches finished by an earlier run with the same inputs.
        force: discard earlier batches and start over.
        keep_failed: keep failed ngspice run directories under ``<out>/failed``.
        ngspice: the ngspice executable (name on ``PATH`` or a path), e.g. the ngspice 46 build
            of ``scripts/build_ngspice.sh`` (KLU, ``--enable-predictor``; see docs/simulator.md);
            ``None`` = ``$MEMSPICE_NGSPICE``, else ``ngspice`` on ``PATH``. With Dask it must
            exist on the workers.
    """

    batch_size: int = 500
    workers: int | None = None
    scheduler: Any = None
    timeout_s: float = 600.0
    order: str = "similarity"
    transient_samples: int = 0
    transient: TransientSpec = field(default_factory=TransientSpec)
    resume: bool = False
    force: bool = False
    keep_failed: bool = True
    ngspice: str | None = None

    def __post_init__(self) -> None:
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if self.workers is not None and int(self.workers) < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if self.order not in ("similarity", "given"):
            raise ConfigError(f"order must be 'similarity' or 'given', got {self.order!r}")
        if int(self.transient_samples) < 0:
            raise ConfigError("transient samples must be non-negative")
        if self.ngspice is not None and (not isinstance(self.ngspice, str) or not self.ngspice.strip()):
            raise ConfigError(f"the ngspice executable must be a non-empty name or path, got {self.ngspice!r}")


@dataclass
class ValidationReport:
    """Everything a validation produced.

    Attributes:
        comparison: SPICE vs model figures (over the samples whose batches finished).
        spice: per layer, simulated outputs in sample order (V).
        model: per layer, model outputs for the same samples (V).
        labels: classes of the compared samples.
        sample_index: sample numbers of the compared samples.
        power_w: ``(S,)`` static power per sample from both rails (W): the inverters, and the
            crossbars they drive.
        transient: per-sample ``delay_s``, ``energy_j`` and ``sample`` for the transient subset.
        failures: failed batches (the run is incomplete when non-empty).
        execution: timing and reuse of the DC batches.
        draw: conductances as netlisted and the stuck-device masks.
        summary: JSON-safe summary (also written to ``summary.json``).
        files: written artifacts by name.
        transient_waves: waveforms of the first transient batch: ``time_s``, last-layer ``outp``,
            rail ``power_w``, and that batch's ``sample``, ``delay_s`` and ``period_s``.
        input_power_w: ``(S,)`` static power the input drivers deliver per sample (W): the first
            crossbar, which the rails do not feed (empty for batches stored without it).
        feature_maps: layered networks with conv layers: one image's maps
            (:func:`memspice.validate.layered.feature_maps`), empty otherwise.
    """

    comparison: Comparison | None
    spice: list[LayerVoltages]
    model: list[LayerVoltages]
    labels: np.ndarray
    sample_index: np.ndarray
    power_w: np.ndarray
    transient: dict[str, np.ndarray]
    failures: list[BatchFailure]
    execution: ExecutionResult
    draw: DeviceDraw
    summary: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    transient_waves: dict[str, np.ndarray] = field(default_factory=dict)
    input_power_w: np.ndarray = field(default_factory=lambda: np.empty(0))
    feature_maps: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every batch finished."""
        return not self.failures


#: Keys of a calibration's ``source`` that record the inverter sizing it was made at (m).
SIZING_KEYS = ("wn_m", "wp_m", "ln_m", "lp_m")
#: ... and the parallel devices (SPICE ``m``) per transistor.
PARALLEL_KEYS = ("mn", "mp")


def recorded_sizing(calibration: Any) -> InverterSizing | None:
    """The inverter sizing a calibration was characterized at (its ``source``), or None if unrecorded.

    Raises:
        ConfigError: the calibration records a sizing that is not four positive sizes.
    """
    source = calibration.source
    if not any(k in source for k in SIZING_KEYS):
        return None
    try:
        parallel = {k: int(source.get(k, 1)) for k in PARALLEL_KEYS}  # recorded only when not 1
        return InverterSizing(*(float(source[k]) for k in SIZING_KEYS), **parallel)
    except (KeyError, ValueError, ConfigError) as exc:
        raise ConfigError(f"the calibration's recorded inverter sizing is incomplete or malformed: {exc}") from None


def sizing_conflicts(given: InverterSizing, recorded: InverterSizing) -> list[str]:
    """Names of the sizes (``wn``, ``wp``, ``ln``, ``lp``, ``mn``, ``mp``) where ``given`` differs from ``recorded``."""
    return [k[:2] for k in SIZING_KEYS
            if abs(getattr(given, k) - getattr(recorded, k)) > 1e-9 * max(getattr(recorded, k), 1e-12)] + [
        k for k in PARALLEL_KEYS if getattr(given, k) != getattr(recorded, k)]


def describe_sizing(sizing: InverterSizing) -> str:
    """``Wn = 1.2 µm, Wp = 1 µm, Ln = 0.1 µm, Lp = 0.1 µm``."""
    sizes = ", ".join(f"{k[0].upper()}{k[1]} = {getattr(sizing, k) * 1e6:g} µm" for k in SIZING_KEYS)
    parallel = "".join(f", {k} = {getattr(sizing, k)}" for k in PARALLEL_KEYS if getattr(sizing, k) != 1)
    return sizes + parallel


def network_sizing(network: TrainedNetwork | TrainedCrossbarNetwork, sizing: InverterSizing | None = None) -> InverterSizing:
    """The sizing to simulate ``network`` at: the one its calibration was made at.

    ``sizing`` (when given) must agree with the recorded one: a network calibrated at one sizing
    and simulated at another disagrees with its model by hundreds of millivolts. Without a
    recorded sizing, ``sizing`` or PHAX's reference sizing is used.

    Raises:
        ConfigError: ``sizing`` differs from the recorded sizing.
    """
    recorded = recorded_sizing(network.calibration)
    if recorded is None:
        return sizing or InverterSizing()
    if sizing is not None and sizing_conflicts(sizing, recorded):
        raise ConfigError(f"the inverter sizing asked for ({describe_sizing(sizing)}) differs from the one the "
                          f"network's calibration was made at ({describe_sizing(recorded)}); simulate at the "
                          "recorded sizing or calibrate and train again at the new one")
    return recorded


def as_validated(network: TrainedNetwork | TrainedCrossbarNetwork) -> TrainedNetwork | TrainedCrossbarNetwork:
    """``network`` as validation builds it: a layered network without conv, pooling or masks is
    the dense :class:`TrainedNetwork` it describes (subcircuit neurons, wire resistance, the
    dense evaluators); any other network is returned unchanged.

    Raises:
        ConfigError: ``network`` is neither kind.
    """
    if isinstance(network, TrainedNetwork):
        return network
    if not isinstance(network, TrainedCrossbarNetwork):
        raise ConfigError(f"validation takes a TrainedNetwork or a TrainedCrossbarNetwork, not "
                          f"{type(network).__name__}")
    spec = network.spec
    if spec.is_dense and all(m is None for m in spec.masks) and spec.topology is not None:
        return TrainedNetwork(spec.topology, tuple(network.conductances), network.calibration, network.evaluator,
                              network.faults, network.metadata)
    return network


def network_io(network: TrainedNetwork | TrainedCrossbarNetwork) -> tuple[int, int, str]:
    """Inputs, classes and a short description of the network's shape (for messages)."""
    if isinstance(network, TrainedNetwork):
        return network.topology[0], network.topology[-1], f"topology {network.topology}"
    spec = network.spec
    return spec.n_inputs, spec.n_outputs, f"input shape {spec.input_shape}"


def check_data(network: TrainedNetwork | TrainedCrossbarNetwork, x: np.ndarray,
               labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs against the network's topology (or input shape).

    A layered network also takes images ``(samples, *input_shape)``, flattened in C order.

    Raises:
        DataError: wrong feature count, label out of range, mismatched lengths, or bad values.
    """
    n_inputs, n_classes, shape = network_io(network)
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if isinstance(network, TrainedCrossbarNetwork) and x.ndim > 2:
        if x.shape[1:] != tuple(network.spec.input_shape):
            raise DataError(f"the network takes {n_inputs} inputs ({shape}) but the data has samples of "
                            f"shape {x.shape[1:]}")
        x = x.reshape(len(x), -1)
    if x.ndim != 2:
        raise DataError(f"inputs must be a (samples, features) array, got shape {x.shape}")
    if x.shape[1] != n_inputs:
        raise DataError(f"the network takes {n_inputs} inputs ({shape}) "
                        f"but the data has {x.shape[1]} features")
    if labels.ndim != 1 or len(labels) != len(x) or len(x) == 0:
        raise DataError(f"{len(x)} samples but {len(labels)} labels")
    if not np.all(np.isfinite(x)):
        raise DataError("inputs contain NaN or infinite values")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"labels span [{labels.min()}, {labels.max()}] but the network has "
                        f"{n_classes} outputs ({shape})")
    rails = network.calibration.rails
    if x.min() < rails.vss - 1e-9 or x.max() > rails.vdd + 1e-9:
        raise DataError(f"input voltages span [{x.min():g}, {x.max():g}] V, outside the rails "
                        f"[{rails.vss:g}, {rails.vdd:g}] V; map features with features_to_voltages")
    return x, labels.astype(np.int64)


def plan_batches(x: np.ndarray, batch_size: int, order: str, features: np.ndarray | None = None) -> list[np.ndarray]:
    """Sample numbers of each batch, in deck order.

    The samples go into ``ceil(n / batch_size)`` batches. With ``given``, contiguous batches
    in the given order, of equal size (±1). With ``similarity``, one nearest-neighbour path
    through all samples (:func:`similarity_order` on ``features``, default the inputs) is cut
    into consecutive runs of equal *predicted Newton work* (:func:`sweep_work`), so parallel
    workers finish together; batch sizes then differ (typically by 5–15 %).

    Why: the end of a greedy path holds the leftovers, far apart, and costs more per sample.
    Measured on digits 64-32-10 (1,797 samples, 2 batches): equal halves needed 6,725 and
    7,705 Newton iterations; cuts at equal predicted work 7,220 and 7,210 (ideal 7,215).
    Ordering history, Newton iterations per sample: 8.1–8.2 with each batch ordered by its own
    inputs, 7.79 with one path by inputs, 7.51 by the hidden outputs (session-2 network);
    on a second trained network 8.35 by the hidden outputs and 8.03 by every neuron node
    (:func:`ordering_features`). Other paths (greedy matching, predictor-aware greedy,
    class-clustered, reweighted layers) gave 8.00–8.23: none beat it by more than 0.4 %.
    """
    n = len(x)
    count = max(1, -(-n // batch_size))
    if order != "similarity":
        return [part for part in np.array_split(np.arange(n), count) if len(part)]
    f = x if features is None else np.asarray(features)
    sequence = similarity_order(f)
    return [sequence[part] for part in balanced_cuts(sweep_work(f[sequence]), count)]


def ordering_features(states: Sequence[LayerState]) -> np.ndarray:
    """What :func:`plan_batches` orders by: every neuron node of every layer (column, outn, outp; V).

    These are the MOSFET terminal voltages ngspice extrapolates between sweep points. The
    output layer matters most: its unloaded second inverters converge last (measured: the
    largest Newton update of a slow point is nearly always at an output neuron's ``outp``).
    """
    return np.hstack([getattr(s, name) for s in states for name in ("column", "outn", "outp")])


PLAN_NAME = "plan.npz"


def save_plan(out_dir: Path, batches: list[np.ndarray]) -> None:
    """Store the batch plan, so a resumed run cuts exactly the same batches."""
    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, *batches)

    write_atomic(out_dir / PLAN_NAME, writer)


def stored_plan(out_dir: Path, n_samples: int) -> list[np.ndarray] | None:
    """The stored batch plan, or ``None`` when there is none that covers ``n_samples`` samples."""
    path = out_dir / PLAN_NAME
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            batches = [data[f"arr_{i}"] for i in range(len(data.files))]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if not all(b.ndim == 1 and b.dtype.kind in "iu" for b in batches):
        return None
    joined = np.concatenate(batches) if batches else np.empty(0, dtype=np.int64)
    if len(joined) != n_samples or not np.array_equal(np.sort(joined), np.arange(n_samples)):
        return None
    return batches


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
    return h.hexdigest()


def prepare_run_dir(out_dir: Path, manifest: dict[str, Any], resume: bool, force: bool) -> None:
    """Create ``out_dir`` and reconcile it with earlier results.

    Raises:
        ConfigError: earlier results exist and neither ``resume`` nor ``force`` is set, or
            ``resume`` is set but they came from other inputs.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MANIFEST_NAME
    stored = None
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # unreadable: refused below unless --force
            stored = "unreadable"
    has_batches = any((out_dir / "batches").glob("*.npz")) if (out_dir / "batches").is_dir() else False
    if force:
        for mode in ("dc", "transient"):
            BatchStore(out_dir, mode).clear()
    elif has_batches:
        if not resume:
            raise ConfigError(f"{out_dir} already holds validation results; pass --resume to reuse "
                              "finished batches or --force to start over")
        if stored == "unreadable":
            raise ConfigError(f"{path} is unreadable, so the batches in {out_dir} cannot be matched to this run; "
                              "use --force to replace them or choose another --out")
        if stored != manifest:
            raise ConfigError(f"{out_dir} holds results of another network, data or settings; "
                              "use --force to replace them or choose another --out")
    write_text_atomic(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _jobs(mode: Mode, batches: list[np.ndarray], x: np.ndarray, circuit: ValidationCircuit,
          settings: RunSettings, sim: SimOptions, reference: np.ndarray | None = None) -> list[BatchJob]:
    return [BatchJob(i, b, x[b], circuit, mode, settings.transient, sim, None if reference is None else reference[b])
            for i, b in enumerate(batches)]


def _for_mode(progress: Any, mode: Mode) -> Any:
    """``progress(mode, done, total)`` as the ``callable(done, total)`` that :func:`execute` calls."""
    return None if progress is None else (lambda done, total: progress(mode, done, total))


def dc_reference(dc: ExecutionResult, n_samples: int, last_layer: int) -> np.ndarray:
    """``(S, 2M)`` last-layer DC operating points ``[outp…, outn…]`` by sample (NaN where missing)."""
    reference: np.ndarray | None = None
    for arrays in dc.batches.values():
        values = np.column_stack([arrays[f"outp{last_layer}"], arrays[f"outn{last_layer}"]])
        if reference is None:
            reference = np.full((n_samples, values.shape[1]), np.nan)
        reference[np.asarray(arrays["sample_index"], dtype=np.int64)] = values
    return np.full((n_samples, 0), np.nan) if reference is None else reference


@dataclass(frozen=True)
class Subject:
    """What a validation run needs of its network, whatever its kind.

    Attributes:
        circuit: the circuit as netlisted.
        draw: the conductances as netlisted (per layer, dense ``(M, 2N+2)`` or per device
            ``(n_columns, D)``) and the stuck devices.
        states: the model's voltages of every layer for all samples.
        evaluator: the model's evaluator.
    """

    circuit: ValidationCircuit
    draw: DeviceDraw
    states: tuple[LayerState, ...]
    evaluator: str


def dense_subject(network: TrainedNetwork, tech: Technology, sizing: InverterSizing, x: np.ndarray,
                  nonideal: NonIdeality, evaluator: str | None,
                  device_conductances: Sequence[np.ndarray] | None = None) -> Subject:
    """A dense network: non-idealities drawn on its conductance matrices (or ``device_conductances``
    built as given), subcircuit neurons."""
    if device_conductances is None:
        draw = apply_device_nonidealities(network.conductances, nonideal, network.faults)
    else:
        draw = given_dense_devices(network, device_conductances, nonideal)
    circuit = NetworkCircuit(tech, sizing, draw.conductances, nonideal.wire_ohm)
    return Subject(circuit, draw, tuple(network.layer_voltages(x, evaluator)), evaluator or network.evaluator)


def given_dense_devices(network: TrainedNetwork, device_conductances: Sequence[np.ndarray],
                        nonideal: NonIdeality) -> DeviceDraw:
    """``device_conductances`` of a dense network as a draw: one ``(M, 2N+2)`` array per layer in
    wiring order (the per-device layout of a dense layer), every device present (> 0 S).

    Raises:
        ConfigError: variation or faults asked for as well, wrong layers or shapes, or a device
            that is absent, negative or not finite.
    """
    if nonideal.any_device_change:
        raise ConfigError("give either drawn device conductances or variation and faults to draw, not both")
    arrays = [np.asarray(g, dtype=np.float64) for g in device_conductances]
    want = [np.shape(g) for g in network.conductances]
    if [a.shape for a in arrays] != want:
        raise ConfigError(f"device conductances have shapes {[a.shape for a in arrays]}, the network's layers {want}")
    if not all(np.all(np.isfinite(a)) and np.all(a > 0) for a in arrays):
        raise ConfigError("a dense network's device conductances must be finite and positive (its crossbars "
                          "have no absent devices)")
    stuck = tuple(np.zeros(a.shape, dtype=bool) for a in arrays)
    return DeviceDraw(tuple(arrays), stuck, stuck)


def layered_subject(network: TrainedCrossbarNetwork, tech: Technology, sizing: InverterSizing, x: np.ndarray,
                    nonideal: NonIdeality, evaluator: str | None,
                    device_conductances: Sequence[np.ndarray] | None) -> Subject:
    """A conv, pooled or masked network: per-device circuit, model run device by device.

    Variation, faults and wire resistance are not drawn here: pass drawn devices as
    ``device_conductances`` (per layer ``(n_columns, D)``, 0 = absent).
    """
    from memspice.validate.layered import layered_circuit, model_evaluator, model_states

    if nonideal.any_device_change or nonideal.wire_ohm > 0:
        raise ConfigError("variation, faults and wire resistance are not drawn for conv, pooled or masked "
                          "networks here; pass drawn per-device conductances (device_conductances)")
    name = model_evaluator(network, evaluator)
    circuit = layered_circuit(network, tech, sizing, device_conductances)
    devices = circuit.conductances
    targets = tuple(np.asarray(g, dtype=np.float64) for g in network.device_conductances())
    stuck = tuple(np.zeros(np.shape(g), dtype=bool) for g in devices)
    return Subject(circuit, DeviceDraw(devices, stuck, stuck), model_states(network, targets, x, name), name)


def validate_network(network: TrainedNetwork | TrainedCrossbarNetwork, tech: Technology, x: np.ndarray,
                     labels: np.ndarray, out_dir: Path, *, sizing: InverterSizing | None = None,
                     nonideal: NonIdeality | None = None, settings: RunSettings = RunSettings(),
                     evaluator: str | None = None, write_files: bool = True,
                     progress: Any = None,
                     device_conductances: Sequence[np.ndarray] | None = None) -> ValidationReport:
    """Simulate a trained network on samples in SPICE and compare with the model.

    Args:
        network: the trained network (its calibration gives rails and the model forward): a
            dense :class:`TrainedNetwork` or a :class:`TrainedCrossbarNetwork` (conv, pooled,
            masked; one without those is validated as the dense network it is).
        tech: MOSFET technology; its rails must equal the network's.
        x: ``(S, N)`` input voltages in [vss, vdd] (V); a layered network also takes
            ``(S, *input_shape)``.
        labels: ``(S,)`` true classes.
        out_dir: run directory (batches, tables, summary, report).
        sizing: inverter transistor sizes (m); default (None): the sizing the network's calibration
            records (see :func:`network_sizing`), else PHAX's reference sizing. A sizing that
            differs from the recorded one is refused.
        nonideal: device variation, faults and wire resistance applied in SPICE only (dense
            networks).
        settings: batching, parallelism, resume and transient options.
        evaluator: model evaluator to compare against (``static``, ``load-aware``, ``coupled``);
            ``None`` = the one the network was trained with. Layered networks: ``static`` or
            ``coupled``; ``None`` = ``coupled`` when the calibration has an inverter current
            model, else ``static`` (the summary's ``model_evaluator`` says which).
        write_files: write the table, summary, report and plots.
        progress: optional ``callable(mode, done, total)``, called with ``mode`` ``"dc"`` and then
            ``"transient"``, counting that mode's batches.
        device_conductances: the devices to build instead of the targets, per crossbar layer
            ``(n_columns, D)`` (S; e.g. drawn with variation or faults; layered networks: 0 =
            absent, dense ones: the ``(M, 2N+2)`` matrices, every device present); the report
            then also runs the model on them (``drawn_devices_model``). Not together with
            variation or faults in ``nonideal``. Default for a layered network with a
            per-device fault map (``network.faults``): its devices with that map's devices
            stuck (:meth:`~memspice.train.conv_io.TrainedCrossbarNetwork.built_devices`); the
            summary's ``fault_map`` records the map (rates, seed, stuck devices).

    Returns:
        The report; ``report.complete`` is False when a batch failed (the rest still finished).
    """
    network = as_validated(network)
    layered = isinstance(network, TrainedCrossbarNetwork)
    x, labels = check_data(network, x, labels)
    sizing = network_sizing(network, sizing)
    cal = network.calibration
    if evaluator is not None and not layered:
        make_evaluator(evaluator, cal)  # an unknown name fails here, before any simulation
    if abs(tech.rails.vdd - cal.rails.vdd) > 1e-12 or abs(tech.rails.vss - cal.rails.vss) > 1e-12:
        raise ConfigError(f"technology rails ({tech.rails.vdd}, {tech.rails.vss}) V differ from the "
                          f"network's ({cal.rails.vdd}, {cal.rails.vss}) V")
    nonideal = nonideal or NonIdeality(g_min_siemens=cal.device.g_min_siemens, g_max_siemens=cal.device.g_max_siemens)
    if network.faults is not None:  # stuck devices at the network's own window, as the model sees them
        nonideal = dataclasses.replace(nonideal, g_min_siemens=cal.device.g_min_siemens,
                                       g_max_siemens=cal.device.g_max_siemens)
    if layered and device_conductances is None and network.faults is not None and not network.spec.is_dense:
        device_conductances = network.built_devices()  # its per-device map, as the model it was trained with
    if isinstance(network, TrainedCrossbarNetwork):
        subject = layered_subject(network, tech, sizing, x, nonideal, evaluator, device_conductances)
    else:
        subject = dense_subject(network, tech, sizing, x, nonideal, evaluator, device_conductances)
    circuit, draw, states = subject.circuit, subject.draw, subject.states
    out_dir = Path(out_dir)
    n_tran = min(int(settings.transient_samples), len(x))
    tran_batches = plan_batches(x[:n_tran], TRANSIENT_BATCH, "given") if n_tran else []
    manifest = {"circuit": circuit.digest(), "inputs": _digest(x, labels), "batch_size": int(settings.batch_size),
                "order": settings.order, "transient_samples": n_tran, "transient": repr(settings.transient),
                "nonideal": nonideal.as_dict(), "ngspice": None}
    check_output_dir(out_dir, "validation run directory")
    if settings.scheduler is None:
        # a missing, foreign or too old simulator stops here; its build is part of the run's identity
        manifest["ngspice"] = simulator_info(settings.ngspice).record()
    prepare_run_dir(out_dir, manifest, settings.resume, settings.force)
    batches = stored_plan(out_dir, len(x)) if settings.resume else None
    if batches is None:
        batches = plan_batches(x, int(settings.batch_size), settings.order, ordering_features(states))
        save_plan(out_dir, batches)
    sim = SimOptions(timeout_s=settings.timeout_s, work_dir=out_dir / "failed" if settings.keep_failed else None,
                     keep="on_failure" if settings.keep_failed else "never", ngspice=settings.ngspice)
    dc = execute(_jobs("dc", batches, x, circuit, settings, sim), BatchStore(out_dir, "dc"),
                 workers=settings.workers, scheduler=settings.scheduler, progress=_for_mode(progress, "dc"))
    failures = list(dc.failures)
    transient: dict[str, np.ndarray] = {}
    waves: dict[str, np.ndarray] = {}
    transient_elapsed_s = 0.0
    if n_tran:
        reference = dc_reference(dc, len(x), len(circuit.layer_sizes) - 1)
        tr = execute(_jobs("transient", tran_batches, x, circuit, settings, sim, reference), BatchStore(out_dir, "transient"),
                     workers=settings.workers, scheduler=settings.scheduler, progress=_for_mode(progress, "transient"))
        transient_elapsed_s = tr.elapsed_s
        failures += [BatchFailure(f.index, f"transient batch: {f.message}", f.run_dir) for f in tr.failures]
        if tr.batches:
            keys = sorted(tr.batches)
            names = ["delay_s", "energy_j", "energy_to_settle_j", "sample_index"]
            if all("input_energy_j" in tr.batches[k] for k in keys):  # batches stored before it have none
                names += ["input_energy_j", "input_energy_to_settle_j"]
            transient = {name: np.concatenate([tr.batches[k][name] for k in keys]) for name in names}
            transient["sample"] = transient.pop("sample_index")
            first = tr.batches[keys[0]]  # batches stored before waveforms were kept have none
            if "wave_time_s" in first:
                waves = {"time_s": first["wave_time_s"], "outp": first["wave_outp"], "power_w": first["wave_power_w"],
                         "sample": first["sample_index"], "delay_s": first["delay_s"],
                         "period_s": np.array(settings.transient.period_s)}
                if "wave_input_power_w" in first:
                    waves["input_power_w"] = first["wave_input_power_w"]
    report = assemble(network, draw, dc, labels, x, failures, transient, evaluator, states)
    report.transient_waves = waves
    if isinstance(network, TrainedCrossbarNetwork) and report.comparison is not None:
        from memspice.validate.layered import feature_maps, layer_kinds

        report.feature_maps = feature_maps(network, report, x)
        report.summary["layer_kinds"] = layer_kinds(network)
    report.summary.update(run_summary(report, network, tech, nonideal, settings, out_dir, transient_elapsed_s))
    report.summary["model_evaluator"] = subject.evaluator
    report.summary["sizing_m"] = {k: float(getattr(sizing, k)) for k in SIZING_KEYS}
    report.summary["sizing_parallel"] = {k: int(getattr(sizing, k)) for k in PARALLEL_KEYS}
    if network.faults is not None:
        from memspice.train.fault_map import fault_map_summary

        report.summary["fault_map"] = fault_map_summary(network.faults)
    if report.comparison is not None and (nonideal.any_device_change or device_conductances is not None):
        report.summary["drawn_devices_model"] = drawn_devices_model(network, draw, x, report, subject.evaluator)
    report.summary = json_safe(report.summary)  # NaN (nothing to average) → null: strict JSON readers accept it
    if write_files:
        from memspice.validate.report import write_outputs

        report.files = write_outputs(report, out_dir)
    return report


def assemble(network: TrainedNetwork | TrainedCrossbarNetwork, draw: DeviceDraw, dc: ExecutionResult, labels: np.ndarray, x: np.ndarray,
             failures: list[BatchFailure], transient: dict[str, np.ndarray],
             evaluator: str | None = None, states: Sequence[LayerState] | None = None) -> ValidationReport:
    """Put finished batches back in sample order and compare them with the model.

    ``states`` are the model's layer voltages for all of ``x`` when already computed (always,
    for a layered network).
    """
    n_layers = len(draw.conductances)
    keys = sorted(dc.batches)
    if not keys:
        empty = np.empty(0, dtype=np.int64)
        return ValidationReport(None, [], [], empty, empty, np.empty(0), transient, failures, dc, draw)
    index = np.concatenate([dc.batches[k]["sample_index"] for k in keys])
    order = np.argsort(index, kind="stable")
    index = index[order]

    def gather(name: str) -> np.ndarray:
        try:
            return np.concatenate([dc.batches[k][name] for k in keys])[order]
        except KeyError:
            raise ConfigError(f"stored validation batches lack {name!r} (written by another network or "
                              "version); use --force to simulate them again") from None

    spice = [LayerVoltages(gather(f"outn{layer}"), gather(f"outp{layer}")) for layer in range(n_layers)]
    if states is None:
        assert isinstance(network, TrainedNetwork), "a layered network's model states are computed by the caller"
        model = [LayerVoltages(s.outn, s.outp) for s in network.layer_voltages(x[index], evaluator)]
    else:
        model = [LayerVoltages(s.outn[index], s.outp[index]) for s in states]
    power = static_power(gather("i_vdd"), gather("i_vss"), network.calibration.rails)
    input_power = gather("p_in") if all("p_in" in dc.batches[k] for k in keys) else np.empty(0)
    comparison = compare(spice, model, labels[index], index, network_io(network)[1])
    return ValidationReport(comparison, spice, model, labels[index], index, power, transient, failures, dc, draw,
                            input_power_w=input_power)


def drawn_devices_model(network: TrainedNetwork | TrainedCrossbarNetwork, draw: DeviceDraw, x: np.ndarray,
                        report: ValidationReport, evaluator: str | None = None) -> dict[str, Any]:
    """The model run on the conductances SPICE was given (variation and faults), against SPICE.

    The report's ``model_*`` figures are the trained, ideal network: the gap between the two
    models is what the devices cost, the gap between this one and SPICE is the model's own
    error. Wire resistance is not in the model.
    """
    if isinstance(network, TrainedCrossbarNetwork):
        from memspice.validate.layered import model_states

        states: Sequence[Any] = model_states(network, draw.conductances, x[report.sample_index],
                                             evaluator or network.evaluator)
    else:
        model = make_evaluator(evaluator or network.evaluator, network.calibration)
        states = model.forward(draw.conductances, x[report.sample_index]).layers
    c = compare(report.spice, [LayerVoltages(s.outn, s.outp) for s in states], report.labels, report.sample_index,
                network_io(network)[1])
    return {"model_accuracy": c.model_accuracy, "agreement": c.agreement,
            "layer_errors": c.layer_errors.to_dict(orient="records")}


def _nanmean(values: np.ndarray) -> float | None:
    """Mean over the finite values, None when there are none."""
    finite = np.asarray(values)[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _spread(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "max": float(np.max(values)), "min": float(np.min(values))}


def _max_program_size(dc: ExecutionResult) -> float | None:
    """Largest peak program size ngspice reported over the batches (MB), if any."""
    sizes = [float(b["ngspice_program_mb"]) for b in dc.batches.values() if "ngspice_program_mb" in b]
    sizes = [s for s in sizes if np.isfinite(s)]
    return max(sizes) if sizes else None


def run_summary(report: ValidationReport, network: TrainedNetwork | TrainedCrossbarNetwork, tech: Technology, nonideal: NonIdeality,
                settings: RunSettings, out_dir: Path, transient_elapsed_s: float = 0.0) -> dict[str, Any]:
    """The JSON-safe summary of a validation run."""
    dc = report.execution
    simulated = sum(len(dc.batches[k]["sample_index"]) for k in dc.simulated)
    summary: dict[str, Any] = {
        "status": "complete" if report.complete else "incomplete",
        "topology": list(network.topology) if isinstance(network, TrainedNetwork) else None,
        "technology": tech.describe(),
        "nonideal": nonideal.as_dict(),
        "stuck_devices": report.draw.n_stuck,
        "batch_size": int(settings.batch_size),
        "batches_total": len(dc.batches) + len(dc.failures),
        "batches_simulated": len(dc.simulated),
        "batches_reused": len(dc.reused),
        "failed_batches": [{"batch": f.index, "error": f.message, "run_dir": f.run_dir} for f in report.failures],
        "dc_elapsed_s": dc.elapsed_s,
        # simulation wall time of each batch simulated in this run (s), by batch number: how well
        # the batches balance
        "dc_batch_elapsed_s": [float(dc.batches[k]["sim_elapsed_s"]) for k in sorted(dc.simulated)],
        "samples_per_s": simulated / dc.elapsed_s if simulated and dc.elapsed_s > 0 else None,
        "ngspice_program_mb_max": _max_program_size(dc),
        # the local simulator (with Dask, the workers' own may differ)
        "simulator": simulator_info(settings.ngspice).as_dict() if settings.scheduler is None else None,
        "out_dir": str(out_dir),
    }
    if isinstance(network, TrainedCrossbarNetwork):
        from memspice.validate.layered import describe_layers

        summary["layers"] = network.spec.to_dict()
        summary["network"] = describe_layers(network)
        summary["devices"] = int(sum(int(np.count_nonzero(g)) for g in report.draw.conductances))
        summary["neurons"] = int(sum(np.shape(g)[0] for g in report.draw.conductances))
    if report.comparison is not None:
        summary.update(report.comparison.summary())
        summary["static_power_w"] = _spread(report.power_w)
        if report.input_power_w.size:
            summary["input_drive_power_w"] = _spread(report.input_power_w)
            summary["total_static_power_w"] = _spread(report.power_w + report.input_power_w)
    if report.transient:
        delay, energy = report.transient["delay_s"], report.transient["energy_j"]
        summary["transient"] = {
            "samples": int(len(delay)), "period_s": settings.transient.period_s,
            "points_per_period": int(settings.transient.points_per_period),
            "elapsed_s": transient_elapsed_s,  # wall time of the transient batches simulated in this run
            "settled": int(np.isfinite(delay).sum()),
            "delay_s_mean": float(np.nanmean(delay)) if np.isfinite(delay).any() else None,
            "delay_s_max": float(np.nanmax(delay)) if np.isfinite(delay).any() else None,
            "energy_j_mean": float(energy.mean()),
            "energy_to_settle_j_mean": _nanmean(report.transient["energy_to_settle_j"]),
        }
        if "input_energy_j" in report.transient:
            t = report.transient
            summary["transient"].update(
                input_energy_j_mean=_nanmean(t["input_energy_j"]),
                input_energy_to_settle_j_mean=_nanmean(t["input_energy_to_settle_j"]),
                total_energy_j_mean=_nanmean(t["energy_j"] + t["input_energy_j"]),
                total_energy_to_settle_j_mean=_nanmean(t["energy_to_settle_j"] + t["input_energy_to_settle_j"]))
    return summary
