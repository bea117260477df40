"""Vectorized window operations for crossbar layers: im2col, its adjoint, average pooling.

Maps are ``(B, C, H, W)`` float64. Windows are taken with
:func:`numpy.lib.stride_tricks.sliding_window_view`, so there is no Python loop over samples
or positions; the adjoints loop over the ``k²`` (or ``P²``) offsets of a window only. Tap order
inside a window is ``(c, row, col)``, the order of :mod:`memspice.network.wiring`.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from memspice.network.layers import AvgPool2d, Conv2d
from memspice.network.spec import CrossbarPlan


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int,
           out_hw: tuple[int, int]) -> np.ndarray:
    """Windows of ``x`` ``(B, C, H, W)`` as ``(B, H_out·W_out, C·k·k)`` (zero padding)."""
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    h_out, w_out = out_hw
    win = sliding_window_view(x, (kernel, kernel), axis=(2, 3))
    win = win[:, :, : stride * (h_out - 1) + 1 : stride, : stride * (w_out - 1) + 1 : stride]
    batch, channels = x.shape[:2]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(batch, h_out * w_out,
                                                   channels * kernel * kernel)


def col2im(grad: np.ndarray, in_shape: tuple[int, int, int], kernel: int, stride: int,
           padding: int, out_hw: tuple[int, int]) -> np.ndarray:
    """Adjoint of :func:`im2col`: sum window gradients back onto ``(B, C, H, W)``."""
    channels, height, width = in_shape
    h_out, w_out = out_hw
    batch = grad.shape[0]
    g = grad.reshape(batch, h_out, w_out, channels, kernel, kernel)
    out = np.zeros((batch, channels, height + 2 * padding, width + 2 * padding))
    for i in range(kernel):
        for j in range(kernel):
            out[:, :, i : i + stride * h_out : stride, j : j + stride * w_out : stride] += (
                g[:, :, :, :, i, j].transpose(0, 3, 1, 2))
    if padding:
        out = out[:, :, padding:-padding, padding:-padding]
    return out


def avg_pool(x: np.ndarray, pool: AvgPool2d) -> np.ndarray:
    """Average of every ``size × size`` window, ``(B, C, H, W) → (B, C, H_out, W_out)``."""
    if pool.step == pool.size:  # tiling windows: a reshape, no strided view
        b, c, h, w = x.shape
        p = pool.size
        return x.reshape(b, c, h // p, p, w // p, p).mean(axis=(3, 5))
    win = sliding_window_view(x, (pool.size, pool.size), axis=(2, 3))
    return win[:, :, :: pool.step, :: pool.step].mean(axis=(-2, -1))


def avg_pool_backward(grad: np.ndarray, in_hw: tuple[int, int], pool: AvgPool2d) -> np.ndarray:
    """Adjoint of :func:`avg_pool`: each input gets ``1/size²`` of every window it is in."""
    batch, channels, h_out, w_out = grad.shape
    share = grad / (pool.size * pool.size)
    if pool.step == pool.size:
        p = pool.size
        spread = np.broadcast_to(share[:, :, :, None, :, None], (batch, channels, h_out, p, w_out, p))
        return spread.reshape(batch, channels, *in_hw)
    out = np.zeros((batch, channels, *in_hw))
    step = pool.step
    for a in range(pool.size):
        for b in range(pool.size):
            out[:, :, a : a + step * h_out : step, b : b + step * w_out : step] += share
    return out


def layer_taps(plan: CrossbarPlan, sources: np.ndarray) -> np.ndarray:
    """What every column of the layer reads: ``(B, positions, K)`` from the sources.

    Args:
        plan: the crossbar layer.
        sources: ``(B, S)`` values of the units driving it, flat in C order.
    """
    batch = sources.shape[0]
    x = sources.reshape(batch, *plan.source_shape)
    for pool in plan.pools:
        x = avg_pool(x, pool)
    layer = plan.layer
    if isinstance(layer, Conv2d):
        return im2col(x, layer.kernel, layer.stride, layer.padding, plan.output_shape[1:])
    return x.reshape(batch, 1, -1)


def layer_taps_backward(plan: CrossbarPlan, grad_taps: np.ndarray) -> np.ndarray:
    """Adjoint of :func:`layer_taps`: ``(B, positions, K)`` → ``(B, S)``."""
    batch = grad_taps.shape[0]
    layer = plan.layer
    if isinstance(layer, Conv2d):
        grad = col2im(grad_taps, plan.pooled_shape, layer.kernel, layer.stride, layer.padding,
                      plan.output_shape[1:])
    else:
        grad = grad_taps.reshape(batch, *plan.pooled_shape)
    shapes = [plan.source_shape]
    for pool in plan.pools[:-1]:
        shapes.append(pool.output_shape(shapes[-1]))
    for pool, in_shape in zip(reversed(plan.pools), reversed(shapes)):
        grad = avg_pool_backward(grad, in_shape[1:], pool)
    return grad.reshape(batch, -1)


def positions_to_columns(values: np.ndarray) -> np.ndarray:
    """``(B, positions, channels)`` → ``(B, channels·positions)``, physical column order."""
    return values.transpose(0, 2, 1).reshape(values.shape[0], -1)


def columns_to_positions(values: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of :func:`positions_to_columns`."""
    batch = values.shape[0]
    return values.reshape(batch, channels, -1).transpose(0, 2, 1)
