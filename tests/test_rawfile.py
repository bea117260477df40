"""Raw-file parser unit tests on synthetic bytes (no simulator)."""

from __future__ import annotations

import numpy as np
import pytest

from memspice.sim.rawfile import RawFileError, normalize_name, parse_raw


def _binary_plot(name: str, variables: list[tuple[str, str]], data: np.ndarray, flags: str = "real") -> bytes:
    header = [
        "Title: synthetic",
        "Date: never",
        f"Plotname: {name}",
        f"Flags: {flags}",
        f"No. Variables: {len(variables)}",
        f"No. Points: {data.shape[0]}",
        "Variables:",
        *[f"\t{i}\t{n}\t{k}" for i, (n, k) in enumerate(variables)],
        "Binary:",
    ]
    return ("\n".join(header) + "\n").encode() + data.astype("<f8").tobytes()


def test_binary_plot_round_trip_and_name_normalization() -> None:
    data = np.arange(12, dtype=float).reshape(4, 3) / 7
    raw = _binary_plot("DC transfer characteristic", [("v(v-sweep)", "voltage"), ("v(OUT)", "voltage"), ("vdd#branch", "current")], data)
    (plot,) = parse_raw(raw)
    assert plot.name == "DC transfer characteristic"
    assert sorted(plot.vectors) == ["i(vdd)", "out", "v-sweep"]
    np.testing.assert_array_equal(plot["out"], data[:, 1])
    np.testing.assert_array_equal(plot["v(out)"], data[:, 1])
    np.testing.assert_array_equal(plot["i(vdd)"], data[:, 2])
    assert plot.units["i(vdd)"] == "current"


def test_two_plots_in_one_file() -> None:
    a = _binary_plot("Operating Point", [("v(a)", "voltage")], np.array([[1.5]]))
    b = _binary_plot("Transient Analysis", [("time", "time"), ("v(a)", "voltage")], np.array([[0.0, 1.0], [1e-9, 2.0]]))
    plots = parse_raw(a + b)
    assert [p.name for p in plots] == ["Operating Point", "Transient Analysis"]
    assert plots[1]["time"][1] == 1e-9


def test_complex_plot() -> None:
    values = np.array([[1.0, 0.0, 2.0, -1.0]])
    (plot,) = parse_raw(_binary_plot("AC", [("frequency", "frequency"), ("v(a)", "voltage")], values, flags="complex"))
    assert plot["a"][0] == 2 - 1j


def test_ascii_values() -> None:
    text = ("Title: t\nPlotname: Op\nFlags: real\nNo. Variables: 2\nNo. Points: 2\nVariables:\n"
            "\t0\tv(a)\tvoltage\n\t1\ti(v1)\tcurrent\nValues:\n0\t1.5\n\t-2e-3\n1\t2.5\n\t-3e-3\n")
    (plot,) = parse_raw(text.encode())
    np.testing.assert_allclose(plot["i(v1)"], [-2e-3, -3e-3])


def test_truncated_data_is_an_error() -> None:
    raw = _binary_plot("dc", [("v(a)", "voltage"), ("v(b)", "voltage")], np.ones((10, 2)))
    with pytest.raises(RawFileError, match="truncated"):
        parse_raw(raw[:-8])


@pytest.mark.parametrize("raw", [b"", b"Title: x\nPlotname: y\n", b"Title: x\nNo. Points: 1\nVariables:\nBinary:\n"])
def test_malformed_headers_are_errors(raw: bytes) -> None:
    with pytest.raises(RawFileError):
        parse_raw(raw)


@pytest.mark.parametrize(("name", "norm"), [("v(A)", "a"), ("V1#branch", "i(v1)"), ("time", "time"), ("i(vdd)", "i(vdd)")])
def test_normalize_name(name: str, norm: str) -> None:
    assert normalize_name(name) == norm
