"""The Keras side of training: the model to train, the compiled step, validation.

Keras/TensorFlow are imported inside the functions (through ``napari_tiled_unet.core._keras``),
so importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from napari_tiled_unet.core.model.files import UNetModel, load_model
from napari_tiled_unet.core.train.config import TrainConfig
from napari_tiled_unet.core.train.data import PreparedImage
from napari_tiled_unet.core.train.loss import iou_counts, weighted_cross_entropy

__all__ = ["build_training_model", "make_train_step", "resolve_init", "validate"]


def resolve_init(init: Any) -> UNetModel | None:
    """Return the starting model: None, a UNetModel as is, or one loaded from a path."""
    if init is None or isinstance(init, UNetModel):
        return init
    if isinstance(init, (str, os.PathLike)):
        return load_model(init)
    raise TypeError(f"init must be a model file path or a UNetModel, got {type(init).__name__}")


def build_training_model(
    config: TrainConfig, input_channels: int, init: UNetModel | None = None
) -> Any:
    """Build the Keras U-Net to train (with drop-out); start from ``init``'s weights if given.

    Parameters
    ----------
    config : TrainConfig
        Shape (classes, depth, filters), drop-out and the seed of the initial weights.
    input_channels : int
        Channels of the training images.
    init : UNetModel, optional
        Model whose weights to start from; drop-out layers carry no weights, so a model
        saved for inference fits the training model of the same shape.

    Returns
    -------
    keras.Model

    Raises
    ------
    ValueError
        If ``init`` does not have the shape (channels, classes, depth, filters) asked for.
    """
    from napari_tiled_unet.core.model.builder import build_unet

    model = build_unet(
        input_channels=input_channels,
        num_classes=config.num_classes,
        depth=config.depth,
        base_filters=config.base_filters,
        dropout=config.dropout,
        seed=config.seed,
    )
    if init is not None:
        meta = init.metadata
        have = (meta.input_channels, meta.num_classes, meta.depth, meta.base_filters)
        want = (input_channels, config.num_classes, config.depth, config.base_filters)
        weights = init.keras_model.get_weights()
        if have != want or [w.shape for w in weights] != [tuple(v.shape) for v in model.weights]:
            raise ValueError(
                f"the initial model has (channels, classes, depth, base filters) = {have} but "
                f"training asks for {want}; match them (TrainConfig.for_model) or train anew"
            )
        model.set_weights(weights)
    return model


def make_train_step(model: Any, config: TrainConfig) -> Any:
    """Return a compiled step ``(inputs, classes, weights) -> (loss, updated)``.

    The step updates ``model`` unless the loss or a gradient is not finite; ``updated``
    (a boolean tensor) says whether it did.

    The optimiser is Adam, or SGD with ``config.momentum`` (the paper's 0.99).  Inputs are
    ``(B, S, S, C)`` tiles, classes and weights ``(B, s, s)`` at the output size.
    """
    from napari_tiled_unet.core._keras import get_keras, get_tf

    keras, tf = get_keras(), get_tf()
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate=config.lr, momentum=config.momentum)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=config.lr)
    optimizer.build(model.trainable_variables)

    variables = model.trainable_variables

    # No AutoGraph: the one branch is an explicit tf.cond.
    @tf.function(autograph=False, reduce_retracing=True)
    def step(x: Any, y: Any, w: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = weighted_cross_entropy(model(x, training=True), y, w)
        grads = tape.gradient(loss, variables)
        # A non-finite loss or gradient skips the update, so that the weights stay finite
        # (the clipped logarithm of the loss can hide NaN probabilities; gradients cannot).
        finite = tf.math.is_finite(loss)
        for grad in grads:
            if grad is not None:
                finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(grad)))

        def update() -> Any:
            optimizer.apply_gradients(zip(grads, variables))
            return tf.constant(True)

        return loss, tf.cond(finite, update, lambda: tf.constant(False))

    return step


def validate(unet: UNetModel, images: Sequence[PreparedImage]) -> tuple[float, float]:
    """Segment every validation image whole (overlap-tile) and score it.

    Returns
    -------
    loss, iou : float
        The weighted cross-entropy pooled over all images (weighted mean over all their
        pixels) and the foreground IoU pooled likewise (weight-0 pixels not counted).
    """
    from napari_tiled_unet.core.predict import segment

    weighted_sum = total_weight = 0.0
    intersection = union = 0
    for item in images:
        # validation images are already at the model scale
        result = segment(unet, item.image, axes="YXC", normalize=None, object_size="none")
        probs = result.probabilities
        weight = float(item.weights.sum())
        loss = weighted_cross_entropy(probs[None], item.classes[None], item.weights[None])
        weighted_sum += float(loss) * weight
        total_weight += weight
        i, u = iou_counts(probs, item.classes, item.weights)
        intersection, union = intersection + i, union + u
    return (
        weighted_sum / total_weight if total_weight else 0.0,
        intersection / union if union else 1.0,
    )
