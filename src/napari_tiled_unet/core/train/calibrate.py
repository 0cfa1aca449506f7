"""Undo part of the class-balance weighting of training, chosen on validation images.

Training with class-balanced weights (class ``c`` weighted ``w_c = N / (K N_c)``) teaches
the network the posterior ``p'_c ~ w_c p_c``: rare classes are over-predicted.  For a
3-class model the rare class is the thin object border, which then spills 1-2 px into the
background and makes every object too large.  Dividing by ``w_c ** alpha`` (``alpha = 1``
is the full correction) is the same as adding ``-alpha log w_c`` to the logits, so the
correction is stored where it costs nothing: in the bias of the final 1x1 convolution.  The
saved model is a plain U-Net whose softmax is already corrected, and every consumer (the
tiling engine, the batch engine, exports to bioimage.io or ONNX) sees the same numbers.

``alpha`` is chosen by the mean average precision over IoU 0.5-0.9 on validation images,
which rewards both the right objects and their outlines: the full correction also starves
the border class, which lies *inside* each object, so objects come out a border too small
and touching ones split badly; the best value is usually in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from napari_tiled_unet.core.model.types import UNetModel
from napari_tiled_unet.core.train.targets import instance_to_classes

__all__ = ["BiasCalibration", "calibrate_class_bias", "class_balance_weights", "shift_class_bias"]

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class BiasCalibration:
    """The outcome of :func:`calibrate_class_bias`.

    Attributes
    ----------
    alpha : float
        Chosen exponent of the correction.
    offsets : tuple of float
        Added to the logits of each class (``-alpha * log w_c``).
    scores : dict
        Validation mean AP over IoU 0.5-0.9 (mean over the images) per tried alpha.
    """

    alpha: float
    offsets: tuple[float, ...]
    scores: dict[float, float]


def class_balance_weights(
    labels: Sequence[np.ndarray], *, num_classes: int, border_width: int = 1
) -> np.ndarray:
    """Balanced class weights ``N / (K N_c)`` of the training targets of ``labels``.

    The pixels of all label images are pooled; a class that never occurs gets weight 1.
    """
    counts = np.zeros(num_classes, dtype=np.float64)
    for item in labels:
        classes = instance_to_classes(item, n_classes=num_classes, border_width=border_width)
        counts += np.bincount(classes.ravel(), minlength=num_classes)[:num_classes]
    total = counts.sum()
    with np.errstate(divide="ignore"):
        weights = np.where(counts > 0, total / (num_classes * counts), 1.0)
    return weights


def shift_class_bias(model: UNetModel, offsets: Sequence[float]) -> UNetModel:
    """Return a copy of ``model`` whose logits are shifted by ``offsets`` (one per class).

    ``softmax(z + d)`` equals the old probabilities times ``exp(d)``, renormalised.  The
    model's layer ``classifier`` (the final 1x1 convolution) must have a bias.
    """
    from napari_tiled_unet.core._keras import get_keras

    keras = get_keras()
    delta = np.asarray(offsets, dtype=np.float32)
    clone = keras.models.clone_model(model.keras_model)
    clone.set_weights(model.keras_model.get_weights())
    layer = clone.get_layer("classifier")
    kernel, bias = layer.get_weights()
    if bias.shape != delta.shape:
        raise ValueError(f"give one offset per class ({bias.shape[0]}), got {delta.shape[0]}")
    layer.set_weights([kernel, bias + delta])
    training = dict(model.metadata.training or {})
    previous = np.asarray(training.get("class_bias_shift", np.zeros_like(delta)))
    training["class_bias_shift"] = [float(v) for v in previous + delta]
    return UNetModel(clone, replace(model.metadata, training=training), model.source)


def _shifted_score(probabilities: np.ndarray, labels: np.ndarray, offsets: np.ndarray) -> float:
    from napari_tiled_unet.core.metrics import mean_average_precision
    from napari_tiled_unet.core.postprocess import classes_to_instances

    classes = (np.log(np.clip(probabilities, 1e-12, None)) + offsets).argmax(-1)
    instances = classes_to_instances(classes, min_size=20)
    return float(mean_average_precision(instances, labels))


def calibrate_class_bias(
    model: UNetModel,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    weights: Sequence[float],
    alphas: Sequence[float] = ALPHAS,
) -> tuple[UNetModel, BiasCalibration]:
    """Choose ``alpha`` on validation images and bake ``-alpha log weights`` into the model.

    Parameters
    ----------
    model : UNetModel
        A 3-class (or 2-class) model trained with class-balanced weights.
    images, labels : sequences of ndarray
        Validation images at the model's scale (``(Y, X)`` or ``(Y, X, C)``) and their
        instance labels.
    weights : sequence of float
        The class weights of training, e.g. :func:`class_balance_weights` of its labels.
    alphas : sequence of float
        Exponents to try; the first best is kept (0 = no change).

    Returns
    -------
    model : UNetModel
        The corrected model (``model`` itself when ``alpha`` is 0).
    calibration : BiasCalibration
    """
    from napari_tiled_unet.core.predict import segment

    logw = np.log(np.asarray(weights, dtype=np.float64))
    probabilities = [
        np.asarray(segment(model, image, object_size="none").probabilities) for image in images
    ]
    scores = {}
    for alpha in alphas:
        found = [
            _shifted_score(p, truth, -alpha * logw)
            for p, truth in zip(probabilities, labels, strict=True)
        ]
        scores[float(alpha)] = float(np.mean(found))
    best = max(scores, key=lambda a: (scores[a], -a))
    offsets = tuple(float(v) for v in -best * logw)
    chosen = model if best == 0 else shift_class_bias(model, offsets)
    return chosen, BiasCalibration(best, offsets, scores)
