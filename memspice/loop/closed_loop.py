"""``closed_loop``: recalibrate from the circuit → fine-tune → re-validate, until they agree.

Round 0 validates the given network in SPICE against the chosen mode's model. Every later
round (a) recalibrates the mode's model from the operating points SPICE found in the previous
round (:mod:`memspice.loop.recalibrate`), (b) fine-tunes θ for a few epochs from where it is,
in that mode, against the new calibration, and (c) validates the result in SPICE again. The
loop stops once the worst layer's RMS error is within ``tolerance_v`` and the classification
agreement reaches ``agreement_target``, or after ``max_rounds``.

Each round lives in ``<out>/round<k>/`` (network, calibration, validation batches, row); the
round table is rewritten (``rounds.csv``, ``rounds.png``) after every round. Re-running with
the same inputs reuses finished rounds (their SPICE batches are read back, not simulated).
The recalibration uses the validation samples' operating points: only circuit behaviour is
fitted there, never labels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memspice.circuit.builders import InverterSizing
from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration, save_calibration
from memspice.io import write_text_atomic
from memspice.safe_io import dumps_strict
from memspice.loop.operating_points import circuit_operating_points
from memspice.loop.recalibrate import REFINE_STEP_V, recalibrate
from memspice.loop.report import comparison_columns, write_rounds
from memspice.tech.technology import Technology
from memspice.train.evaluate import network_from_params
from memspice.train.model import PhaxNetwork
from memspice.train.network_io import TrainedNetwork, load_network, save_network
from memspice.train.trainer import TrainConfig, train
from memspice.validate.api import RunSettings, ValidationReport, validate_network

LOOP_JSON = "loop.json"
ROW_JSON = "row.json"
MODES = ("static", "load-aware", "coupled")
#: θ is clipped to ±THETA_LIMIT before fine-tuning: devices exactly on a window edge have
#: θ = ±inf, and sigmoid(±20) is within 2e-9 of the edge.
THETA_LIMIT = 20.0
#: Default fine-tuning: two epochs of Adam at a small step, no held-out split.
DEFAULT_FINE_TUNE = TrainConfig(epochs=2, batch_size=16, lr=0.003, lr_decay=0.9, loss="bce",
                                val_fraction=0.0, progress=False)


@dataclass
class LoopResult:
    """Outcome of :func:`closed_loop`.

    Attributes:
        rounds: one row per round: ``round``, ``mode``, ``action``, residual before/after
            recalibration (``residual_unit`` A or V), SPICE/model accuracy, agreement, output and
            per-layer RMS/max error (V), fine-tune epoch time (s), wall time (s), ``reused``.
        network: the last round's network (its calibration is the last recalibration).
        calibration: the last calibration.
        converged: whether the tolerance and agreement target were met.
        report: the last round's validation report.
        files: ``rounds_csv``, ``rounds_png``, ``loop_json``.
    """

    rounds: pd.DataFrame
    network: TrainedNetwork
    calibration: Calibration
    converged: bool
    report: ValidationReport
    files: dict[str, Path] = field(default_factory=dict)


def _digest(parts: Sequence[Any]) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode())
    return h.hexdigest()


def _as_network(network: TrainedNetwork | tuple[PhaxNetwork, Sequence[np.ndarray]],
                calibration: Calibration | None) -> TrainedNetwork:
    if isinstance(network, tuple):
        model, params = network
        network = network_from_params(model, params)
    if calibration is not None:
        network = dataclasses.replace(network, calibration=calibration)
    return network


def met(row: dict[str, Any], tolerance_v: float, agreement_target: float) -> bool:
    """True when the worst layer RMS error (V) and the agreement meet their targets."""
    return row["worst_rms_v"] <= tolerance_v and row["agreement"] >= agreement_target


def closed_loop(
    network: TrainedNetwork | tuple[PhaxNetwork, Sequence[np.ndarray]],
    tech: Technology,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    out_dir: Path,
    *,
    calibration: Calibration | None = None,
    sizing: InverterSizing = InverterSizing(),
    mode: str = "coupled",
    tolerance_v: float = 1e-3,
    agreement_target: float = 0.999,
    max_rounds: int = 4,
    fine_tune: TrainConfig = DEFAULT_FINE_TUNE,
    settings: RunSettings = RunSettings(batch_size=250),
    refine_step_v: float = REFINE_STEP_V,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> LoopResult:
    """Close the loop between a trained network's model and its SPICE circuit.

    Args:
        network: a trained network, or ``(model, θ)`` to turn into one.
        tech: technology the circuit is simulated in (rails must match the calibration).
        x_train: ``(n, N)`` training inputs (V) for fine-tuning.
        y_train: ``(n,)`` training labels.
        x_val: ``(S, N)`` validation inputs (V) simulated in SPICE every round.
        y_val: ``(S,)`` validation labels.
        out_dir: run directory (rounds, tables, plot).
        calibration: calibration to start from (default: the network's); it must hold the
            model of ``mode`` (a coupled run needs ``inverter_current``).
        sizing: inverter sizes (m) of the circuit.
        mode: ``static``, ``load-aware`` or ``coupled``: the model that is recalibrated,
            fine-tuned in and compared.
        tolerance_v: target for the worst layer's RMS model − SPICE error (V).
        agreement_target: target classification agreement (fraction).
        max_rounds: recalibration rounds after round 0.
        fine_tune: training settings of each round (a few epochs; θ starts where it is).
        settings: SPICE batching and parallelism (resume/force are managed per round).
        refine_step_v: sweep step of the coupled mode's current-table refinement (V).
        force: discard earlier rounds in ``out_dir`` instead of refusing other inputs.
        log: optional ``callable(message)`` for one line per round.

    Returns:
        The round table, final network and calibration, and whether the targets were met.

    Raises:
        ConfigError: unknown mode, bad targets, or ``out_dir`` holding rounds of other inputs.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown loop mode {mode!r}; choose one of {', '.join(MODES)}")
    if max_rounds < 0 or not tolerance_v > 0 or not 0 < agreement_target <= 1:
        raise ConfigError("max_rounds must be ≥ 0, tolerance > 0 V and agreement target in (0, 1]")
    current = _as_network(network, calibration)
    out_dir = Path(out_dir)
    x_val, y_val = np.asarray(x_val, dtype=np.float64), np.asarray(y_val)
    digest = _digest([*current.conductances, current.calibration.digest(), np.asarray(x_train, dtype=np.float64),
                      np.asarray(y_train), x_val, y_val, mode, dataclasses.asdict(fine_tune), tech.describe(),
                      sizing, settings.batch_size, settings.order, refine_step_v])
    loop_json = out_dir / LOOP_JSON
    if loop_json.is_file():
        stored = json.loads(loop_json.read_text()).get("digest")
        if stored != digest:
            if not force:
                raise ConfigError(f"{out_dir} holds a closed loop of other inputs; pass force=True "
                                  "(--force) to replace it or choose another directory")
            for old in out_dir.glob("round*"):  # round0/, round1/, … and rounds.csv/.png
                if old.is_dir():
                    shutil.rmtree(old)
                else:
                    old.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(loop_json, json.dumps({"digest": digest, "mode": mode, "max_rounds": max_rounds,
                                             "tolerance_v": tolerance_v, "agreement_target": agreement_target},
                                            indent=2, sort_keys=True) + "\n")
    say = log or (lambda message: None)
    rows: list[dict[str, Any]] = []
    files: dict[str, Path] = {}
    report: ValidationReport | None = None
    for k in range(max_rounds + 1):
        round_dir = out_dir / f"round{k}"
        row_path = round_dir / ROW_JSON
        t0 = time.perf_counter()
        if row_path.is_file():
            row = {k: np.nan if v is None else v for k, v in json.loads(row_path.read_text()).items()}  # null = NaN
            current = load_network(round_dir / "network")
            report = _validate(current, tech, x_val, y_val, round_dir, sizing, settings, mode)
            row["reused"] = True
        else:
            row = {"round": k, "mode": mode, "action": "validate as given", "residual_before": np.nan,
                   "residual_after": np.nan, "residual_unit": "", "fine_tune_epoch_s": np.nan}
            if k > 0:
                assert report is not None
                layers = circuit_operating_points(report.draw.conductances, x_val[report.sample_index],
                                                  report.spice, current.calibration.rails)
                new_cal, record = recalibrate(mode, current.calibration, layers, report.draw.conductances,
                                              tech, sizing, refine_step_v=refine_step_v)
                key = "current_rms_a" if mode == "coupled" else "activation_rms_v"
                row.update(action=record["action"], residual_before=record[f"{key}_before"],
                           residual_after=record[f"{key}_after"], residual_unit="A" if mode == "coupled" else "V")
                current, row["fine_tune_epoch_s"] = _fine_tune(current, new_cal, mode, x_train, y_train,
                                                               fine_tune, round_dir)
                save_calibration(new_cal, round_dir / "calibration.json")
            save_network(current, round_dir / "network")
            report = _validate(current, tech, x_val, y_val, round_dir, sizing, settings, mode)
            if report.comparison is None or not report.complete:
                raise ConfigError(f"round {k}: SPICE validation did not finish ({len(report.failures)} failed batches)")
            row.update(comparison_columns(report.comparison))
            row["seconds"] = time.perf_counter() - t0
            write_text_atomic(row_path, dumps_strict(row, indent=2, sort_keys=True, default=float) + "\n")
            row["reused"] = False
        rows.append(row)
        files = write_rounds(rows, out_dir)
        say(f"round {k} [{mode}] {row['action']}: SPICE acc {row['spice_accuracy']:.4f}, model acc "
            f"{row['model_accuracy']:.4f}, agreement {row['agreement']:.4f}, output RMS "
            f"{1e3 * row['output_rms_v']:.4g} mV, worst layer RMS {1e3 * row['worst_rms_v']:.4g} mV "
            f"({row['seconds']:.1f} s{', reused' if row['reused'] else ''})")
        if met(row, tolerance_v, agreement_target):
            break
    assert report is not None
    files["loop_json"] = loop_json
    return LoopResult(pd.DataFrame(rows), current, current.calibration,
                      met(rows[-1], tolerance_v, agreement_target), report, files)


def _validate(network: TrainedNetwork, tech: Technology, x: np.ndarray, y: np.ndarray, round_dir: Path,
              sizing: InverterSizing, settings: RunSettings, mode: str) -> ValidationReport:
    run = dataclasses.replace(settings, resume=True, force=False)
    return validate_network(network, tech, x, y, round_dir / "validation", sizing=sizing, settings=run,
                            evaluator=mode, write_files=False)


def _fine_tune(network: TrainedNetwork, calibration: Calibration, mode: str, x: np.ndarray, y: np.ndarray,
               config: TrainConfig, round_dir: Path) -> tuple[TrainedNetwork, float]:
    """θ fine-tuned in ``mode`` against ``calibration``; returns the network and epoch time (s)."""
    model = PhaxNetwork(calibration, network.topology, faults=network.faults, evaluator=mode)
    start = [np.clip(theta, -THETA_LIMIT, THETA_LIMIT) for theta in network.thetas()]
    result = train(model, x, y, config, out_dir=round_dir / "fine_tune", resume=True, initial_params=start)
    metadata = {**network.metadata, "closed_loop_round": round_dir.name, "fine_tune_mode": mode}
    return network_from_params(model, result.params, metadata), float(result.history["seconds"].mean())

