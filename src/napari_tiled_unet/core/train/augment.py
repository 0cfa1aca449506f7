"""Data augmentation of the U-Net paper, deterministic under a ``numpy.random.Generator``.

Arrays are 2D ``(Y, X)`` or, for images, ``(Y, X, C)`` (all channels transformed alike).
Every function that moves pixels applies the *same* geometric transform to all arrays it is
given, so images, label images and weight maps stay aligned.  Boundaries are mirrored about
the edge pixels (``d c b | a b c d | c b a``, numpy's ``"reflect"``, scipy's ``"mirror"``),
as in the overlap-tile strategy.

A typical training step: cut an input-size window of every array with
:func:`napari_tiled_unet.core.train.sampling.sample_tile` (``output_size=input_size``),
:func:`augment_pair` it, then centre-crop targets and weights to the network's output size
(:func:`napari_tiled_unet.core.train.sampling.center_crop`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from napari_tiled_unet.core.tiling import reflect_indices

__all__ = [
    "augment_pair",
    "displacement_field",
    "elastic_deform",
    "grey_value_jitter",
    "random_flip_rot90",
    "warp",
]


def _check_spatial(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Return the arrays as ndarrays after checking they are 2D/3D with one (Y, X) shape."""
    out = [np.asarray(a) for a in arrays]
    for a in out:
        if a.ndim not in (2, 3):
            raise ValueError(f"arrays must be (Y, X) or (Y, X, C), got shape {a.shape}")
        if a.shape[:2] != out[0].shape[:2]:
            raise ValueError(
                f"arrays must share their (Y, X) shape, got {out[0].shape[:2]} and "
                f"{a.shape[:2]}; crop or resize them to match"
            )
    return out


def displacement_field(
    shape: tuple[int, int], *, rng: np.random.Generator, grid: int = 3, sigma: float = 10.0
) -> np.ndarray:
    """Draw a smooth random displacement field as in the paper.

    Parameters
    ----------
    shape : (int, int)
        ``(Y, X)`` size of the images to deform.
    rng : numpy.random.Generator
        Source of randomness.
    grid, sigma : int, float
        A ``grid x grid`` (>= 2) coarse grid of random vectors whose components are
        ``N(0, sigma)`` pixels (3 and 10 in the paper).

    Returns
    -------
    ndarray of float64
        ``(2, Y, X)`` displacements along Y and X: the coarse grid, corners on the image's
        corners, interpolated by cubic splines (bicubic, smooth).
    """
    if not isinstance(grid, (int, np.integer)) or grid < 2:
        raise ValueError(f"grid must be an integer >= 2, got {grid!r}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0 pixels, got {sigma!r}")
    coarse = rng.normal(0.0, sigma, size=(2, grid, grid))
    factors = (shape[0] / grid, shape[1] / grid)
    return np.stack([ndi.zoom(c, factors, order=3, mode="mirror") for c in coarse])


def _cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "b":
        return values > 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)


def warp(array: np.ndarray, displacement: np.ndarray, *, order: int) -> np.ndarray:
    """Resample ``array`` at ``position + displacement`` with mirrored boundaries.

    ``array`` is ``(Y, X)`` or ``(Y, X, C)`` (channels warped alike), ``displacement`` a
    ``(2, Y, X)`` field from :func:`displacement_field`.  ``order`` is the spline order
    0-5: 0 is nearest neighbour and never invents values (labels), 1 linear (weight maps),
    3 cubic (images; may overshoot slightly).  Returns the same shape and dtype; integer
    data interpolated with ``order > 0`` is rounded and clipped to the dtype's range.
    """
    if order not in range(6):
        raise ValueError(f"interpolation order must be an integer 0..5, got {order!r}")
    ny, nx = array.shape[:2]
    if displacement.shape != (2, ny, nx):
        raise ValueError(f"displacement must have shape {(2, ny, nx)}, got {displacement.shape}")
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    coords = np.stack([yy + displacement[0], xx + displacement[1]])
    if order == 0:
        iy = reflect_indices(np.rint(coords[0]).astype(np.intp), ny)
        ix = reflect_indices(np.rint(coords[1]).astype(np.intp), nx)
        return array[iy, ix]
    data = array.reshape(ny, nx, -1).astype(np.float64)
    channels = [
        ndi.map_coordinates(data[..., c], coords, order=order, mode="mirror")
        for c in range(data.shape[-1])
    ]
    return _cast_like(np.stack(channels, axis=-1).reshape(array.shape), array.dtype)


