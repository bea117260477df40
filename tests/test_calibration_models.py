"""Calibration JSON: the new optional models round-trip; old documents are unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memspice.errors import ConfigError
from memspice.fit.calibration import (
    Calibration,
    InverterCurrentModel,
    LoadAwareActivation,
    LoadAwareNeuron,
    load_calibration,
    phax_reference_calibration,
    save_calibration,
)


def _load_aware(sign: float) -> LoadAwareActivation:
    return LoadAwareActivation(c1=(0.0, 0.001), log_abs_c2=(np.log(0.24), 0.0), c3=(0.0,),
                               log_c4=(np.log(40.0), -0.05, 0.001), c2_sign=sign, g_scale_siemens=1e-6, g_load_min_siemens=5e-7, g_load_max_siemens=1e-5,
                               rms_v=1e-3, max_abs_v=4e-3)


def _current() -> InverterCurrentModel:
    v = tuple(float(x) for x in np.linspace(-0.25, 0.25, 5))
    table = tuple(tuple(-1e-6 * a - 2e-6 * b for b in v) for a in v)
    return InverterCurrentModel(v, v, table, 1e-10, 5e-10)


def test_old_documents_keep_their_layout_and_digest() -> None:
    cal = phax_reference_calibration()
    data = cal.to_dict()
    assert "load_aware" not in data and "inverter_current" not in data
    assert Calibration.from_dict(json.loads(json.dumps(data))).digest() == cal.digest()


def test_round_trip_with_load_aware_and_current_models(tmp_path: Path) -> None:
    base = phax_reference_calibration()
    cal = Calibration(base.rails, base.activation, base.device, {"technology": "x"}, {"r": 1e-3},
                      load_aware=LoadAwareNeuron(_load_aware(-1.0), _load_aware(1.0)), inverter_current=_current())
    path = tmp_path / "cal.json"
    save_calibration(cal, path)
    back = load_calibration(path)
    assert back == cal and back.digest() == cal.digest()
    assert back.load_aware.noninverting.at(1e-6).c4 == pytest.approx(40.0)
    assert back.inverter_current.table().shape == (5, 5)


def test_invalid_optional_models_are_rejected() -> None:
    with pytest.raises(ConfigError):
        LoadAwareActivation(c1=(), log_abs_c2=(1.0,), c3=(0.0,), log_c4=(1.0,), c2_sign=1.0, g_scale_siemens=1e-6,
                            g_load_min_siemens=1e-6, g_load_max_siemens=2e-6, rms_v=0, max_abs_v=0)
    with pytest.raises(ConfigError):
        _load_aware(1.0).at(-1e-6)
    with pytest.raises(ConfigError):
        InverterCurrentModel((0.0, 1.0, 2.0, 3.0), (0.0, 1.0, 2.0, 3.0), ((0.0,) * 4,) * 3, 0.0, 0.0)
    data = phax_reference_calibration().to_dict()
    data["load_aware"] = {"inverting": {}}
    with pytest.raises(ConfigError):
        Calibration.from_dict(data)
