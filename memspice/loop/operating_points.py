"""The circuit's own operating points, reconstructed from SPICE's neuron outputs.

SPICE validation records every neuron's ``outn``/``outp``. Everything else at DC follows
exactly (ARCHITECTURE §4): a layer's rows are the previous layer's outputs (or ``±x`` and the
rails), its columns are ``c = (G·r)/ΣG`` because a column drives only a gate, and the current an
inverter delivers equals the current its load draws, ``Σ_m G_next[m, k]·(v_out − c'_m)`` through
the next crossbar (zero for the output layer, which drives nothing). These are the points where
a calibration has to be right; :func:`current_residual` measures how far the inverter current
model is from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memspice.circuit.wiring import Rails, input_rows, row_voltages
from memspice.errors import ConfigError
from memspice.fit.calibration import InverterCurrentModel
from memspice.train.coupled import column_voltages
from memspice.validate.compare import LayerVoltages


@dataclass(frozen=True)
class LayerPoints:
    """One layer's operating points for a batch of samples (V, A).

    Attributes:
        rows: ``(S, 2N+2)`` row voltages in wiring order (V).
        column: ``(S, M)`` column voltages (V).
        outn: ``(S, M)`` inverter-1 outputs (V).
        outp: ``(S, M)`` inverter-2 outputs (V).
        current_n: ``(S, M)`` current inverter 1 delivers into ``outn`` (A, sourcing positive).
        current_p: ``(S, M)`` current inverter 2 delivers into ``outp`` (A).
    """

    rows: np.ndarray
    column: np.ndarray
    outn: np.ndarray
    outp: np.ndarray
    current_n: np.ndarray
    current_p: np.ndarray


@dataclass(frozen=True)
class InverterPoints:
    """Every inverter's operating point, flattened (one entry per sample, neuron and stage).

    Attributes:
        v_in: gate voltages (V).
        v_out: output voltages (V).
        current_a: delivered currents (A).
        layer: layer index of each point.
        stage: 1 (column → outn) or 2 (outn → outp).
    """

    v_in: np.ndarray
    v_out: np.ndarray
    current_a: np.ndarray
    layer: np.ndarray
    stage: np.ndarray

    def box(self, margin_v: float = 0.0) -> tuple[tuple[float, float], tuple[float, float]]:
        """``((v_in_lo, v_in_hi), (v_out_lo, v_out_hi))`` covering every point, widened (V)."""
        return ((float(self.v_in.min()) - margin_v, float(self.v_in.max()) + margin_v),
                (float(self.v_out.min()) - margin_v, float(self.v_out.max()) + margin_v))


def load_current(g_next: np.ndarray, outn: np.ndarray, outp: np.ndarray, next_column: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Currents ``(S, M)`` (A) the next crossbar ``g_next`` ``(K, 2M+2)`` (S) draws from the outputs.

    Row ``k`` carries ``Σ_m G[m, k]·(r_k − c'_m)`` out of its driving node.
    """
    m = outn.shape[1]
    g_p, g_n = g_next[:, :m], g_next[:, m : 2 * m]
    i_p = outp * g_p.sum(axis=0) - next_column @ g_p
    i_n = outn * g_n.sum(axis=0) - next_column @ g_n
    return i_n, i_p


def circuit_operating_points(conductances: Sequence[np.ndarray], x: np.ndarray,
                             spice: Sequence[LayerVoltages], rails: Rails) -> list[LayerPoints]:
    """Rows, columns, outputs and inverter currents of every layer, from SPICE's outputs.

    Args:
        conductances: per layer ``(M, 2N+2)`` conductances as netlisted (S).
        x: ``(S, n_inputs)`` input voltages of the simulated samples, in the order of ``spice`` (V).
        spice: per layer, SPICE's ``outn``/``outp`` ``(S, M)`` (V).
        rails: supply rails (the bias rows).

    Raises:
        ConfigError: layer counts or shapes that do not match.
    """
    if len(spice) != len(conductances):
        raise ConfigError(f"{len(spice)} simulated layers for a {len(conductances)}-layer network")
    v_pos, v_neg = input_rows(np.asarray(x, dtype=np.float64))
    partial = []
    for g, layer in zip(conductances, spice):
        rows = row_voltages(v_pos, v_neg, rails.vdd, rails.vss)
        column = column_voltages(np.asarray(g, dtype=np.float64), rows)
        if layer.outn.shape != column.shape:
            raise ConfigError(f"simulated outputs {layer.outn.shape} do not match columns {column.shape}")
        partial.append((rows, column, np.asarray(layer.outn), np.asarray(layer.outp)))
        v_pos, v_neg = layer.outp, layer.outn
    points = []
    for index, (rows, column, outn, outp) in enumerate(partial):
        if index + 1 < len(partial):
            i_n, i_p = load_current(np.asarray(conductances[index + 1], dtype=np.float64), outn, outp,
                                    partial[index + 1][1])
        else:
            i_n, i_p = np.zeros_like(outn), np.zeros_like(outp)
        points.append(LayerPoints(rows, column, outn, outp, i_n, i_p))
    return points


def inverter_points(layers: Sequence[LayerPoints]) -> InverterPoints:
    """Flatten both stages of every layer into one set of inverter operating points."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("v_in", "v_out", "current_a", "layer", "stage")}
    for index, lp in enumerate(layers):
        for stage, (v_in, v_out, current) in ((1, (lp.column, lp.outn, lp.current_n)),
                                               (2, (lp.outn, lp.outp, lp.current_p))):
            parts["v_in"].append(v_in.ravel())
            parts["v_out"].append(v_out.ravel())
            parts["current_a"].append(current.ravel())
            parts["layer"].append(np.full(v_in.size, index))
            parts["stage"].append(np.full(v_in.size, stage))
    return InverterPoints(*(np.concatenate(parts[k]) for k in ("v_in", "v_out", "current_a", "layer", "stage")))


def current_residual(model: InverterCurrentModel, points: InverterPoints) -> dict[str, float]:
    """How far the current model is from the circuit at its operating points.

    Returns:
        ``rms_a``/``max_a``: model − in-situ current over all points (A);
        ``equivalent_rms_v``/``equivalent_max_v``: the same divided by the model's output
        conductance ``|∂I/∂V_out|`` at each point, i.e. how far the model would move an
        unloaded output to cancel the error (V; loading only shrinks it);
        ``output_layer_rms_a``: the residual over the last layer's inverters (A).
    """
    from memspice.train.coupled_solve import CurrentSurface

    surface = CurrentSurface(model)
    current, _, d_out = surface(points.v_in, points.v_out)
    err = current - points.current_a
    volts = err / np.maximum(np.abs(d_out), 1e-12)
    last = points.layer == points.layer.max()
    return {
        "rms_a": float(np.sqrt(np.mean(err**2))),
        "max_a": float(np.max(np.abs(err))),
        "equivalent_rms_v": float(np.sqrt(np.mean(volts**2))),
        "equivalent_max_v": float(np.max(np.abs(volts))),
        "output_layer_rms_a": float(np.sqrt(np.mean(err[last] ** 2))),
        "n_points": int(err.size),
    }
