"""Object size: measured from labels, estimated from an image, and resampling to a scale.

A model records the typical object diameter of its training labels
(:func:`measure_object_size`); :func:`estimate_object_size` guesses that diameter for a new
image, and :func:`resize` moves images and probability maps between the image's grid and
the model's.  Pure numpy/scipy (core ring).

The estimator is described in :func:`estimate_object_size`; ``benchmarks/eval_default_model.py``
prints its estimates next to the labels' sizes of the real held-out images.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "Rescale",
    "estimate_object_size",
    "measure_object_size",
    "object_diameters",
    "parse_object_size",
    "plan_rescale",
    "resize",
    "scaled_shape",
]


def object_diameters(labels: np.ndarray) -> np.ndarray:
    """Equivalent diameters ``2 * sqrt(area / pi)`` of the objects of an instance image."""
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"instance labels must be integers, got dtype {arr.dtype}")
    counts = np.bincount(arr.ravel().astype(np.int64))[1:] if arr.size else np.zeros(0)
    counts = counts[counts > 0]
    return 2.0 * np.sqrt(counts / np.pi)


def measure_object_size(labels: np.ndarray | list[np.ndarray]) -> float | None:
    """Median equivalent diameter (px) over all objects of one or more instance images.

    Returns None when there is no object.
    """
    items = labels if isinstance(labels, list) else [labels]
    parts = [object_diameters(np.asarray(item)) for item in items]
    sizes = np.concatenate(parts) if parts else np.zeros(0)
    return float(np.median(sizes)) if sizes.size else None


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist)
    total = weight[-1]
    mean = np.cumsum(hist * centres)
    w0, w1 = weight[:-1], total - weight[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean[-1] * w0 / total - mean[:-1]) ** 2 / (w0 * w1)
    return float(centres[int(np.nanargmax(between))])


def _bin(image: np.ndarray, step: int) -> np.ndarray:
    """Mean of ``step x step`` blocks (the ragged edge dropped): a cheap, antialiased shrink."""
    if step == 1:
        return image
    ny, nx = (max(1, n // step) for n in image.shape)
    if image.shape[0] < step or image.shape[1] < step:
        return image.mean(keepdims=True)
    blocks = image[: ny * step, : nx * step].reshape(ny, step, nx, step)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def _blob_radius(image: np.ndarray) -> float:
    """Coarse radius: the scale of the strongest scale-normalised Laplacian-of-Gaussian energy.

    A disc of radius ``r`` answers most strongly at ``sigma = r / sqrt(2)``; summing the
    squared positive responses over the image makes the peak a property of the typical
    bright blob, not of the single brightest one.  Each scale runs on the level of a 2x
    binning pyramid where it is 2-4 px wide, so large scales cost next to nothing; the
    finest scales (objects under ~11 px) see only the central 512 x 512 px, where such
    small objects are counted in the thousands.
    """
    sigmas = np.exp(np.linspace(np.log(1.0), np.log(min(80.0, max(image.shape) / 4)), 12))
    pyramid = [_central_crop(image, 512 * 512), _bin(image, 2)]
    energy = []
    for sigma in sigmas:
        level = int(np.log2(max(1.0, sigma / 2)))
        while len(pyramid) <= level:
            pyramid.append(_bin(pyramid[-1], 2))
        s = sigma / 2**level
        # The 5-point Laplacian of the smoothed level (s >= 1 px on every level): two filter
        # passes instead of the four of ``gaussian_laplace``; on the real images at x0.5-x3
        # the estimates moved by 1.1 % at most.
        response = -(s**2) * ndi.laplace(ndi.gaussian_filter(pyramid[level], s))
        energy.append(float(np.mean(np.clip(response, 0, None) ** 2)))
    values = np.array(energy)
    best = int(np.argmax(values))
    offset = 0.0
    if 0 < best < len(values) - 1:  # parabola through the peak, in log(sigma)
        left, mid, right = values[best - 1 : best + 2]
        curvature = left - 2 * mid + right
        offset = 0.5 * (left - right) / curvature if curvature else 0.0
    step = np.log(sigmas[1] / sigmas[0])
    return float(np.sqrt(2) * np.exp(np.log(sigmas[best]) + offset * step))


def _split_diameter(image: np.ndarray, radius: float) -> float | None:
    """Median equivalent diameter of the Otsu objects, clumps split by a watershed."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    smooth = ndi.gaussian_filter(image, max(1.0, radius / 5))
    mask = ndi.binary_fill_holes(smooth > _otsu(smooth))
    objects, n = ndi.label(mask)
    if n == 0:
        return None
    distance = ndi.distance_transform_edt(np.pad(mask, 1, mode="edge"))[1:-1, 1:-1]
    inscribed = np.zeros(n + 1)
    np.maximum.at(inscribed, objects.ravel(), distance.ravel())  # per blob, without a sort
    inscribed = inscribed[1:]
    inscribed = inscribed[inscribed >= 1]  # single-pixel specks say nothing about size
    if inscribed.size == 0:
        return None
    # Each blob's inscribed radius is about one nucleus' even for clumps; small debris is
    # left out relative to the larger blobs.
    typical = float(np.median(inscribed[inscribed >= 0.4 * np.percentile(inscribed, 75)]))
    # Without ``labels`` (one pass over the plane, not one per blob): the distance is 0
    # between blobs, so every peak lies inside one.
    peaks = peak_local_max(
        ndi.gaussian_filter(distance, typical / 4) * mask,
        min_distance=max(1, int(0.7 * typical)),
        threshold_abs=0.5,
        exclude_border=False,
    )
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    pieces = watershed(-distance, markers, mask=mask)
    area = np.bincount(pieces.ravel())[1:]
    diameters = 2 * np.sqrt(area[area > 0] / np.pi)
    diameters = diameters[diameters >= typical]  # fragments of a split are not objects
    return float(np.median(diameters)) if diameters.size else 2 * typical


