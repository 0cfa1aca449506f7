"""Scale and appearance augmentation, for models that must work on images unlike their own.

- :func:`zoomed_window` cuts a training window at a random scale: the network then sees
  objects from ``scale_range[0]`` to ``scale_range[1]`` times their size in the (rescaled)
  training images, which covers the error of the object-size estimate at inference.
- :func:`appearance_jitter` changes how a normalised tile looks without moving a pixel:
  dim and bright objects side by side (a smooth gain field), chromatin speckle inside the
  objects, uneven background, gamma curves, blur, Poisson and Gaussian noise.

Both are deterministic under a ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_tiled_unet.core.tiling import reflect_indices

__all__ = ["appearance_jitter", "zoomed_window"]


def zoomed_window(
    arrays: tuple[np.ndarray, ...],
    centre: tuple[int, int],
    size: int,
    factor: float,
    orders: tuple[int, ...],
) -> tuple[np.ndarray, ...]:
    """Resample a ``size x size`` window around ``centre``, magnified by ``factor``.

    ``factor > 1`` enlarges the objects (the window covers ``size / factor`` source
    pixels).  Beyond the arrays' edges the data is mirrored, as in the overlap-tile
    strategy.  ``orders`` gives the interpolation per array: 0 (nearest; labels and classes
    keep their values) or 1 (linear; images and weights).
    """
    offsets = (np.arange(size, dtype=np.float64) - (size - 1) / 2) / factor
    out = []
    for array, order in zip(arrays, orders, strict=True):
        ny, nx = array.shape[:2]
        ys, xs = centre[0] + offsets, centre[1] + offsets
        if order == 0:
            iy = reflect_indices(np.rint(ys).astype(np.intp), ny)
            ix = reflect_indices(np.rint(xs).astype(np.intp), nx)
            out.append(array[np.ix_(iy, ix)])
            continue
        y0, x0 = np.floor(ys).astype(np.intp), np.floor(xs).astype(np.intp)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        rows = [reflect_indices(y0, ny), reflect_indices(y0 + 1, ny)]
        cols = [reflect_indices(x0, nx), reflect_indices(x0 + 1, nx)]
        data = np.asarray(array, dtype=np.float32)
        if data.ndim == 3:
            fy, fx = fy[..., None], fx[..., None]
        top = data[np.ix_(rows[0], cols[0])] * (1 - fx) + data[np.ix_(rows[0], cols[1])] * fx
        bottom = data[np.ix_(rows[1], cols[0])] * (1 - fx) + data[np.ix_(rows[1], cols[1])] * fx
        out.append((top * (1 - fy) + bottom * fy).astype(np.float32))
    return tuple(out)


def _smooth_field(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Draw a smooth random field of unit spread whose features are about ``scale`` px wide."""
    field = ndi.gaussian_filter(rng.normal(0, 1, shape), scale, mode="wrap")
    return field / (field.std() + 1e-9)


def appearance_jitter(
    image: np.ndarray, classes: np.ndarray, *, rng: np.random.Generator, object_size: float
) -> np.ndarray:
    """Randomly change the appearance of a normalised ``(Y, X, C)`` tile.

    Each effect is applied with probability 1/2: a smooth gain field (objects a few
    diameters apart differ up to ~4x in brightness), speckle inside the objects
    (``classes > 0``), an uneven additive background, a gamma curve (x0.5-2), Gaussian
    blur (sigma 0.3-2.5 px), Poisson noise at a random photon count and Gaussian noise.
    ``object_size`` is the objects' diameter in px, which sets the scales of the gain field
    and the speckle.  Returns float32.
    """
    data = np.asarray(image, dtype=np.float32)
    shape = data.shape[:2]
    expand = (slice(None), slice(None), None) if data.ndim == 3 else (slice(None),) * 2
    if rng.random() < 0.5:
        gain = np.exp(0.5 * rng.uniform(0.2, 1.0) * _smooth_field(shape, object_size, rng))
        data = data * gain[expand]
    if rng.random() < 0.5:
        speckle = _smooth_field(shape, max(object_size / 12, 0.7), rng)
        inside = (np.asarray(classes) > 0).astype(np.float32)
        data = data * (1 + rng.uniform(0.1, 0.5) * speckle * inside).clip(0.1)[expand]
    if rng.random() < 0.5:
        background = rng.uniform(0.0, 0.3) * (1 + _smooth_field(shape, 4 * object_size, rng))
        data = data + background.clip(0)[expand].astype(np.float32)
    if rng.random() < 0.5:  # a non-linear camera or export curve, strong haze or none
        top = float(np.percentile(data, 99.5))
        if top > 0:
            gamma = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
            data = (top * np.clip(data / top, 0, None) ** gamma).astype(np.float32)
    if rng.random() < 0.5:
        sigma = rng.uniform(0.3, 2.5)
        data = ndi.gaussian_filter(data, (sigma, sigma, 0)[: data.ndim])
    if rng.random() < 0.5:
        photons = float(np.exp(rng.uniform(np.log(5), np.log(500))))
        data = rng.poisson(np.clip(data, 0, None) * photons).astype(np.float32) / photons
    if rng.random() < 0.5:
        data = (data + rng.normal(0, rng.uniform(0.005, 0.08), data.shape)).astype(np.float32)
    return np.asarray(data, dtype=np.float32)
