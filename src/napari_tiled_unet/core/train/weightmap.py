"""The U-Net paper's pixel-wise loss weight map (Ronneberger et al. 2015, eq. 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

``w_c`` balances the class frequencies, ``d1``/``d2`` are the Euclidean distances to the
nearest and the second-nearest object.  The second term is large in the narrow background
gaps between touching objects, which forces the network to learn the separating lines.

The distances are exact.  Instead of one distance transform of the whole image per object,
each object's second-nearest distances are computed only over its Voronoi cell (the pixels
for which it is the nearest object) plus a margin that provably contains the answer, which
keeps 100+ objects on 512 x 512 pixels well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from napari_tiled_unet.core.train.targets import check_instances, instance_to_classes

__all__ = ["border_distances", "compute_class_weights", "weight_map"]


def _dense_labels(instances: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel objects to ``1..n`` (background stays 0) and return the labels and ``n``."""
    ids, inverse = np.unique(instances, return_inverse=True)
    has_background = ids[0] == 0
    dense = inverse.reshape(instances.shape) + int(not has_background)
    return dense, len(ids) - int(has_background)


def _expand(cell: tuple[slice, ...], margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, n))
        for s, n in zip(cell, shape, strict=True)
    )


def _second_distance_in_cell(
    dense: np.ndarray, nearest: np.ndarray, label: int, cell: tuple[slice, ...]
) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray]:
    """Distances from the cell of ``label`` to the nearest *other* object, exactly.

    Within the crop ``bbox(cell) +/- margin`` every point closer than ``margin`` to a cell
    pixel is visible, so a cropped distance ``v <= margin`` is exact; otherwise one more pass
    with ``margin = max(v)`` is exact because the true distance never exceeds ``v``.
    """
    margin = max(s.stop - s.start for s in cell)
    while True:
        crop = _expand(cell, margin, dense.shape)
        local = dense[crop]
        others = (local != 0) & (local != label)
        if not others.any():
            margin = max(dense.shape)  # the whole image holds another object (n >= 2)
            continue
        in_cell = nearest[crop] == label
        values = ndi.distance_transform_edt(~others)[in_cell]
        if values.max() <= margin:
            return crop, in_cell, values
        margin = int(np.ceil(values.max()))


