"""Layers to training data: image / labels / "not annotated" layers as plain arrays.

Main thread only (layers are read here); the arrays go to
:func:`napari_tiled_unet.core.train.planes.training_planes`, which splits them into the
planes that were annotated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Shapes

from napari_tiled_unet._widgets._dock import layer_data
from napari_tiled_unet._widgets._layers import notify_error
from napari_tiled_unet.core.train.planes import Pair, training_planes

__all__ = ["PairList", "ignore_mask", "pair_name", "training_data"]


def ignore_mask(layer: Any, labels: Any) -> Any:
    """Return the "not annotated" mask: a Labels layer's painted pixels, or shapes' insides.

    Shapes are drawn in the same data coordinates as the labels; shapes drawn in 2D on a
    stack mark the same region in every plane.
    """
    if layer is None:
        return None
    if not isinstance(layer, Shapes):
        return layer_data(layer)
    same_place = np.allclose(layer.scale[-2:], labels.scale[-2:]) and np.allclose(
        layer.translate[-2:], labels.translate[-2:]
    )
    if not same_place:
        raise ValueError(
            f"the shapes {layer.name!r} are not placed like the labels {labels.name!r} (other "
            "scale or position); draw them in a Shapes layer with the image's scale"
        )
    shape = layer_data(labels).shape
    if layer.ndim == len(shape):
        return layer.to_labels(labels_shape=shape) != 0
    if layer.ndim == 2:
        return np.broadcast_to(layer.to_labels(labels_shape=shape[-2:]) != 0, shape)
    raise ValueError(
        f"the shapes {layer.name!r} have {layer.ndim} dimensions but the labels "
        f"{labels.name!r} have {len(shape)}; draw them on the same image"
    )


def pair_name(image: Any, labels: Any, ignore: Any = None) -> str:
    return f"{image.name} + {labels.name}" + ("" if ignore is None else f" - {ignore.name}")


def _pair(image: Any, labels: Any, ignore: Any = None) -> Pair:
    return Pair(
        image.name,
        layer_data(image),
        labels.name,
        layer_data(labels),
        bool(image.rgb),
        ignore_mask(ignore, labels),
        "" if ignore is None else ignore.name,
    )


def training_data(
    pairs: list[tuple[Any, Any, Any]], val_pair: tuple[Any, Any, Any] | None
) -> tuple[tuple[list, list, list], tuple[list, list, list]]:
    """Return the training and validation planes of layer triples (image, labels, ignore).

    Raises
    ------
    ValueError
        With one line, when a triple lacks its image or labels or the layers do not fit.
    """
    if any(layer is None for pair in pairs for layer in pair[:2]):
        raise ValueError(
            "there is nothing to train on; choose an image and the Labels layer painted "
            "on it, or add pairs"
        )
    train = training_planes([_pair(*pair) for pair in pairs])
    if val_pair is None or val_pair[0] is None:
        return train, ([], [], [])
    if val_pair[1] is None:
        raise ValueError(
            "the validation image has no labels; choose the Labels layer painted on "
            "it, or set Validation image to none"
        )
    return train, training_planes([_pair(*val_pair)], role="validation")


class PairList:
    """The Train form's Pairs: (image, labels, not annotated or None) layer triples.

    Parameters
    ----------
    form : TrainWidget
        Provides ``image``, ``labels_layer``, ``ignore_layer``, ``pairs`` (the list shown),
        ``pairs_info``, ``status`` and ``update_visibility``.
    """

    def __init__(self, form: Any) -> None:
        self._form = form
        self.items: list[tuple[Any, Any, Any]] = []

    def choices(self) -> list[tuple[str, Any]]:
        return [(pair_name(*pair), pair) for pair in self.items]

    def add_current(self) -> None:
        """Add the chosen Image, Labels and Not annotated, if they fit together."""
        form = self._form
        image, labels, ignore = form.image.value, form.labels_layer.value, form.ignore_layer.value
        try:
            if image is None or labels is None:
                raise ValueError("choose an image and the Labels layer painted on it first")
            if ignore is labels:
                raise ValueError("the labels cannot mark what is not annotated as well")
            training_data([(image, labels, ignore)], None)
        except ValueError as exc:
            form.status.value = notify_error(exc)
            return
        new = (image, labels, ignore)
        if not any(all(a is b for a, b in zip(pair, new)) for pair in self.items):
            self.items.append(new)
        form.pairs.reset_choices()
        self.show_count()

    def remove_chosen(self, _: Any = None) -> None:
        chosen = self._form.pairs.value
        self.items = [pair for pair in self.items if pair not in chosen]
        self._form.pairs.reset_choices()
        self.show_count()

    def keep_only(self, layers: Any) -> None:
        """Forget the pairs with a layer that is no longer in ``layers``."""
        self.items = [pair for pair in self.items if all(x is None or x in layers for x in pair)]

    def show_count(self) -> None:
        self._form.update_visibility()
        count = len(self.items)
        self._form.pairs_info.value = (
            f"Trains on {count} pair{'s' if count != 1 else ''}."
            if count
            else "No pairs added: Train uses the Image and Labels above."
        )
