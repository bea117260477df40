"""Static power of a dense network's input drivers, and its gradient, for power-aware training.

The first crossbar's rows are driven by the network's inputs (row ``ip_i`` at ``+x_i``, ``in_i``
at ``−x_i``) and its two bias rows by the rails; each column node drives only an inverter gate,
so at DC it sits at the conductance-weighted mean of all its rows,
``V_c = Σ_r G_cr·V_r / Σ_r G_cr``, whatever the later layers do. The power the input drivers
deliver is then a closed-form function of the first layer's conductances and the inputs:

    P = Σ_c Σ_{r driven} G_cr·V_r·(V_r − V_c)      (W, voltages from ground)

the figure ``memspice validate`` measures from the drivers' SPICE currents
(:func:`memspice.validate.decks.input_drive_power`). At ±0.25 V the drivers deliver most of a
network's static power, and energy per inference is roughly that power times the settling time.
"""

from __future__ import annotations

import numpy as np

from memspice.circuit.wiring import input_rows, row_voltages
from memspice.errors import ConfigError


def input_drive_power(conductance: np.ndarray, x: np.ndarray, vdd: float, vss: float) -> np.ndarray:
    """Input drivers' static power per sample (W).

    Args:
        conductance: the first layer's ``(M, 2N + 2)`` conductances (S), rows in wiring order.
        x: ``(B, N)`` input voltages (V).
        vdd, vss: rails driving the bias rows (V).

    Returns:
        ``(B,)`` power the ``2N`` input drivers deliver (W).
    """
    return input_drive_power_and_grad(conductance, x, vdd, vss)[0]


def input_drive_power_and_grad(conductance: np.ndarray, x: np.ndarray, vdd: float,
                               vss: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample input-driver power (W) and ``∂mean(P)/∂G`` ``(M, 2N + 2)`` (W/S).

    Raises:
        ConfigError: shapes that do not belong together.
    """
    g = np.asarray(conductance, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or g.ndim != 2 or g.shape[1] != 2 * x.shape[1] + 2:
        raise ConfigError(f"conductances {g.shape} do not fit inputs {x.shape} (need (M, 2N + 2))")
    v = row_voltages(*input_rows(x), vdd, vss)  # (B, R)
    driven = v.copy()
    driven[:, -2:] = 0.0  # the bias rows hang on the rails, not on the drivers
    total = g.sum(axis=1)  # (M,)
    v_col = (v @ g.T) / total  # (B, M)
    a_driven = driven @ g.T  # Σ_{r driven} G_cr V_r, (B, M)
    power = (driven**2 @ g.T).sum(axis=1) - np.sum(v_col * a_driven, axis=1)
    n = x.shape[0]
    # ∂P_b/∂G_cr = D_br² − V_bc·D_br − A_bc·(V_br − V_bc)/S_c, D the driven rows' voltages
    k = a_driven / total  # (B, M)
    grad = (np.sum(driven**2, axis=0)[None, :] - v_col.T @ driven - k.T @ v
            + np.sum(k * v_col, axis=0)[:, None]) / n
    return power, grad
