"""Plots a reader understands: colour bars and axes carry names and units, figures have sane sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memspice.characterize import plots


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions would save (the PNG itself is not the point here)."""
    captured = []

    def keep(fig, path):
        captured.append(fig)
        return path

    monkeypatch.setattr(plots, "_save", keep)
    yield captured
    import matplotlib.pyplot as plt

    for fig in captured:
        plt.close(fig)


def _curves(loads):
    v_in = np.linspace(-0.25, 0.25, 51)
    rows = [pd.DataFrame({"stage": stage, "load_ohm": load, "v_in": v_in,
                          "v_out": sign * 0.25 * np.tanh(10 * v_in * (1 if np.isinf(load) else load / 1e6))})
            for stage, sign in (("inverter", -1), ("neuron", 1)) for load in loads]
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("gain", [False, True])
def test_vtc_family_has_a_colour_bar_in_megaohm(figures, tmp_path, gain):
    loads = [*np.geomspace(1e5, 2e6, 20), float("inf")]
    plots.vtc_family(_curves(loads), "load_ohm", tmp_path / "vtc.png", "loads", gain=gain)
    fig = figures[0]
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "load resistance (MΩ)" in labels  # the colour bar
    assert any("(V/V)" in label for label in labels) if gain else any("(V)" in label for label in labels)
    legends = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert legends == ["no load", "no load"]  # the unloaded curve, which has no place on the scale


def test_metrics_plot_names_units_and_has_a_sane_size(figures, tmp_path):
    loads = np.geomspace(1e5, 2e6, 5)
    metrics = pd.DataFrame([{"stage": s, "load_ohm": r, "v_m": -0.01, "peak_gain": 7.0, "nm_l": 0.2, "nm_h": 0.2,
                             "c4": 30.0, "power_mean_w": 1e-7, "swing": 0.49, "rms_v": 1e-3}
                            for s in ("inverter", "neuron") for r in loads])
    plots.metrics_vs(metrics, "load_ohm", tmp_path / "m.png", "metrics")
    fig = figures[0]
    width, height = fig.get_size_inches() * 110  # the dpi plots are saved at
    assert width <= 1400 and 1 / 3 < height / width < 1
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 6
    for ax in shown:
        assert ax.get_xlabel() == "load resistance (MΩ)"
        assert "(" in ax.get_ylabel() and ax.get_ylabel() != ax.get_title()
    power = next(ax for ax in shown if ax.get_title() == "mean static power")
    assert power.get_ylabel() == "power from V_DD (nW)" and np.allclose(power.lines[0].get_ydata(), 100.0)
