"""Training data: checked, normalised images with precomputed targets and weight maps.

Every training image is prepared once (percentile normalisation, class targets, the
paper's weight map with "not annotated" pixels at weight 0); each step then cuts random
input-size tiles, augments them (flips/rotations, elastic deformation, grey values) and
centre-crops targets and weights to the network's output.  Everything random comes from
one ``numpy.random.Generator``, so a seed fixes the tile stream.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_tiled_unet.core.normalize import NonFiniteWarning, PercentileNormalizer, network_input
from napari_tiled_unet.core.train.appearance import appearance_jitter, zoomed_window
from napari_tiled_unet.core.train.augment import augment_pair
from napari_tiled_unet.core.train.sampling import center_crop, sample_tile
from napari_tiled_unet.core.train.targets import check_instances, instance_to_classes
from napari_tiled_unet.core.train.weightmap import weight_map

__all__ = ["PreparedImage", "WeightOptions", "check_learnable", "prepare_images", "sample_batch"]


@dataclass(frozen=True)
class WeightOptions:
    """How targets and loss weights are derived from instance labels.

    Attributes
    ----------
    n_classes : {2, 3}
        Target scheme (see :func:`~napari_tiled_unet.core.train.targets.instance_to_classes`).
    use_weight_map : bool
        True: the paper's weight map (class balance + ``w0`` border term); False: weight 1
        on every annotated pixel (plain cross-entropy).
    w0, sigma : float
        Border term of the weight map.
    border_width : int
        Thickness of the border class of 3-class targets.
    """

    n_classes: int = 2
    use_weight_map: bool = True
    w0: float = 10.0
    sigma: float = 5.0
    border_width: int = 1


@dataclass(frozen=True)
class PreparedImage:
    """One training image, ready for sampling.

    Attributes
    ----------
    image : ndarray of float32
        ``(Y, X, C)``, normalised.
    classes : ndarray of uint8
        ``(Y, X)`` class targets.
    weights : ndarray of float32
        ``(Y, X)`` loss weights, 0 where not annotated.
    """

    image: np.ndarray
    classes: np.ndarray
    weights: np.ndarray


def _as_channels_last(image: np.ndarray, labels: np.ndarray, index: int) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype.kind not in "uif":
        raise ValueError(f"image {index} must be real numbers, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or labels.ndim != 2 or arr.shape[:2] != labels.shape:
        raise ValueError(
            f"image {index} has shape {arr.shape} but its labels {labels.shape}; "
            "give (Y, X) or (Y, X, C) images with (Y, X) instance labels of the same size"
        )
    return arr


def _check_ignore(ignore: np.ndarray | None, shape: tuple[int, ...], index: int) -> None:
    if ignore is not None and np.shape(ignore) != shape:
        raise ValueError(
            f"ignore mask {index} has shape {np.shape(ignore)}, its labels {shape}; "
            "give one boolean mask per image, True where not annotated"
        )


def prepare_images(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    options: WeightOptions,
    normalizer: PercentileNormalizer | None = None,
    ignore: Sequence[np.ndarray | None] | None = None,
    name: str = "training",
) -> list[PreparedImage]:
    """Check, normalise and precompute targets and weights for every image.

    Pixels with a NaN or infinite value (in any channel) get loss weight 0, as if not
    annotated, and enter the network as 0; one :class:`NonFiniteWarning` counts them.

    Parameters
    ----------
    images : sequence of ndarray
        ``(Y, X)`` or ``(Y, X, C)`` images (any real dtype), all with the same channels.
    labels : sequence of ndarray of int
        Instance labels ``(Y, X)``, 0 = background, one per image.
    options : WeightOptions
        Target scheme and weighting.
    normalizer : PercentileNormalizer, optional
        Applied per image (its percentiles of that image); None keeps values as float32.
    ignore : sequence of (ndarray of bool or None), optional
        Per image, True where not annotated: loss weight 0 there.
    name : str
        What the images are, for messages ("training", "validation").

    Returns
    -------
    list of PreparedImage
    """
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(
            f"got {len(images)} images and {len(labels)} label images; give one label image "
            "per image, at least one"
        )
    masks = list(ignore) if ignore is not None else [None] * len(images)
    if len(masks) != len(images):
        raise ValueError(f"got {len(masks)} ignore masks for {len(images)} images")
    prepared, bad, total = [], 0, 0
    for index, (image, label, mask) in enumerate(zip(images, labels, masks)):
        inst = check_instances(label)
        arr = _as_channels_last(image, inst, index)
        _check_ignore(mask, inst.shape, index)
        item, count = _prepare_one(arr, inst, mask, options, normalizer)
        if count == inst.size:
            raise ValueError(
                f"{name} image {index} has no finite pixel value (all NaN or infinite); "
                "check it or leave it out"
            )
        prepared.append(item)
        bad, total = bad + count, total + inst.size
    if len({p.image.shape[-1] for p in prepared}) > 1:
        raise ValueError("all images must have the same number of channels")
    if bad:
        warnings.warn(
            f"{bad} of {total} pixels of the {name} images are NaN or infinite; they get loss "
            "weight 0 (as if not annotated)",
            NonFiniteWarning,
            stacklevel=2,
        )
    return prepared


def check_learnable(prepared: Sequence[PreparedImage], n_classes: int) -> None:
    """Raise a one-line ValueError when the training data cannot teach every class.

    The annotated pixels (loss weight > 0) of all images together must hold each class at
    least once: background, objects and, with 3 classes, object interiors and borders.
    """
    seen = np.zeros(n_classes, np.int64)
    for item in prepared:
        counted = item.classes[item.weights > 0]
        seen += np.bincount(counted.ravel(), minlength=n_classes)[:n_classes]
    if not seen.any():
        raise ValueError(
            "every training pixel is marked not annotated (or NaN): there is nothing to "
            "learn; leave annotated regions out of the not-annotated masks"
        )
    if not seen[1:].any():
        raise ValueError(
            "the labels hold no object in any training image (all annotated pixels are 0, "
            "background): there is nothing to learn; label the objects with numbers 1, 2, ..."
        )
    missing = [_CLASS_NAMES[n_classes][k] for k in range(n_classes) if not seen[k]]
    if missing:
        hint = {
            "background": "annotate some background (0) around the objects too",
            "object interior": "objects of 1-2 px are all border: label larger objects, or "
            "train 2 classes",
            "object border": "objects must meet background or each other somewhere",
        }[missing[0]]
        raise ValueError(
            f"no annotated pixel of class '{missing[0]}' for a {n_classes}-class model; {hint}"
        )


_CLASS_NAMES = {
    2: ("background", "object"),
    3: ("background", "object interior", "object border"),
}


def _prepare_one(
    image: np.ndarray,
    labels: np.ndarray,
    ignore: np.ndarray | None,
    options: WeightOptions,
    normalizer: PercentileNormalizer | None,
) -> tuple[PreparedImage, int]:
    """Prepare one image; also return how many of its pixels are NaN or infinite."""
    raw = np.asarray(image)
    bad = ~np.isfinite(raw).all(axis=-1) if raw.dtype.kind == "f" else None
    count = int(bad.sum()) if bad is not None else 0
    if count == labels.size:
        return PreparedImage(np.zeros(raw.shape, np.float32), labels, labels), count
    if count:
        ignore = bad if ignore is None else (np.asarray(ignore, dtype=bool) | bad)
    if normalizer is not None:
        data = normalizer.apply(raw, *normalizer.statistics(raw))
    else:
        data = network_input(raw)
    if bad is not None and count:
        data[bad] = 0.0  # every channel of a pixel with one bad value
    classes = instance_to_classes(
        labels, n_classes=options.n_classes, border_width=options.border_width
    )
    if options.use_weight_map:
        weights = weight_map(
            labels,
            w0=options.w0,
            sigma=options.sigma,
            n_classes=options.n_classes,
            ignore=ignore,
            border_width=options.border_width,
        )
    else:
        weights = np.ones(labels.shape, np.float32)
        if ignore is not None:
            weights[np.asarray(ignore, dtype=bool)] = 0.0
    return PreparedImage(np.ascontiguousarray(data), classes, weights), count


def _sample_one(
    item: PreparedImage,
    input_size: int,
    output_size: int,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = (1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut one input-size window of image, classes and weights around a random output."""
    # The output window is uniform over the image; targets and weights are cut at the
    # input size around it so that augmentation moves them with the image.
    free = [n - output_size for n in item.classes.shape]
    oy, ox = (int(rng.integers(min(0, f), max(0, f) + 1)) for f in free)
    halo = (input_size - output_size) // 2
    if scale_range != (1.0, 1.0):
        factor = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
        centre = (oy + output_size // 2, ox + output_size // 2)
        arrays = (item.image, item.classes, item.weights)
        image, classes, weights = zoomed_window(arrays, centre, input_size, factor, (1, 0, 1))
        return image, classes, weights
    image, classes, weights = sample_tile(
        item.image,
        item.classes,
        item.weights,
        input_size=input_size,
        output_size=input_size,
        origin=(oy - halo, ox - halo),
    )
    return image, classes, weights


def sample_batch(
    prepared: Sequence[PreparedImage],
    *,
    batch_size: int,
    input_size: int,
    output_size: int,
    rng: np.random.Generator,
    augment: bool = True,
    elastic_sigma: float = 10.0,
    elastic_grid: int = 3,
    scale_range: tuple[float, float] = (1.0, 1.0),
    appearance: bool = False,
    object_size: float = 20.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one training batch of random, augmented tiles.

    Images are picked with probability proportional to their area; each tile's input
    window is cut at ``input_size`` (mirrored beyond the border), augmented together with
    its targets and weights, and the targets/weights centre-cropped to ``output_size``.
    With ``augment``, ``scale_range`` magnifies each tile by a random log-uniform factor
    and ``appearance`` adds :func:`~napari_tiled_unet.core.train.appearance.appearance_jitter`
    (objects about ``object_size`` px across).

    Returns
    -------
    inputs : ndarray of float32
        ``(B, S, S, C)``.
    classes : ndarray of int32
        ``(B, s, s)`` with ``s = output_size``.
    weights : ndarray of float32
        ``(B, s, s)``.
    """
    areas = np.array([p.classes.size for p in prepared], dtype=np.float64)
    picks = rng.choice(len(prepared), size=batch_size, p=areas / areas.sum())
    xs, ys, ws = [], [], []
    for pick in picks:
        scales = scale_range if augment else (1.0, 1.0)
        image, classes, weights = _sample_one(
            prepared[int(pick)], input_size, output_size, rng, scales
        )
        if augment:
            image, classes, augmented = augment_pair(
                image, classes, weights, rng=rng, sigma=elastic_sigma, grid=elastic_grid
            )
            weights = augmented if augmented is not None else weights
        if augment and appearance:
            image = appearance_jitter(image, classes, rng=rng, object_size=object_size)
        xs.append(image)
        ys.append(center_crop(classes, output_size))
        ws.append(center_crop(weights, output_size))
    return (
        np.stack(xs).astype(np.float32),
        np.stack(ys).astype(np.int32),
        np.stack(ws).astype(np.float32),
    )
