"""The coupled model against ngspice on the built-in card: it must predict the circuit."""

from __future__ import annotations

import numpy as np
import pytest

from memspice.circuit.builders import InverterSizing, indexed_input_sources, network_deck, network_output_saves
from memspice.circuit.deck import Dc, Sweep
from memspice.circuit.wiring import output_node
from memspice.sim import simulate
from memspice.tech import builtin
from memspice.train.forward import make_evaluator


@pytest.mark.ngspice
@pytest.mark.slow
def test_coupled_matches_spice_and_beats_static():
    from memspice.characterize.calibrate import calibrate

    tech, sizing = builtin(), InverterSizing()
    cal = calibrate(tech, sizing)
    rng = np.random.default_rng(0)
    topology = (12, 8, 4)
    g = [np.exp(rng.uniform(np.log(0.12e-6), np.log(8e-6), (m, 2 * n + 2)))
         for n, m in zip(topology[:-1], topology[1:])]
    x = rng.uniform(cal.rails.vss, cal.rails.vdd, (40, topology[0]))
    deck = network_deck(tech, sizing, g, indexed_input_sources(x), [Dc(Sweep("idx", 0, len(x) - 1, 1))],
                        network_output_saves(g))
    plot = simulate(deck).plots[0]
    errors = {}
    for mode in ("static", "coupled"):
        layers = make_evaluator(mode, cal).forward(g, x).layers
        diffs = []
        for index, state in enumerate(layers):
            for pol, model in (("n", state.outn), ("p", state.outp)):
                spice = np.stack([np.asarray(plot[output_node(index, j, pol)]) for j in range(g[index].shape[0])], 1)
                diffs.append(np.ravel(model - spice))
        errors[mode] = float(np.sqrt(np.mean(np.concatenate(diffs) ** 2)))
    assert errors["coupled"] < 1e-3
    assert errors["static"] > 20 * errors["coupled"]
