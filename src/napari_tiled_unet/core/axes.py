"""Axes strings ("YX", "ZYX", "TZYXC", ...) and the canonical ``(planes, Y, X, C)`` view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AxesLayout", "parse_axes"]

_CHANNEL_LETTERS = ("C", "S")


@dataclass(frozen=True)
class AxesLayout:
    """How an image's axes map onto ``(planes, Y, X, C)``.

    Attributes
    ----------
    axes : str
        The image's axes, upper case.
    plane_axes : str
        Leading axes processed plane by plane, in image order.
    channel_axis : int or None
        Position of the channel axis in the image, if any.
    """

    axes: str
    plane_axes: str
    channel_axis: int | None

    @property
    def output_axes(self) -> str:
        """Axes of the labels: the image's axes without the channel axis."""
        return "".join(a for a in self.axes if a not in _CHANNEL_LETTERS)

    def canonical_order(self) -> list[int]:
        """Permutation of the image's axes into ``planes..., Y, X[, C]``."""
        order = [self.axes.index(a) for a in self.plane_axes]
        order += [self.axes.index("Y"), self.axes.index("X")]
        if self.channel_axis is not None:
            order.append(self.channel_axis)
        return order

    def output_order(self) -> list[int]:
        """Permutation from ``planes..., Y, X`` back to :attr:`output_axes` order."""
        canonical = [*self.plane_axes, "Y", "X"]
        return [canonical.index(a) for a in self.output_axes]


def parse_axes(axes: str | None, shape: tuple[int, ...]) -> AxesLayout:
    """Validate an axes string against an image shape.

    ``Y`` and ``X`` are required; ``C`` (or ``S``) marks channels; every other letter is
    a leading axis (Z, T, ...) processed plane by plane.  ``None`` means ``"YX"`` for a 2D
    image and is an error otherwise, since guessing would silently mix channels and planes.
    """
    if axes is None:
        if len(shape) != 2:
            raise ValueError(
                f"the image has {len(shape)} dimensions {tuple(shape)}; pass axes, "
                "e.g. axes='ZYX' for a stack or 'YXC' for channels last"
            )
        axes = "YX"
    if not isinstance(axes, str):
        raise TypeError(f"axes must be a string such as 'ZYX', got {type(axes).__name__}")
    axes = axes.upper()
    if len(axes) != len(shape):
        raise ValueError(
            f"axes {axes!r} name {len(axes)} dimensions but the image has "
            f"{len(shape)} {tuple(shape)}; give one letter per dimension"
        )
    if len(set(axes)) != len(axes) or "Y" not in axes or "X" not in axes:
        raise ValueError(f"axes {axes!r} must contain Y and X once each and no letter twice")
    channels = [i for i, a in enumerate(axes) if a in _CHANNEL_LETTERS]
    if len(channels) > 1:
        raise ValueError(f"axes {axes!r} has more than one channel axis (C/S); keep one")
    plane_axes = "".join(a for a in axes if a not in ("Y", "X", *_CHANNEL_LETTERS))
    return AxesLayout(axes, plane_axes, channels[0] if channels else None)


def to_canonical(image: np.ndarray, layout: AxesLayout) -> np.ndarray:
    """View ``image`` as ``(*planes, Y, X, C)`` without copying (works on lazy arrays too)."""
    view = image.transpose(layout.canonical_order())
    return view[..., np.newaxis] if layout.channel_axis is None else view
