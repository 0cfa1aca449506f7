"""Test-time augmentation: the softmax averaged over flips and rotations of each tile.

A U-Net's valid input sizes are the same along Y and X and read the same from either end,
so every flip or 90-degree rotation of a valid tile is a valid tile, and the network
composed with a transform and its inverse is again an exactly tileable function: tiled
augmented inference equals augmented inference of the whole mirror-padded image (the
transforms act on that padded image, whose pooling grid starts at the image's top-left
corner).  The cost is one network pass per transform (8 for the whole dihedral group).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["TRANSFORMS", "average_over", "parse_tta"]

#: The dihedral group of the square: name -> (quarter turns, flip Y first).
TRANSFORMS: dict[str, tuple[int, bool]] = {
    "identity": (0, False),
    "rot90": (1, False),
    "rot180": (2, False),
    "rot270": (3, False),
    "flip_y": (0, True),
    "antitranspose": (1, True),
    "flip_x": (2, True),
    "transpose": (3, True),
}
#: Named subsets: the whole group, and the identity with the three flips.
_SUBSETS = {"all": tuple(TRANSFORMS), "flips": ("identity", "flip_y", "flip_x", "rot180")}


def parse_tta(tta: Any) -> tuple[str, ...]:
    """Turn ``tta`` into transform names; ``()`` means no augmentation.

    ``False``/None: none; ``True`` or ``"all"``: the 8 transforms; ``"flips"``: identity,
    both flips and their product; a comma-separated string or a sequence of names from
    :data:`TRANSFORMS`: those.  Anything else is a one-line ValueError.
    """
    if tta is None or tta is False or tta == "none":
        return ()
    if tta is True:
        return _SUBSETS["all"]
    if isinstance(tta, str):
        tta = _SUBSETS.get(tta) or [t.strip() for t in tta.split(",") if t.strip()]
    names = tuple(dict.fromkeys(tta)) if isinstance(tta, Sequence) else None
    if not names or any(n not in TRANSFORMS for n in names):
        raise ValueError(
            f"tta must be True, 'all', 'flips' or names from {', '.join(TRANSFORMS)}, got {tta!r}"
        )
    return names


def _forward(batch: np.ndarray, name: str) -> np.ndarray:
    turns, flip = TRANSFORMS[name]
    out = batch[:, ::-1] if flip else batch
    return np.ascontiguousarray(np.rot90(out, turns, axes=(1, 2)))


def _inverse(batch: np.ndarray, name: str) -> np.ndarray:
    turns, flip = TRANSFORMS[name]
    out = np.rot90(batch, -turns, axes=(1, 2))
    return out[:, ::-1] if flip else out


def average_over(
    predict: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, names: Sequence[str]
) -> np.ndarray:
    """Mean of ``predict`` over the transforms ``names`` of a ``(B, Y, X, C)`` batch.

    Each transformed batch goes through ``predict`` and its output back through the
    inverse transform; the outputs are summed in the order of ``names`` (float32), so a
    pixel's result does not depend on the tile it was computed in.
    """
    total: np.ndarray | None = None
    for name in names:
        out = _inverse(predict(_forward(batch, name)), name)
        total = out.astype(np.float32, copy=True) if total is None else total + out
    assert total is not None
    return total / np.float32(len(names))
