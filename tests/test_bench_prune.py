"""scripts/bench_prune.py: the LeNet-like CNN preset and its weight budget refused before any
training."""

import numpy as np
import pytest

from script_loader import load_script


@pytest.fixture(scope="module")
def bench_prune():
    return load_script("bench_prune")


def test_the_lenet_preset_has_its_weights_in_its_dense_layers(bench_prune):
    spec = bench_prune.cnn_spec("lenet", quick=False)
    theta = [int(np.prod(p.theta_shape)) for p in spec.plans]
    devices = [p.n_devices for p in spec.plans]
    # conv 4 k3 /2: 36 positions · 4 channels · (2·9 + 2); conv 8 k3: 16 · 8 · (2·36 + 2);
    # dense 32 on 128 inputs; dense 10 on 32
    assert devices == [2880, 9472, 8256, 660] and theta == [80, 592, 8256, 660]
    assert sum(theta[2:]) / sum(theta) == pytest.approx(0.93, abs=0.005)
    assert bench_prune.cnn_spec("bench", quick=False).plans[0].n_devices == 11520
    quick = bench_prune.cnn_spec("lenet", quick=True)
    assert quick.input_shape == (1, 8, 8) and len(quick.plans) == 3


@pytest.mark.parametrize("targets, message", [
    ("none,tile:budget:2x1,tile:budget:2x1@L32W5000", "a weight compression must be at most 3108"),
    ("none,tile:budget:2x1,tile:budget:2x1@L32W0.5", "a weight compression must be ≥ 1"),
])
def test_a_weight_budget_outside_its_range_is_one_error_before_any_work(bench_prune, tmp_path,
                                                                        capsys, targets, message):
    out = tmp_path / "run"
    code = bench_prune.main(["--quick", "--sections", "cnn", "--cnn-preset", "lenet",
                             "--cnn-targets", targets, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("memspice: error:"), err
    assert message in err[0]
    assert not out.exists()
