"""SPICE versus model: accuracy, agreement, per-layer and per-neuron voltage errors.

Pure NumPy/pandas on arrays; no simulation here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class LayerVoltages:
    """Neuron outputs of one layer for every sample (V).

    Attributes:
        outn: ``(S, M)`` inverted outputs (after inverter 1).
        outp: ``(S, M)`` non-inverted outputs (after inverter 2).
    """

    outn: np.ndarray
    outp: np.ndarray


@dataclass(frozen=True)
class Comparison:
    """The figures of a validation.

    Attributes:
        n_samples: samples compared.
        spice_accuracy: fraction of SPICE argmax(outp) predictions equal to the labels.
        model_accuracy: same for the model.
        agreement: fraction of samples where SPICE and the model predict the same class.
        layer_errors: one row per layer and polarity: RMS and max |SPICE − model| (V).
        neuron_errors: one row per neuron and polarity: RMS and max error (V).
        confusion_spice: ``(C, C)`` counts, rows = true class, columns = SPICE prediction.
        confusion_model: same for the model.
        disagreements: samples where the classes differ (index, label, both predictions, margin).
    """

    n_samples: int
    spice_accuracy: float
    model_accuracy: float
    agreement: float
    layer_errors: pd.DataFrame
    neuron_errors: pd.DataFrame
    confusion_spice: np.ndarray
    confusion_model: np.ndarray
    disagreements: pd.DataFrame

    def summary(self) -> dict[str, Any]:
        """JSON-safe headline figures."""
        return {
            "n_samples": self.n_samples,
            "spice_accuracy": self.spice_accuracy,
            "model_accuracy": self.model_accuracy,
            "agreement": self.agreement,
            "n_disagreements": int(len(self.disagreements)),
            "layer_errors": self.layer_errors.to_dict(orient="records"),
            "confusion_spice": self.confusion_spice.tolist(),
            "confusion_model": self.confusion_model.tolist(),
        }


def confusion(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """``(C, C)`` counts: row = true class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def compare(spice: Sequence[LayerVoltages], model: Sequence[LayerVoltages], labels: np.ndarray,
            sample_index: np.ndarray, n_classes: int) -> Comparison:
    """Compare SPICE and model voltages of the same samples.

    Args:
        spice: per layer, the simulated outputs (V).
        model: per layer, the model's outputs for the same samples in the same order (V).
        labels: ``(S,)`` true classes.
        sample_index: ``(S,)`` sample numbers (reported for disagreements).
        n_classes: number of classes (size of the confusion matrices).
    """
    labels = np.asarray(labels, dtype=np.int64)
    layer_rows, neuron_rows = [], []
    for layer, (s, m) in enumerate(zip(spice, model)):
        for pol in ("n", "p"):
            err = getattr(s, f"out{pol}") - getattr(m, f"out{pol}")
            abs_err = np.abs(err)
            layer_rows.append({"layer": layer, "output": f"out{pol}",
                               "rms_v": float(np.sqrt(np.mean(err**2))), "max_v": float(abs_err.max()),
                               "mean_v": float(err.mean())})
            rms = np.sqrt(np.mean(err**2, axis=0))
            for j in range(err.shape[1]):
                neuron_rows.append({"layer": layer, "neuron": j, "output": f"out{pol}",
                                    "rms_v": float(rms[j]), "max_v": float(abs_err[:, j].max()),
                                    "mean_v": float(err[:, j].mean())})
    spice_out, model_out = spice[-1].outp, model[-1].outp
    spice_pred, model_pred = spice_out.argmax(axis=1), model_out.argmax(axis=1)
    differ = np.flatnonzero(spice_pred != model_pred)
    top2 = np.sort(spice_out, axis=1)[:, -2:] if spice_out.shape[1] > 1 else np.zeros((len(spice_out), 2))
    disagreements = pd.DataFrame({
        "sample": np.asarray(sample_index)[differ],
        "label": labels[differ],
        "spice_class": spice_pred[differ],
        "model_class": model_pred[differ],
        "spice_margin_v": (top2[:, 1] - top2[:, 0])[differ],
    })
    return Comparison(
        n_samples=int(len(labels)),
        spice_accuracy=float(np.mean(spice_pred == labels)),
        model_accuracy=float(np.mean(model_pred == labels)),
        agreement=float(np.mean(spice_pred == model_pred)),
        layer_errors=pd.DataFrame(layer_rows),
        neuron_errors=pd.DataFrame(neuron_rows),
        confusion_spice=confusion(labels, spice_pred, n_classes),
        confusion_model=confusion(labels, model_pred, n_classes),
        disagreements=disagreements,
    )


def sample_table(spice: Sequence[LayerVoltages], model: Sequence[LayerVoltages], labels: np.ndarray,
                 sample_index: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per sample: label, both predictions, every neuron output in SPICE and model (V).

    Columns ``spice_l{L}_outp{j}``/``model_l{L}_outp{j}`` (and ``outn``) plus ``extra`` columns
    (power, delay, energy).
    """
    columns: dict[str, np.ndarray] = {
        "sample": np.asarray(sample_index, dtype=np.int64),
        "label": np.asarray(labels, dtype=np.int64),
        "spice_class": spice[-1].outp.argmax(axis=1),
        "model_class": model[-1].outp.argmax(axis=1),
    }
    for name, arr in (extra or {}).items():
        columns[name] = np.asarray(arr)
    for layer, (s, m) in enumerate(zip(spice, model)):
        for pol in ("n", "p"):
            for source, values in (("spice", getattr(s, f"out{pol}")), ("model", getattr(m, f"out{pol}"))):
                for j in range(values.shape[1]):
                    columns[f"{source}_l{layer}_out{pol}{j}"] = values[:, j]
    return pd.DataFrame(columns)