#: Larger planes are estimated from their central part of this many pixels (nuclei are
#: alike across a field of view, and the estimate stays well under a second).
_MAX_PIXELS = 1024 * 1024


#: The watershed split needs no more than about this many object-sized squares of the
#: plane (and never fewer pixels than ``_SPLIT_MIN_PIXELS``).
_SPLIT_OBJECTS = 1500
_SPLIT_MIN_PIXELS = 512 * 512


def _central_crop(data: np.ndarray, pixels: int) -> np.ndarray:
    """Return the central part of a plane with at most ``pixels`` pixels (same aspect ratio)."""
    if data.size <= pixels:
        return data
    keep = np.sqrt(pixels / data.size)
    ny, nx = (max(1, int(n * keep)) for n in data.shape)
    y0, x0 = (data.shape[0] - ny) // 2, (data.shape[1] - nx) // 2
    return data[y0 : y0 + ny, x0 : x0 + nx]


def estimate_object_size(image: np.ndarray, *, channel_axis: int | None = None) -> float | None:
    """Estimate the typical object (nucleus) diameter of a 2D image, in pixels.

    A coarse scale from the Laplacian-of-Gaussian energy, then, on a copy downsampled to
    that scale, an Otsu threshold whose touching objects are split by a distance-transform
    watershed; the result is the median equivalent diameter of the objects, comparable to
    :func:`measure_object_size` of the image's labels.

    Parameters
    ----------
    image : ndarray
        ``(Y, X)`` image of bright objects on a dark background, any real dtype; channels
        (``channel_axis``) are averaged.  NaN and inf pixels are ignored.
    channel_axis : int, optional
        Axis of the channels, if any.

    Returns
    -------
    float or None
        The estimated equivalent diameter (px), or None when nothing stands out from the
        background (a blank image).
    """
    arr = np.asarray(image, dtype=np.float64)
    if channel_axis is not None:
        arr = arr.mean(axis=channel_axis)
    if arr.ndim != 2:
        raise ValueError(f"estimate the object size of a 2D plane, got shape {arr.shape}")
    finite = np.isfinite(arr)
    if not finite.any():
        return None
    sample = arr[::2, ::2][finite[::2, ::2]] if arr.size > 65536 else arr[finite]
    low, high = np.percentile(sample if sample.size else arr[finite], [1.0, 99.8])
    if not high > low:
        return None
    data = np.clip((np.where(finite, arr, low) - low) / (high - low), 0, 1).astype(np.float32)
    data = _central_crop(data, _MAX_PIXELS)
    radius = _blob_radius(data)
    step = max(1, int(radius // 5))  # 5 px radii are enough to measure; faster on big nuclei
    data = _bin(data, step)
    # Small objects are counted in the thousands on a fraction of a large plane.
    data = _central_crop(
        data, max(_SPLIT_MIN_PIXELS, int(_SPLIT_OBJECTS * (2 * radius / step) ** 2))
    )
    found = _split_diameter(data, radius / step)
    return None if found is None else found * step


def scaled_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    """``(Y, X)`` of a plane resampled by ``factor`` (at least 1 px)."""
    return tuple(max(1, round(n * factor)) for n in shape)  # type: ignore[return-value]


#: Anti-alias smoothing narrower than this is skipped (shrinking to more than 2/3 of the size).
_MIN_SIGMA = 0.25


def resize(array: np.ndarray, shape: tuple[int, int], *, order: int = 1) -> np.ndarray:
    """Resample the first two axes of ``array`` to ``shape`` (pixel areas aligned).

    Pixel centres map as ``(i + 0.5) * n_in / n_out - 0.5``, so shrinking and enlarging
    back lands on the same grid.  When shrinking with ``order > 0``, the data is first
    smoothed with a Gaussian matched to the factor, so that fine texture does not alias;
    ``order=0`` (nearest neighbour, for labels) only picks existing values.  Extra trailing
    axes (channels, classes) are resampled alike; float32 out.
    """
    data = np.asarray(array, dtype=np.float32)
    if tuple(data.shape[:2]) == tuple(shape):
        return data
    factors = [s / n for s, n in zip(shape, data.shape[:2])]
    # Labels (order 0) are never smoothed: that would invent label values.
    sigma = [max(0.0, (1 / f - 1) / 2) if f < 1 and order > 0 else 0.0 for f in factors]
    # Below a quarter pixel the kernel's outer taps weigh < 4e-4: an identity, not worth a pass.
    sigma = [s if s >= _MIN_SIGMA else 0.0 for s in sigma]
    flat = data.reshape(*data.shape[:2], -1)
    out = np.empty((*shape, flat.shape[-1]), np.float32)
    for c in range(flat.shape[-1]):
        channel = flat[..., c]
        if any(sigma):
            channel = ndi.gaussian_filter(channel, sigma)
        # grid_mode: pixel areas aligned, i.e. centres at (i + 0.5) * n_in / n_out - 0.5;
        # separable, so much faster than map_coordinates on a full coordinate grid.
        out[..., c] = ndi.zoom(channel, factors, order=order, mode="grid-mirror", grid_mode=True)
    return out.reshape(*shape, *data.shape[2:])


#: Factors closer to 1 than this are not worth a resampling (the model is trained for
#: objects x0.7-1.4 its own size).
_DEAD_BAND = 0.05
#: Objects smaller than the model's are enlarged to this share of its size, not all the
#: way: enlarging costs network time as the square of the factor, and the model is trained
#: for objects x0.7-1.4 its size.  Measured on the validation images of
#: tools/train_default_model.py (never the held-out ones) at x0.5, x0.6 and x0.7 with the
#: bundled model (14 px): F1@0.5 was the same at 0.9 and 1.0 (DSB2018 0.903 / 0.903 / 0.889,
#: BBBC007 0.944 / 0.947 / 0.939 against 0.944 / 0.945 / 0.936), and 0.85 and 0.8 lost
#: DSB2018 nuclei at x0.5 (0.852).  With the earlier 16 px model, 0.9 raised BBBC007's
#: F1@0.5 over 1.0 at x0.5 and x0.7 (0.944 -> 0.958, 0.950 -> 0.962).
ENLARGE_TO = 0.9
#: Resampling factors beyond these are clamped (objects over 20x or under a quarter of the
#: model's size would mean a wrong estimate or a wrong model, not a useful resampling).
_FACTOR_RANGE = (0.05, 4.0)


@dataclass(frozen=True)
class Rescale:
    """How an image is resampled to the model's scale before segmenting.

    Attributes
    ----------
    object_size : float or None
        Typical object diameter of the image (px), given or estimated; None when unknown.
    model_size : float or None
        Object diameter the model was trained at (px); None when it does not record one.
    estimated : bool
        Whether ``object_size`` was estimated from the image.
    factor : float
        Image pixels to model pixels (``model_size / object_size``); 1 means the image is
        segmented as it is.
    """

    object_size: float | None = None
    model_size: float | None = None
    estimated: bool = False
    factor: float = 1.0

    @property
    def active(self) -> bool:
        """Whether the image is resampled."""
        return self.factor != 1.0

    def describe(self) -> str:
        """One line for users, e.g. ``"objects ~58 px -> image scaled x0.24"``."""
        if self.object_size is None:
            if self.model_size is None:
                return "object size: not used (the model records none)"
            return "object size: not used, image segmented at its own scale"
        how = "~" if self.estimated else ""
        scaled = f"image scaled x{self.factor:.2f}" if self.active else "image not scaled"
        return f"objects {how}{self.object_size:.0f} px -> {scaled}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for run records)."""
        return {
            "object_size": None if self.object_size is None else round(self.object_size, 2),
            "model_object_size": self.model_size,
            "estimated": self.estimated,
            "factor": round(self.factor, 4),
        }


def parse_object_size(object_size: Any) -> float | str | None:
    """Return "auto", "none", None or a positive float (one-line ValueError otherwise)."""
    if object_size is None or object_size is False:
        return None if object_size is None else "none"
    if isinstance(object_size, str):
        text = object_size.strip().lower()
        if text in ("auto", "none", "off"):
            return "none" if text == "off" else text
        try:
            object_size = float(text)
        except ValueError:
            raise ValueError(
                f"object size must be 'auto', 'none' or a diameter in pixels, got {object_size!r}"
            ) from None
    if isinstance(object_size, bool) or not isinstance(object_size, (int, float, np.number)):
        raise TypeError(
            "object_size must be 'auto', 'none', None or a number, "
            f"got {type(object_size).__name__}"
        )
    if not np.isfinite(object_size) or object_size <= 0:
        raise ValueError(f"object size must be a diameter > 0 px, got {object_size!r}")
    return float(object_size)


def plan_rescale(
    object_size: Any, model_size: float | None, planes: Callable[[], Iterable[np.ndarray]]
) -> Rescale:
    """Decide how to resample an image for a model trained at ``model_size`` px objects.

    Parameters
    ----------
    object_size : "auto", "none", None or float
        The image's object diameter in px, ``"auto"`` to estimate it (median over
        ``planes``), ``"none"`` to segment the image as it is; None means ``"auto"`` for
        models that record their object size and ``"none"`` for the others.
    model_size : float or None
        What the model records.
    planes : callable
        Returns the 2D planes to estimate from (called only when estimating).

    Returns
    -------
    Rescale
    """
    wanted = parse_object_size(object_size)
    if wanted is None:
        wanted = "auto" if model_size else "none"
    if wanted == "none":
        return Rescale(model_size=model_size)
    if not model_size:
        raise ValueError(
            "this model does not record the object size it was trained at, so the image "
            "cannot be scaled to it; leave the object size unset (or 'none')"
        )
    estimated = wanted == "auto"
    if estimated:
        found = [s for s in (estimate_object_size(p) for p in planes()) if s is not None]
        if not found:
            return Rescale(model_size=model_size, estimated=True)
        size = float(np.median(found))
    else:
        size = float(wanted)
    wanted_factor = model_size / size
    if wanted_factor > 1.0:  # small objects: enlarged to ENLARGE_TO of the model's size
        wanted_factor = max(1.0, ENLARGE_TO * wanted_factor)
    factor = float(np.clip(wanted_factor, *_FACTOR_RANGE))
    if factor != wanted_factor:
        warnings.warn(
            f"objects of {size:.0f} px are too far from the model's {model_size:.0f} px; "
            f"scaling by x{factor:.2f} only",
            stacklevel=2,
        )
    if abs(factor - 1.0) < _DEAD_BAND:
        factor = 1.0
    return Rescale(size, model_size, estimated, factor)
