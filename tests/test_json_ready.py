"""memspice.io.json_ready: what the benchmark scripts' last JSON line goes through."""

import json
import math

import numpy as np

from memspice.io import json_ready


def test_json_ready_makes_strict_json_of_numpy_and_nonfinite_values():
    value = {"a": np.float64(0.25), 3: (np.int64(7), [np.float32(math.nan), math.inf]),
             "nested": {"b": [np.float64(-math.inf), "text", None, True]}}
    out = json_ready(value)
    assert out == {"a": 0.25, "3": [7, [None, None]], "nested": {"b": [None, "text", None, True]}}
    assert type(out["3"][0]) is int and type(out["a"]) is float
    json.dumps(out, allow_nan=False)  # raises on any NaN or inf left behind
