"""Per-layer pruning targets from text: ``STRUCTURE:AMOUNT[:RxC]`` per crossbar layer.

``AMOUNT`` is a density in (0, 1] (``0.25``) or a compression ratio ending in ``x``
(``10x`` = density 0.1), or ``budget``: the layer's structures compete for one device budget
of the whole network (``AdmmConfig.device_compression``, so a conv weight built at many
positions is pruned before a cheaper one) or one weight budget
(``AdmmConfig.weight_compression``, every θ counted once); ``RxC`` is the tile size of the ``tile`` structure (physical rows ×
columns); ``none`` leaves a layer unpruned. Layers are separated by commas, e.g.
``tile:0.1:4x4,row:0.6``.
"""

from __future__ import annotations

from memspice.train.admm import LayerTarget
from memspice.train.sparsity import STRUCTURES, SparsityError, check_density


def parse_amount(text: str) -> float:
    """A density from ``0.25`` or ``4x``.

    Raises:
        SparsityError: not a number, a density outside (0, 1] or a ratio below 1.
    """
    text = text.strip()
    if text.lower().endswith("x"):
        try:
            ratio = float(text[:-1])
        except ValueError:
            raise SparsityError(f"a compression ratio looks like 10x, got {text!r}") from None
        if not ratio >= 1.0 or ratio == float("inf"):
            raise SparsityError(f"a compression ratio must be ≥ 1, got {text!r}")
        return 1.0 / ratio
    try:
        value = float(text)
    except ValueError:
        raise SparsityError(f"a density is a number in (0, 1] (or a ratio like 10x), got {text!r}") from None
    return check_density(value)


def parse_tile(text: str) -> tuple[int, int]:
    """``RxC`` as two positive integers."""
    parts = text.lower().split("x")
    try:
        rows, cols = (int(p) for p in parts)
    except ValueError:
        raise SparsityError(f"a tile size looks like 4x4 (rows x columns), got {text!r}") from None
    if rows < 1 or cols < 1:
        raise SparsityError(f"a tile size needs positive rows and columns, got {text!r}")
    return rows, cols


def parse_targets(text: str, n_layers: int) -> list[LayerTarget]:
    """One :class:`LayerTarget` per crossbar layer from ``STRUCTURE:AMOUNT[:RxC],…``.

    Raises:
        SparsityError: another number of layers, an unknown structure, a bad amount or tile.
    """
    items = [t.strip() for t in text.split(",")]
    if len(items) != n_layers:
        raise SparsityError(f"{len(items)} pruning targets for a network of {n_layers} crossbar "
                            f"layers (one per layer, 'none' for an unpruned one)")
    targets = []
    for item in items:
        if item.lower() == "none":
            targets.append(LayerTarget())
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3) or parts[0] not in STRUCTURES:
            raise SparsityError(f"a pruning target is STRUCTURE:AMOUNT[:RxC] with STRUCTURE one of "
                                f"{', '.join(STRUCTURES)}, got {item!r}")
        tile = parse_tile(parts[2]) if len(parts) == 3 else None
        if parts[0] == "tile" and tile is None:
            raise SparsityError(f"a tile target needs a tile size, e.g. tile:0.1:4x4, got {item!r}")
        if parts[1].strip().lower() == "budget":
            targets.append(LayerTarget(parts[0], 1.0, tile, budgeted=True))
        else:
            targets.append(LayerTarget(parts[0], parse_amount(parts[1]), tile))
    return targets
