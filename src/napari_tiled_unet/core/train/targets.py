"""Class targets from instance label images (pure numpy/scipy).

An *instance label image* has 0 for background and one distinct positive integer per
object.  The U-Net is trained on per-pixel *classes* derived from it:

- 2 classes (the paper's setting): background 0, object 1.
- 3 classes: background 0, object interior 1, object border 2.  A border pixel is an object
  pixel whose full neighbourhood (8-neighbourhood in 2D, 26 in 3D) contains background or
  another object; pixels outside the image do not count.  Touching objects are therefore
  always separated by border pixels of both, and no interior pixel of one object is even
  diagonally adjacent to an interior pixel of another.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["check_instances", "instance_to_classes", "one_hot"]


def check_instances(instances: np.ndarray) -> np.ndarray:
    """Return ``instances`` as an ndarray after checking it is a valid instance label image.

    Parameters
    ----------
    instances : ndarray of int
        Instance labels: 0 = background, each object a distinct positive integer.

    Returns
    -------
    ndarray
        The same data (not copied when already an ndarray).

    Raises
    ------
    ValueError
        If the dtype is not integer, the array is 0-dimensional or holds negative values.
    """
    arr = np.asarray(instances)
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"instance labels must have an integer dtype, got {arr.dtype}; "
            "convert with .astype(np.int32) after checking the values are whole numbers"
        )
    if arr.ndim == 0:
        raise ValueError("instance labels must be an image with at least one axis, got a scalar")
    if arr.size and arr.min() < 0:
        raise ValueError(
            f"instance labels must be >= 0 (0 = background), got minimum {arr.min()}; "
            "relabel the objects with positive integers"
        )
    return arr


def _border_mask(instances: np.ndarray, border_width: int) -> np.ndarray:
    """Return object pixels next to background or another object, ``border_width`` thick."""
    footprint = ndi.generate_binary_structure(instances.ndim, instances.ndim)
    # A pixel sees a different label in its neighbourhood exactly when max != min there;
    # "nearest" makes the outside of the image look like its edge, so edges are no border.
    high = ndi.maximum_filter(instances, footprint=footprint, mode="nearest")
    low = ndi.minimum_filter(instances, footprint=footprint, mode="nearest")
    objects = instances > 0
    border = objects & (high != low)
    if border_width > 1 and border.any():
        border = ndi.binary_dilation(
            border, structure=footprint, iterations=border_width - 1, mask=objects
        )
    return border


def instance_to_classes(
    instances: np.ndarray, *, n_classes: int = 2, border_width: int = 1
) -> np.ndarray:
    """Turn an instance label image into per-pixel class targets.

    Parameters
    ----------
    instances : ndarray of int
        Instance labels of any dimensionality: 0 = background, each object a distinct
        positive integer.
    n_classes : {2, 3}
        2: background 0 / object 1.  3: background 0 / interior 1 / border 2, where the
        border is every object pixel whose full neighbourhood (8-neighbourhood in 2D)
        holds background or a different object, thickened inwards to ``border_width``.
    border_width : int
        Thickness of the border class in pixels (>= 1); only used when ``n_classes=3``.

    Returns
    -------
    ndarray of uint8
        Class of every pixel, same shape as ``instances``.

    Raises
    ------
    ValueError
        For non-integer or negative labels, or an unsupported ``n_classes``/``border_width``.
    """
    arr = check_instances(instances)
    if n_classes not in (2, 3):
        raise ValueError(f"n_classes must be 2 or 3, got {n_classes!r}")
    if not isinstance(border_width, (int, np.integer)) or border_width < 1:
        raise ValueError(f"border_width must be an integer >= 1, got {border_width!r}")
    classes = (arr > 0).astype(np.uint8)
    if n_classes == 3:
        classes[_border_mask(arr, int(border_width))] = 2
    return classes


def one_hot(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Encode integer classes as one-hot vectors along a new last axis.

    Parameters
    ----------
    classes : ndarray of int
        Class of every pixel, values in ``0 .. n_classes - 1``.
    n_classes : int
        Number of classes (length of the new axis).

    Returns
    -------
    ndarray of float32
        Shape ``classes.shape + (n_classes,)``; exactly one 1.0 per pixel.

    Raises
    ------
    ValueError
        If ``classes`` is not integer or holds values outside ``0 .. n_classes - 1``.
    """
    arr = np.asarray(classes)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"classes must have an integer dtype, got {arr.dtype}")
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(
            f"classes must lie in 0..{n_classes - 1}, got values {arr.min()}..{arr.max()}; "
            "pass a larger n_classes or fix the targets"
        )
    return np.eye(n_classes, dtype=np.float32)[arr.astype(np.intp)]
