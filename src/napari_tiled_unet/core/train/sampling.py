"""Training tiles: random input-size windows with mirrored borders, centre crops."""

from __future__ import annotations

import numpy as np

from napari_tiled_unet.core.tiling import reflect_indices
from napari_tiled_unet.core.train.augment import _check_spatial

__all__ = ["center_crop", "sample_tile"]


def _pair(size: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in pair):
        raise ValueError(f"{name} must be a positive integer or a (Y, X) pair, got {size!r}")
    return int(pair[0]), int(pair[1])


def _mirror_crop(array: np.ndarray, start: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    iy = reflect_indices(np.arange(start[0], start[0] + size[0]), array.shape[0])
    ix = reflect_indices(np.arange(start[1], start[1] + size[1]), array.shape[1])
    return array[np.ix_(iy, ix)]


def sample_tile(
    image: np.ndarray,
    *targets: np.ndarray,
    input_size: int | tuple[int, int],
    output_size: int | tuple[int, int],
    rng: np.random.Generator | None = None,
    origin: tuple[int, int] | None = None,
) -> tuple[np.ndarray, ...]:
    """Cut a random training tile: the input window of the image, the centre of the targets.

    The output window (``output_size``) is placed uniformly at random inside the image
    (anywhere covering it when the image is smaller); the image window extends it by the
    halo ``(input_size - output_size) / 2`` on each side.  Parts outside the image are
    mirrored, so images smaller than the tile work.

    Parameters
    ----------
    image, *targets : ndarray
        ``(Y, X)`` or ``(Y, X, C)`` image; arrays with the same ``(Y, X)`` (labels,
        weights, ...) that are cut to ``output_size``.
    input_size, output_size : int or (int, int)
        Network input and output sizes; their difference must be even and >= 0.
    rng : numpy.random.Generator, optional
        Source of randomness; required unless ``origin`` is given.
    origin : (int, int), optional
        Top-left corner of the output window in image coordinates (may be negative).

    Returns
    -------
    tuple of ndarray
        ``(image_tile, *target_tiles)``.
    """
    arrays = _check_spatial([image, *targets])
    size_in, size_out = _pair(input_size, "input_size"), _pair(output_size, "output_size")
    if any(i < o or (i - o) % 2 for i, o in zip(size_in, size_out, strict=True)):
        raise ValueError(
            f"input_size {size_in} must exceed output_size {size_out} by an even margin"
        )
    if origin is None:
        if rng is None:
            raise ValueError("sample_tile needs rng=np.random.default_rng(...) or an origin")
        free = [n - o for n, o in zip(arrays[0].shape[:2], size_out, strict=True)]
        oy, ox = (int(rng.integers(min(0, f), max(0, f) + 1)) for f in free)
    else:
        oy, ox = (int(o) for o in origin)
    hy, hx = ((i - o) // 2 for i, o in zip(size_in, size_out, strict=True))
    tiles = [_mirror_crop(arrays[0], (oy - hy, ox - hx), size_in)]
    tiles += [_mirror_crop(t, (oy, ox), size_out) for t in arrays[1:]]
    return tuple(tiles)


def center_crop(array: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Return the centre ``size`` window of the first two axes (margins must be even)."""
    arr = np.asarray(array)
    sy, sx = _pair(size, "size")
    my, mx = arr.shape[0] - sy, arr.shape[1] - sx
    if my < 0 or mx < 0 or my % 2 or mx % 2:
        raise ValueError(f"cannot centre-crop {arr.shape[:2]} to {(sy, sx)}: need even margins")
    return arr[my // 2 : my // 2 + sy, mx // 2 : mx // 2 + sx]
