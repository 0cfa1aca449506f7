"""Training data from TIFF files: images, instance labels and "not annotated" masks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["read_training_pairs"]


def _channels_last(image: np.ndarray, axes: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Return ``image`` as ``(*shape, C)``, moving a C/S axis last, or raise."""
    if image.shape == shape:
        return image[..., None]
    if image.ndim == len(shape) + 1 and len(axes) == image.ndim:
        for letter in "CS":
            if letter in axes:
                moved = np.moveaxis(image, axes.index(letter), -1)
                if moved.shape[:-1] == shape:
                    return moved
    if image.ndim == len(shape) + 1 and image.shape[:-1] == shape:
        return image
    raise ValueError(
        f"{name} has shape {image.shape} (axes {axes or '?'}) but its labels {shape}; "
        "images and labels must share their Y, X (and Z/T) sizes"
    )


def _labels(path: Path) -> np.ndarray:
    from napari_tiled_unet.batch.files import read_tiff

    labels, _ = read_tiff(path)
    if labels.dtype.kind == "b":
        return labels.astype(np.uint8)
    if labels.dtype.kind not in "iu":
        raise ValueError(
            f"{path.name} holds {labels.dtype} values; label images must be integers "
            "(0 = background, one number per object): save them as an integer TIFF"
        )
    if labels.ndim < 2 or (labels.size and labels.min() < 0):
        raise ValueError(f"{path.name} must be a 2D (or stacked) label image with values >= 0")
    return labels


def read_training_pairs(
    images: Sequence[Path], labels: Sequence[Path], ignore: Sequence[Path] | None = None
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray | None] | None]:
    """Read image/label TIFF pairs (and masks) as lists of 2D planes for training.

    Stacks train plane by plane: an image ``(Z, Y, X)`` needs labels ``(Z, Y, X)``.  A
    channel axis (C, or S for RGB samples) in the image is moved last.

    Parameters
    ----------
    images, labels : sequence of Path
        TIFF files, one label image per image.
    ignore : sequence of Path, optional
        One mask per image, nonzero where not annotated.

    Returns
    -------
    images, labels, ignore : list
        ``(Y, X, C)`` images, ``(Y, X)`` integer labels and ``(Y, X)`` boolean masks
        (None when no masks were given).
    """
    from napari_tiled_unet.batch.files import read_tiff

    out_images: list[np.ndarray] = []
    out_labels: list[np.ndarray] = []
    out_masks: list[np.ndarray | None] = []
    for index, (image_path, label_path) in enumerate(zip(images, labels)):
        image, axes = read_tiff(image_path)
        label = _labels(label_path)
        image = _channels_last(image, axes, label.shape, image_path.name)
        height, width = label.shape[-2:]
        out_images += list(image.reshape(-1, height, width, image.shape[-1]))
        out_labels += list(label.reshape(-1, height, width))
        if ignore is not None:
            mask, _ = read_tiff(ignore[index])
            if mask.shape != label.shape:
                raise ValueError(
                    f"mask {ignore[index].name} has shape {mask.shape}, its labels "
                    f"{label.shape}; give a mask of the labels' shape"
                )
            out_masks += list(np.asarray(mask != 0).reshape(-1, height, width))
    return out_images, out_labels, (out_masks if ignore is not None else None)
