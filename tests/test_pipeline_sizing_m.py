"""Parallel devices (``mn``/``mp``, SPICE ``m``) from `memspice run`'s [sizing] and the CLI to the decks."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest

from memspice.characterize.presets import SKY130_LVT_SIZED
from memspice.circuit.builders import InverterSizing
from memspice.cli import main
from memspice.cli_options import add_technology_options, sizing_from_args, sizings_from_args
from memspice.errors import ConfigError
from memspice.netlist.emit import emit
from memspice.pipeline import data
from memspice.pipeline.config import RunConfig, config_from_dict, config_to_toml, load_config
from memspice.pipeline.run import stages as pipeline_stages
from memspice.pipeline.stages import fingerprint
from memspice.sim import simulate
from memspice.tech import builtin
from memspice.validate.decks import NetworkCircuit, dc_arrays, dc_batch_deck

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mnist_sky130.toml"


def _transistor_lines(text: str) -> list[str]:
    """Lines of the inverter subcircuit's two transistors."""
    body = text.split(".subckt inv", 1)[1].split(".ends", 1)[0]
    return [line for line in body.splitlines() if line[:1].lower() in ("m", "x")]


def test_defaults_are_single_devices() -> None:
    config = RunConfig()
    assert (config.sizing.mn, config.sizing.mp) == (1, 1)
    sizing = data.sizing(config)
    assert (sizing.mn, sizing.mp) == (1, 1)


def test_parallel_devices_round_trip_through_toml(tmp_path: Path) -> None:
    changed = config_from_dict({"sizing": {"wn_um": 50.0, "wp_um": 50.0, "ln_um": 0.8, "lp_um": 0.5, "mn": 12, "mp": 3}})
    path = tmp_path / "c.toml"
    path.write_text(config_to_toml(changed))
    loaded = load_config(path)
    assert loaded == changed
    sized = data.sizing(loaded)
    assert (sized.mn, sized.mp) == (12, 3)
    assert np.allclose([sized.wn_m, sized.wp_m, sized.ln_m, sized.lp_m], [50e-6, 50e-6, 0.8e-6, 0.5e-6], rtol=1e-12)


def test_the_sky130_example_is_the_sized_preset() -> None:
    config = load_config(EXAMPLE)
    assert config.technology.name == "sky130"
    sized = data.sizing(config)
    assert (sized.mn, sized.mp) == (SKY130_LVT_SIZED.mn, SKY130_LVT_SIZED.mp)
    assert np.allclose([sized.wn_m, sized.wp_m, sized.ln_m, sized.lp_m],
                       [SKY130_LVT_SIZED.wn_m, SKY130_LVT_SIZED.wp_m, SKY130_LVT_SIZED.ln_m, SKY130_LVT_SIZED.lp_m],
                       rtol=1e-12)


@pytest.mark.parametrize(
    ("value", "needle"),
    [(0, "sizing.mn must be an integer in [1, 10000]"), (-2, "sizing.mn must be an integer in [1, 10000]"),
     (20000, "sizing.mn must be an integer in [1, 10000]"), (1.5, "sizing.mn must be an integer"),
     (2.0, "sizing.mn must be an integer"), (True, "sizing.mn must be an integer"), ("4", "sizing.mn must be an integer")],
)
def test_bad_parallel_counts_are_refused(value: object, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"sizing": {"mn": value}})
    assert needle in str(info.value)
    with pytest.raises(ConfigError, match="sizing.mp"):
        config_from_dict({"sizing": {"mp": value}})


def test_a_bad_count_in_a_file_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[sizing]\nmn = 0\n")
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memspice: error:") and "sizing.mn" in err[0]
    assert not (tmp_path / "run").exists()


def test_parallel_devices_change_the_technology_stages_fingerprints() -> None:
    stages = {s.name: s for s in pipeline_stages()}
    single, parallel = config_from_dict({}), config_from_dict({"sizing": {"mn": 2}})
    for name in stages:
        if "sizing" in stages[name].sections:
            assert fingerprint(stages[name], single, {}) != fingerprint(stages[name], parallel, {}), name
    assert fingerprint(stages["characterize"], single, {}) != fingerprint(stages["characterize"], parallel, {})


