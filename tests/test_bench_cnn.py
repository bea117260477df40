"""scripts/bench_cnn.py --quick end to end: trains, validates in ngspice, ends with JSON."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_cnn.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_cnn", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.ngspice
def test_quick_run_ends_with_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    mnist = os.environ.get("MEMSPICE_MNIST_DIR")
    if not mnist or not Path(mnist).is_dir():
        pytest.skip("needs the MNIST test set in $MEMSPICE_MNIST_DIR")
    assert _module().main(["--mnist", mnist, "--quick"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("float_accuracy", "constrained_accuracy", "spice_accuracy", "agreement",
                "output_rms_v", "layer_rms_v", "spice_images_per_s", "per_image_baseline_per_s",
                "peak_mb_per_worker", "epoch_ratio_coupled_to_static"):
        assert figures[key] is not None, key
    assert set(figures["hybrid"]) >= {"software", "transfer", "hybrid", "recovered_fraction",
                                      "data_fraction"}
    assert len(figures["layer_rms_v"]) == 6  # outn and outp of three crossbar layers
    # the coupled model is SPICE's operating point: outputs agree to well under a millivolt
    assert figures["output_rms_v"] < 1e-3 and figures["agreement"] == 1.0


def test_missing_mnist_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMSPICE_MNIST_DIR", raising=False)
    with pytest.raises(SystemExit) as exc:
        _module().main([])
    assert exc.value.code == 2
