"""scripts/bench_hybrid_cnn.py --quick end to end: trains a tiny two-conv CNN, runs the hybrid
procedure in ngspice, ends with one line of JSON holding per-seed and mean figures."""

from __future__ import annotations

import json

import pytest

from script_loader import load_script

FIGURES = ("software", "transfer", "hybrid", "recovered_fraction", "data_fraction")


def _module():
    return load_script("bench_hybrid_cnn")


@pytest.mark.slow
@pytest.mark.ngspice
def test_quick_run_ends_with_per_seed_and_mean_figures(tmp_path, capsys):
    assert _module().main(["--quick", "--out", str(tmp_path / "run"), "--seeds", "0,1", "--test-images", "6",
                           "--iterations", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    hybrid = summary["hybrid"]
    assert [row["seed"] for row in hybrid["per_seed"]] == [0, 1]
    for row in hybrid["per_seed"]:
        assert set(FIGURES) <= set(row) and row["test_samples"] == 6
        assert row["data_fraction"] == pytest.approx(0.1) and row["train_samples"] == 30
        for key in ("software", "transfer", "hybrid"):
            assert 0 <= row[key] <= 1 and row[key] * 6 == pytest.approx(round(row[key] * 6))
    # the ideal circuit does not depend on the seed and is simulated once
    assert hybrid["per_seed"][0]["software"] == hybrid["per_seed"][1]["software"]
    assert hybrid["per_seed"][1]["spice_samples"] == 6 + 2 * 30 + 6
    assert summary["retrain"]["iterations"] == 2 and summary["software_simulated"]
    for key in ("software", "transfer", "hybrid"):
        assert hybrid["mean"][key] == pytest.approx(sum(r[key] for r in hybrid["per_seed"]) / 2)
    assert (tmp_path / "run" / "network" / "network.json").exists()
    # a saved network is taken as it is: the summary describes it, not the recipe's topology
    from memspice.network import Dense, Flatten, NetworkSpec
    from memspice.train.conv_io import load_layered_network

    module = _module()
    module.digits_spec = lambda: NetworkSpec((1, 8, 8), (Flatten(), Dense(10)))
    assert module.main(["--quick", "--network", str(tmp_path / "run" / "network"), "--out",
                        str(tmp_path / "again"), "--seeds", "0", "--test-images", "2",
                        "--iterations", "1"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["network"] == load_layered_network(tmp_path / "run" / "network").spec.summary()


def test_bad_options_are_refused_before_any_work(tmp_path, capsys):
    module = _module()
    assert module.main(["--quick", "--qat-levels", "1", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.startswith("memspice: error:")
    for bad in (["--seeds", "0,0"], ["--qat-epochs", "8"], ["--seeds", "a"], ["--iterations", "0"],
                ["--software-accuracy", "1.5"]):
        with pytest.raises(SystemExit) as exit_info:
            module.main(["--quick", "--out", str(tmp_path / "run"), *bad])
        assert exit_info.value.code == 2
    assert not (tmp_path / "run").exists()
