"""Instance labels from the U-Net's class output (pure numpy/scipy).

For the 3-class scheme (background 0 / interior 1 / border 2, see
:mod:`napari_tiled_unet.train.targets`) each connected component of the interior class is
one object seed; seeds then grow into the border pixels that touch them, and only into
border pixels, one pixel ring at a time, so a border line between two touching objects is
shared between them and never bridged.  Border pixels that no seed reaches (stray border
blobs) become background.  With 2-class output there is no border class and the objects
are simply the connected components of the foreground.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["classes_to_instances", "relabel_sequential"]


def _to_classes(prediction: np.ndarray) -> np.ndarray:
    """Return integer class labels from class labels or channel-last probabilities."""
    arr = np.asarray(prediction)
    if arr.dtype.kind == "f":
        if arr.ndim < 2 or arr.shape[-1] not in (2, 3):
            raise ValueError(
                f"float input is read as probabilities with 2 or 3 classes on the last axis, "
                f"got shape {arr.shape}; pass integer class labels instead"
            )
        return np.argmax(arr, axis=-1)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"class labels must be integer or bool, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError("class labels must be an image with at least one axis, got a scalar")
    if arr.size and arr.min() < 0:
        raise ValueError(f"class labels must be >= 0, got minimum {arr.min()}")
    return arr


def _grow_into(labels: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Grow labelled seeds into the pixels of ``region`` connected to them, ring by ring.

    A pixel reached by two seeds in the same ring goes to the higher label.
    """
    footprint = ndi.generate_binary_structure(labels.ndim, labels.ndim)
    todo = region & (labels == 0)
    while todo.any():
        grown = ndi.maximum_filter(labels, footprint=footprint, mode="constant", cval=0)
        reached = todo & (grown > 0)
        if not reached.any():
            break
        labels[reached] = grown[reached]
        todo &= ~reached
    return labels


def _smallest_uint(n: int) -> np.dtype:
    for dtype in (np.uint16, np.uint32):
        if n <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def relabel_sequential(labels: np.ndarray, *, min_size: int = 0) -> np.ndarray:
    """Drop objects smaller than ``min_size`` pixels and renumber the rest ``1..N``.

    Objects keep their order (by old label).  Returns uint16, or uint32 when ``N`` exceeds
    65535 (uint64 beyond that).
    """
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu" or (arr.size and arr.min() < 0):
        raise ValueError("labels must be non-negative integers (0 = background)")
    if not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ValueError(f"min_size must be an integer >= 0 pixels, got {min_size!r}")
    # np.unique rather than bincount: label ids may be huge and sparse.
    ids, inverse, counts = np.unique(arr, return_inverse=True, return_counts=True)
    keep = (counts >= min_size) & (ids != 0)
    mapping = np.zeros(ids.size, dtype=np.int64)
    mapping[keep] = np.arange(1, int(keep.sum()) + 1)
    return mapping[inverse.reshape(arr.shape)].astype(_smallest_uint(int(keep.sum())))


def classes_to_instances(
    prediction: np.ndarray,
    *,
    interior_class: int = 1,
    border_class: int | None = 2,
    min_size: int = 0,
    connectivity: int = 1,
) -> np.ndarray:
    """Turn per-pixel classes (or class probabilities) into instance labels.

    Parameters
    ----------
    prediction : ndarray
        Integer/bool class labels of any dimensionality, or float probabilities with the
        2 or 3 classes on the last axis (reduced by argmax).  For 2-class output the
        foreground is the ``interior_class``.
    interior_class : int
        Class whose connected components seed the objects (1 in both schemes).
    border_class : int or None
        Class the seeds grow into (2 in the 3-class scheme); absent values or None mean no
        growth, i.e. plain connected components of the interior/foreground.
    min_size : int
        Objects with fewer pixels (after growth) are removed; 0 keeps all.  E.g. 20 drops
        speckles.
    connectivity : int
        Neighbourhood that links interior pixels: 1 = faces only (4-neighbourhood in 2D,
        robust to thin predicted borders), ``ndim`` = full (8 in 2D).

    Returns
    -------
    ndarray of uint16 (uint32 for more than 65535 objects)
        Instance labels, 0 = background, objects numbered ``1..N`` without gaps.  uint16 is
        the minimum so that all images of a stack share one dtype.

    Raises
    ------
    ValueError
        For non-numeric or negative classes, probabilities without a 2/3-class last axis,
        equal interior and border classes, or invalid ``min_size``/``connectivity``.
    """
    classes = _to_classes(prediction)
    if interior_class == border_class:
        raise ValueError(f"interior_class and border_class must differ, both are {border_class}")
    if connectivity not in range(1, classes.ndim + 1):
        raise ValueError(f"connectivity must be 1..{classes.ndim}, got {connectivity!r}")
    structure = ndi.generate_binary_structure(classes.ndim, connectivity)
    seeds, _ = ndi.label(classes == interior_class, structure=structure)
    if border_class is not None:
        seeds = _grow_into(seeds, classes == border_class)
    return relabel_sequential(seeds, min_size=min_size)
