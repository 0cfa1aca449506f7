"""The paper's pixel-weighted cross-entropy and a foreground IoU, on the valid output region.

The network ends in a softmax, so the loss takes *probabilities* (not logits):

    E = sum_x w(x) * -log p_{l(x)}(x)  /  sum_x w(x)

over the pixels ``x`` of the output (all tiles of a batch pooled), with ``l(x)`` the true
class and ``w(x)`` the weight map.  Dividing by the total weight (a weighted mean) keeps the
loss on the scale of an ordinary cross-entropy whatever the weights' overall scale, so
learning rates carry over between weighted and unweighted training; zero-weight
("not annotated") pixels add nothing to the numerator or the denominator.

Targets and weights may be larger than the output (e.g. cut at the input size): they are
centre-cropped to the output, which is where a valid-convolution U-Net's output lies.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["crop_to_output", "foreground_iou", "iou_counts", "weighted_cross_entropy"]

#: Probabilities are clipped to [EPSILON, 1] before the logarithm (softmax can underflow).
EPSILON = 1e-7


def _margins(big: tuple[Any, ...], small: tuple[Any, ...]) -> tuple[int, int]:
    if None in big[:2] or None in small[:2]:
        raise ValueError("spatial shapes must be known to crop targets to the output")
    my, mx = int(big[0]) - int(small[0]), int(big[1]) - int(small[1])
    if my < 0 or mx < 0 or my % 2 or mx % 2:
        raise ValueError(
            f"targets/weights of spatial size {tuple(big[:2])} cannot be centre-cropped to "
            f"the output size {tuple(small[:2])}; they must be larger by an even margin"
        )
    return my // 2, mx // 2


def crop_to_output(array: Any, output_shape: tuple[Any, ...], *, batched: bool = True) -> Any:
    """Centre-crop the spatial axes of ``array`` to ``output_shape`` (tensors or ndarrays).

    Parameters
    ----------
    array : ndarray or tensor
        ``(B, Y, X, ...)`` when ``batched`` else ``(Y, X, ...)``.
    output_shape : tuple
        Spatial ``(Y', X')`` of the output; ``Y - Y'`` and ``X - X'`` must be even and >= 0.
    batched : bool
        Whether the first axis is the batch axis.

    Returns
    -------
    ndarray or tensor
        The centre window (a view/slice, not a copy).
    """
    offset = 1 if batched else 0
    shape = tuple(array.shape)
    top, left = _margins(shape[offset : offset + 2], tuple(output_shape))
    ny, nx = int(output_shape[0]), int(output_shape[1])
    window = (slice(top, top + ny), slice(left, left + nx))
    return array[(slice(None), *window) if batched else window]


def weighted_cross_entropy(
    probabilities: Any, targets: Any, weights: Any = None, *, epsilon: float = EPSILON
) -> Any:
    """Pixel-weighted softmax cross-entropy, the weighted mean over the output pixels.

    Parameters
    ----------
    probabilities : tensor or ndarray
        Softmax output ``(B, Y, X, K)``.
    targets : tensor or ndarray
        Class indices ``(B, Y0, X0)`` (integers) or one-hot / soft targets
        ``(B, Y0, X0, K)`` (floats), with ``Y0 >= Y`` and ``X0 >= X``: centre-cropped to the
        output.
    weights : tensor or ndarray, optional
        Per-pixel weights ``(B, Y0, X0)`` >= 0 (cropped alike); None weighs every pixel 1.
    epsilon : float
        Lower clip of the probabilities before the logarithm.

    Returns
    -------
    tensor
        Scalar float32: ``sum(w * -log p_true) / sum(w)``, 0 when all weights are 0.
    """
    from napari_tiled_unet.core._keras import get_keras

    ops = get_keras().ops
    probs = ops.cast(ops.convert_to_tensor(probabilities), "float32")
    n_classes = int(probs.shape[-1])
    spatial = tuple(probs.shape[1:3])
    target = crop_to_output(ops.convert_to_tensor(targets), spatial)
    if len(target.shape) == len(probs.shape) - 1:
        target = ops.one_hot(ops.cast(target, "int32"), n_classes)
    per_pixel = -ops.sum(ops.cast(target, "float32") * ops.log(ops.clip(probs, epsilon, 1.0)), -1)
    if weights is None:
        return ops.mean(per_pixel)
    weight = ops.cast(crop_to_output(ops.convert_to_tensor(weights), spatial), "float32")
    total = ops.sum(weight)
    return ops.sum(weight * per_pixel) / ops.maximum(total, 1e-12)


def iou_counts(
    probabilities: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None
) -> tuple[int, int]:
    """Count the foreground intersection and union of a prediction and its targets.

    Foreground is every class but 0 (background): the object class of 2-class models,
    interior and border together for 3 classes.  Pixels with weight 0 are not counted.

    Parameters
    ----------
    probabilities : ndarray
        Class probabilities ``(..., Y, X, K)`` (argmax taken), or integer class labels
        ``(..., Y, X)``.
    targets : ndarray of int
        True classes ``(..., Y0, X0)``, centre-cropped to the prediction when larger.
    weights : ndarray, optional
        Per-pixel weights of the targets' shape; pixels with weight 0 are skipped.

    Returns
    -------
    intersection, union : int
        Pixel counts; sum them over images before dividing to pool a data set.
    """
    pred = np.asarray(probabilities)
    pred = np.argmax(pred, axis=-1) if pred.dtype.kind == "f" else pred
    batched = pred.ndim == 3
    shape = pred.shape[-2:]
    true = np.asarray(crop_to_output(np.asarray(targets), shape, batched=batched)) > 0
    counted = (
        np.ones(true.shape, dtype=bool)
        if weights is None
        else np.asarray(crop_to_output(np.asarray(weights), shape, batched=batched)) > 0
    )
    pred_fg = (pred > 0) & counted
    true_fg = true & counted
    return int(np.count_nonzero(pred_fg & true_fg)), int(np.count_nonzero(pred_fg | true_fg))


def foreground_iou(
    probabilities: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """Return the foreground IoU (intersection over union) of a prediction, see iou_counts.

    Returns 1.0 when neither prediction nor targets hold foreground (nothing to miss).
    """
    intersection, union = iou_counts(probabilities, targets, weights)
    return intersection / union if union else 1.0