def test_the_validation_deck_carries_m_on_the_transistors() -> None:
    config = config_from_dict({"sizing": {"mn": 12, "mp": 3}})
    circuit = NetworkCircuit(data.technology(config), data.sizing(config), (np.full((2, 10), 1e-6),))
    lines = _transistor_lines(emit(dc_batch_deck(circuit, np.zeros((2, 4)))))
    assert len(lines) == 2
    assert [re.search(r"\bm=(\d+)", line.lower()).group(1) for line in lines] == ["12", "3"]  # type: ignore[union-attr]


def test_single_devices_keep_the_deck_as_before() -> None:
    circuit = NetworkCircuit(builtin(), data.sizing(RunConfig()), (np.full((2, 10), 1e-6),))
    lines = _transistor_lines(emit(dc_batch_deck(circuit, np.zeros((2, 4)))))
    assert len(lines) == 2 and not any(re.search(r"\bm=", line.lower()) for line in lines)


@pytest.mark.ngspice
def test_parallel_nmos_moves_the_simulated_outputs() -> None:
    """m = 4 nMOS devices move the simulated neurons' threshold (the m reaches ngspice)."""
    rng = np.random.default_rng(0)
    g = (rng.uniform(0.12e-6, 8e-6, size=(2, 10)),)
    x = rng.uniform(-0.1, 0.1, size=(3, 4))
    runs = []
    for mn in (1, 4):
        circuit = NetworkCircuit(builtin(), InverterSizing(mn=mn), g)
        runs.append(dc_arrays(simulate(dc_batch_deck(circuit, x)).plot(0), g, len(x), x))
    single, parallel = runs
    assert np.max(np.abs(single["outp0"] - parallel["outp0"])) > 0.1  # the threshold moves: outputs flip


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_technology_options(parser, multi_sizes=True)
    return parser.parse_args(list(argv))


def test_cli_parallel_devices() -> None:
    assert (sizing_from_args(_args()).mn, sizing_from_args(_args()).mp) == (1, 1)
    s = sizing_from_args(_args("--tech", "sky130", "--wn", "50", "--wp", "50", "--ln", "0.8", "--lp", "0.5", "--mn", "12"))
    assert (s.mn, s.mp) == (12, 1)
    assert np.isclose(s.wn_m, 50e-6) and np.isclose(s.lp_m, 0.5e-6)
    several = sizings_from_args(_args("--sizes", "1,2,0.15,0.35;2,2,0.15,0.35", "--mn", "3", "--mp", "2"))
    assert [(s.mn, s.mp) for s in several] == [(3, 2), (3, 2)]


@pytest.mark.parametrize("flag", ["--mn", "--mp"])
def test_cli_refuses_non_positive_counts(flag: str) -> None:
    for text in ("0", "1.5", "-3"):
        with pytest.raises(SystemExit):  # argparse: not an integer ≥ 1
            _args(flag, text)
    args = _args(flag, "1")
    setattr(args, flag[2:], 0)  # library callers that bypass argparse
    with pytest.raises(ConfigError, match=f"{flag} must be a positive number of parallel devices"):
        sizing_from_args(args)


def test_validation_takes_the_recorded_parallel_devices() -> None:
    import dataclasses

    from memspice.fit.calibration import phax_reference_calibration
    from memspice.validate.api import describe_sizing, recorded_sizing, sizing_conflicts

    sizes = {"wn_m": "5e-05", "wp_m": "5e-05", "ln_m": "8e-07", "lp_m": "5e-07"}
    cal = dataclasses.replace(phax_reference_calibration(), source={**sizes, "mn": "12"})
    recorded = recorded_sizing(cal)
    assert (recorded.mn, recorded.mp) == (12, 1)
    assert "mn = 12" in describe_sizing(recorded)
    assert sizing_conflicts(dataclasses.replace(recorded, mn=1), recorded) == ["mn"]
    assert sizing_conflicts(recorded, recorded) == []
    single = recorded_sizing(dataclasses.replace(cal, source=sizes))  # older calibrations: one device each
    assert (single.mn, single.mp) == (1, 1)