def border_distances(instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the exact Euclidean distances to the nearest and second-nearest object.

    An object is the set of all pixels that carry one positive label.  Pixels inside an
    object have ``d1 = 0`` and ``d2`` = distance to the nearest other object.

    Parameters
    ----------
    instances : ndarray of int
        Instance labels (0 = background) of any dimensionality, with at least two objects.

    Returns
    -------
    d1, d2 : ndarray of float64
        Distances in pixels, same shape as ``instances``; ``d1 <= d2`` everywhere.

    Raises
    ------
    ValueError
        If the labels are invalid or hold fewer than two objects.
    """
    arr = check_instances(instances)
    dense, n_objects = _dense_labels(arr)
    if n_objects < 2:
        raise ValueError(f"need at least two objects for d1/d2, got {n_objects}")
    background = dense == 0
    if background.any():
        d1, indices = ndi.distance_transform_edt(background, return_indices=True)
        nearest = dense[tuple(indices)]
    else:
        d1, nearest = np.zeros(arr.shape), dense
    d2 = np.empty(arr.shape, dtype=np.float64)
    for label, cell in enumerate(ndi.find_objects(nearest), start=1):
        crop, in_cell, values = _second_distance_in_cell(dense, nearest, label, cell)
        d2[crop][in_cell] = values
    return d1, d2


def compute_class_weights(
    classes: np.ndarray,
    n_classes: int,
    *,
    mode: str | Sequence[float] | None = "balanced",
    annotated: np.ndarray | None = None,
) -> np.ndarray:
    """Return the per-class weights ``w_c`` as an array of length ``n_classes``.

    Parameters
    ----------
    classes : ndarray of int
        Class of every pixel, values in ``0 .. n_classes - 1``.
    n_classes : int
        Number of classes.
    mode : "balanced", None or sequence of float
        ``"balanced"``: class ``k`` gets ``N / (K * N_k)`` where ``N`` counts the annotated
        pixels, ``N_k`` those of class ``k`` and ``K`` the classes present, so the mean
        weight over annotated pixels is 1; absent classes get 0.  None: all ones.  A
        sequence: explicit non-negative weights, one per class.
    annotated : ndarray of bool, optional
        Pixels to count; all pixels when None.

    Returns
    -------
    ndarray of float64
        One weight per class.
    """
    if mode is None:
        return np.ones(n_classes)
    if isinstance(mode, str):
        if mode != "balanced":
            raise ValueError(f"class_weights must be 'balanced', None or a sequence, got {mode!r}")
        counted = classes if annotated is None else classes[annotated]
        counts = np.bincount(counted.ravel(), minlength=n_classes).astype(np.float64)
        present = counts > 0
        weights = np.zeros(n_classes)
        weights[present] = counts.sum() / (present.sum() * counts[present])
        return weights
    weights = np.asarray(mode, dtype=np.float64)
    if weights.shape != (n_classes,) or not np.all(np.isfinite(weights)) or weights.min() < 0:
        raise ValueError(
            f"explicit class weights must be {n_classes} finite values >= 0, got {list(mode)}"
        )
    return weights


def _check_ignore(ignore: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if ignore is None:
        return np.zeros(shape, dtype=bool)
    mask = np.asarray(ignore)
    if mask.shape != shape:
        raise ValueError(
            f"ignore mask shape {mask.shape} differs from the labels shape {shape}; "
            "pass a boolean mask of the same shape"
        )
    return mask.astype(bool, copy=False)


def weight_map(
    instances: np.ndarray,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    n_classes: int = 2,
    class_weights: str | Sequence[float] | None = "balanced",
    ignore: np.ndarray | None = None,
    background_only: bool = True,
    border_width: int = 1,
) -> np.ndarray:
    """Compute the paper's loss weight map ``w_c + w0 * exp(-(d1 + d2)**2 / (2 sigma**2))``.

    Parameters
    ----------
    instances : ndarray of int
        Instance labels (0 = background, one positive integer per object), any dimension.
    w0 : float
        Amplitude of the border term (10 in the paper); 0 disables it.
    sigma : float
        Width of the border term in pixels (5 in the paper).
    n_classes : {2, 3}
        Class scheme of :func:`~napari_tiled_unet.core.train.targets.instance_to_classes`
        whose frequencies ``w_c`` balances.
    class_weights : "balanced", None or sequence of float
        How to weight classes, see :func:`compute_class_weights`.
    ignore : ndarray of bool, optional
        Pixels that are not annotated: weight exactly 0, excluded from the class counts.
    background_only : bool
        Add the border term on background pixels only (the paper's Fig. 3d); False adds it
        everywhere.  With fewer than two objects the border term is 0.
    border_width : int
        Border thickness of the 3-class targets (see ``instance_to_classes``).

    Returns
    -------
    ndarray of float32
        Weight of every pixel, same shape as ``instances``.
    """
    arr = check_instances(instances)
    if not (np.isfinite(w0) and w0 >= 0 and np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"need w0 >= 0 and sigma > 0, got w0={w0!r}, sigma={sigma!r}")
    skip = _check_ignore(ignore, arr.shape)
    classes = instance_to_classes(arr, n_classes=n_classes, border_width=border_width)
    per_class = compute_class_weights(classes, n_classes, mode=class_weights, annotated=~skip)
    weights = per_class[classes]
    if w0 > 0 and len(np.unique(arr[arr > 0])) >= 2:
        d1, d2 = border_distances(arr)
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
        weights += border * (arr == 0) if background_only else border
    weights[skip] = 0.0
    return weights.astype(np.float32)
