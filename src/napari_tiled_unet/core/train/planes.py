"""Training planes from images and the labels painted on them (the Train widget's data).

A stack is trained plane by plane: :func:`training_planes` splits image / labels pairs
(:class:`Pair`) into the 2D planes that were annotated, and :func:`weight_map_planes` shows
the loss weights that training would use, plane by plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Pair", "training_planes", "weight_map_planes"]


@dataclass(frozen=True)
class Pair:
    """An image layer's data and the labels drawn on it, as the widget found them.

    Attributes
    ----------
    image_name, labels_name : str
        Layer names, for messages.
    image : array-like
        ``(..., Y, X)`` or, when ``rgb``, ``(..., Y, X, C)``; leading axes are planes.
    labels : array-like
        ``(..., Y, X)`` instance labels with the image's planes.
    rgb : bool
        Whether the image's last axis is colour.
    ignore : array-like, optional
        ``(..., Y, X)`` like the labels: nonzero where the image is not annotated (loss
        weight 0 there), None when all of it is.
    ignore_name : str
        Name of the layer the mask came from, for messages.
    """

    image_name: str
    image: Any
    labels_name: str
    labels: Any
    rgb: bool = False
    ignore: Any = None
    ignore_name: str = ""


def _checked_labels(pair: Pair) -> np.ndarray:
    labels = np.asarray(pair.labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(
            f"the labels {pair.labels_name!r} are not integers ({labels.dtype}); "
            "train on a Labels layer with one whole number per object"
        )
    if labels.size and labels.min() < 0:
        raise ValueError(
            f"the labels {pair.labels_name!r} hold negative values; use 0 for background "
            "and a positive number per object"
        )
    return labels


def _pair_planes(pair: Pair) -> tuple[list[np.ndarray], list[np.ndarray], list[Any]]:
    """Split one pair into 2D planes, keeping the planes that were annotated.

    A plane counts as annotated when it has an object, or when the "not annotated" mask
    marks part of it (the rest is annotated background); a plane the mask covers whole
    is left out.
    """
    labels = _checked_labels(pair)
    image = np.asarray(pair.image)
    spatial = image.shape[:-1] if pair.rgb else image.shape
    if image.ndim < (3 if pair.rgb else 2) or tuple(spatial) != labels.shape:
        raise ValueError(
            f"the labels {pair.labels_name!r} have shape {labels.shape} but the image "
            f"{pair.image_name!r} has {tuple(spatial)}; paint the labels on a layer of the "
            "image's size (Layers > New Labels Layer with the image selected)"
        )
    yx = labels.shape[-2:]
    flat_labels = labels.reshape(-1, *yx)
    flat_images = image.reshape(-1, *image.shape[labels.ndim - 2 :])
    if pair.ignore is None:
        keep = [i for i, plane in enumerate(flat_labels) if plane.any()]
        return [flat_images[i] for i in keep], [flat_labels[i] for i in keep], [None] * len(keep)
    ignore = np.asarray(pair.ignore)
    if ignore.shape != labels.shape:
        raise ValueError(
            f"the 'not annotated' layer {pair.ignore_name!r} has shape {ignore.shape} but "
            f"the labels {pair.labels_name!r} have {labels.shape}; paint it over the same "
            "image (a Labels layer of the image's size, or shapes drawn on it)"
        )
    flat_ignore = (ignore != 0).reshape(-1, *yx)
    keep = [
        i
        for i, (plane, masked) in enumerate(zip(flat_labels, flat_ignore))
        if not masked.all() and (plane.any() or masked.any())
    ]
    return (
        [flat_images[i] for i in keep],
        [flat_labels[i] for i in keep],
        [flat_ignore[i] for i in keep],
    )


def training_planes(pairs: list[Pair], *, role: str = "training") -> tuple[list, list, list]:
    """Return the annotated 2D planes of every pair: images, labels and ignore masks.

    A stack is trained plane by plane; planes without any object are left out (not yet
    annotated) unless a "not annotated" mask marks part of them, and planes the mask
    covers whole are left out too.

    Parameters
    ----------
    pairs : list of Pair
        One or more image / labels pairs.
    role : str
        "training" or "validation", for messages.

    Returns
    -------
    images, labels, ignore : list
        ``(Y, X)`` or ``(Y, X, C)`` images, their ``(Y, X)`` labels, and per plane a
        boolean ``(Y, X)`` mask (True = not annotated) or None.

    Raises
    ------
    ValueError
        No pairs, labels that are not whole non-negative numbers, shapes that differ, or
        nothing annotated in any plane.
    """
    if not pairs:
        raise ValueError(f"there is no {role} data; choose an image and the labels painted on it")
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    ignore: list[Any] = []
    for pair in pairs:
        more_images, more_labels, more_ignore = _pair_planes(pair)
        images += more_images
        labels += more_labels
        ignore += more_ignore
    if not labels:
        names = ", ".join(repr(pair.labels_name) for pair in pairs)
        raise ValueError(f"the {role} labels {names} are empty; paint some objects first")
    return images, labels, ignore


def weight_map_planes(
    labels: Any,
    *,
    n_classes: int,
    w0: float,
    sigma: float,
    name: str = "labels",
    ignore: Any = None,
) -> np.ndarray:
    """Return the paper's loss weight map of every 2D plane of ``labels`` (as training does).

    Parameters
    ----------
    labels : array-like of int
        ``(..., Y, X)`` instance labels.
    n_classes : {2, 3}
        Target scheme whose class frequencies are balanced.
    w0, sigma : float
        Border term of :func:`~napari_tiled_unet.core.train.weightmap.weight_map`.
    name : str
        The labels layer's name, for messages.
    ignore : array-like, optional
        Like ``labels``, nonzero where not annotated: weight 0 there, as in training.

    Returns
    -------
    ndarray of float32
        Same shape as ``labels``.
    """
    from napari_tiled_unet.core.train.weightmap import weight_map

    arr = _checked_labels(Pair("", None, name, labels))
    planes = arr.reshape(-1, *arr.shape[-2:])
    masks: list[Any] = [None] * len(planes)
    if ignore is not None:
        mask = np.asarray(ignore) != 0
        if mask.shape != arr.shape:
            raise ValueError(
                f"the 'not annotated' layer has shape {mask.shape} but the labels {name!r} "
                f"have {arr.shape}; paint it over the same image"
            )
        masks = list(mask.reshape(planes.shape))
    out = np.empty(planes.shape, np.float32)
    for index, (plane, masked) in enumerate(zip(planes, masks)):
        out[index] = weight_map(plane, w0=w0, sigma=sigma, n_classes=n_classes, ignore=masked)
    return out.reshape(arr.shape)