def elastic_deform(
    image: np.ndarray,
    *others: np.ndarray,
    rng: np.random.Generator,
    grid: int = 3,
    sigma: float = 10.0,
    orders: Sequence[int] | None = None,
) -> tuple[np.ndarray, ...]:
    """Apply one random smooth elastic deformation to an image and its companions.

    Parameters
    ----------
    image, *others : ndarray
        ``(Y, X)`` or ``(Y, X, C)`` image and arrays with the same ``(Y, X)`` (labels, ...).
    rng : numpy.random.Generator
        Source of randomness.
    grid, sigma : int, float
        Coarse grid size and displacement standard deviation, see :func:`displacement_field`.
    orders : sequence of int, optional
        Interpolation order per array, e.g. ``(3, 0, 1)`` for image, labels, weights.  By
        default the image gets 3 and every other array 0 if its dtype is integer or bool
        (label values are never invented), else 1.

    Returns
    -------
    tuple of ndarray
        ``(image, *others)`` deformed, each with its input's shape and dtype.
    """
    arrays = _check_spatial([image, *others])
    if orders is None:
        orders = [3] + [0 if a.dtype.kind in "iub" else 1 for a in arrays[1:]]
    if len(orders) != len(arrays):
        raise ValueError(f"orders needs one entry per array ({len(arrays)}), got {len(orders)}")
    field = displacement_field(arrays[0].shape[:2], rng=rng, grid=grid, sigma=sigma)
    return tuple(warp(a, field, order=o) for a, o in zip(arrays, orders, strict=True))


def random_flip_rot90(*arrays: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Apply one random rotation by ``k * 90`` degrees and optional flip to all arrays.

    The 8 outcomes (the symmetries of a square) are equally likely.  Returns a tuple of
    contiguous copies; non-square arrays swap Y and X for odd ``k``.
    """
    checked = _check_spatial(arrays)
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for a in checked:
        a = np.rot90(a, k, axes=(0, 1))
        out.append(np.ascontiguousarray(a[:, ::-1] if flip else a))
    return tuple(out)


def grey_value_jitter(
    image: np.ndarray,
    *,
    rng: np.random.Generator,
    gain: tuple[float, float] = (0.8, 1.2),
    offset: tuple[float, float] = (-0.1, 0.1),
    gamma: tuple[float, float] = (0.7, 1.4),
) -> np.ndarray:
    """Randomly change contrast, brightness and gamma of a normalised image.

    The image is mapped to ``[0, 1]`` by its own min/max, raised to ``g`` (log-uniform in
    ``gamma``), mapped back, then multiplied by ``a`` (uniform in ``gain``) and shifted by
    ``b`` (uniform in ``offset``).  The ranges assume an image normalised to about
    ``[0, 1]``; pass ``(1, 1)`` / ``(0, 0)`` to switch a part off.  All channels change alike.

    Returns
    -------
    ndarray of float32
        The jittered image, same shape.
    """
    for name, (low, high) in (("gain", gain), ("offset", offset), ("gamma", gamma)):
        if not low <= high:
            raise ValueError(
                f"{name} range must be (low, high) with low <= high, got {(low, high)}"
            )
    if gain[0] <= 0 or gamma[0] <= 0:
        raise ValueError(f"gain and gamma ranges must be > 0, got gain={gain}, gamma={gamma}")
    g = float(np.exp(rng.uniform(np.log(gamma[0]), np.log(gamma[1]))))
    a = float(rng.uniform(*gain))
    b = float(rng.uniform(*offset))
    data = np.asarray(image, dtype=np.float32)
    low, high = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if high > low:
        data = low + (high - low) * ((data - low) / (high - low)) ** g
    return (a * data + b).astype(np.float32)


def augment_pair(
    image: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    rng: np.random.Generator,
    flip_rot: bool = True,
    elastic: bool = True,
    jitter: bool = True,
    grid: int = 3,
    sigma: float = 10.0,
    image_order: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Apply flip/rotation, elastic deformation and grey-value jitter consistently.

    Parameters
    ----------
    image, labels, weights : ndarray
        ``(Y, X)`` or ``(Y, X, C)`` normalised image; labels or class targets (warped by
        nearest neighbour) and optional loss weights (warped linearly) with its ``(Y, X)``.
    rng : numpy.random.Generator
        Source of randomness.
    flip_rot, elastic, jitter : bool
        Which augmentations to apply (in this order; jitter touches the image only).
    grid, sigma, image_order : int, float, int
        Elastic deformation (see :func:`displacement_field`), image interpolation order.

    Returns
    -------
    image, labels, weights : ndarray
        Augmented arrays (``weights`` None if not given).  The image is float32 when
        jittered, otherwise it keeps its dtype; labels and weights keep theirs.
    """
    arrays: tuple[np.ndarray, ...] = (image, labels, *([] if weights is None else [weights]))
    if flip_rot:
        arrays = random_flip_rot90(*arrays, rng=rng)
    if elastic:
        orders = (image_order, 0, 1)[: len(arrays)]
        arrays = elastic_deform(*arrays, rng=rng, grid=grid, sigma=sigma, orders=orders)
    out_image = grey_value_jitter(arrays[0], rng=rng) if jitter else np.asarray(arrays[0])
    return out_image, np.asarray(arrays[1]), (None if weights is None else arrays[2])
