"""Size arithmetic of the valid-convolution U-Net and its :class:`NetworkSpec` (no Keras).

Each level of the contracting path applies two unpadded 3x3 convolutions (-4 px) and a
2x2 max-pooling (/2); the expanding path doubles the size with a 2x2 up-convolution and
applies two more unpadded convolutions.  An input size is *valid* when every pooling sees an
even size and every feature map stays non-empty, so that the output is an exact centre crop
of the input shrunk by the same ``halo`` on every side (92 px at depth 4).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

__all__ = [
    "NetworkSpec",
    "alignment",
    "halo",
    "is_valid_input_size",
    "nearest_valid_input_size",
    "output_size",
    "skip_crops",
    "smallest_input_for_output",
    "valid_input_sizes",
]


def _check_depth(depth: int) -> None:
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be a non-negative integer, got {depth!r}")


def output_size(input_size: int, depth: int = 4) -> int | None:
    """Return the output size of a U-Net of ``depth`` for ``input_size``, or None if invalid.

    Parameters
    ----------
    input_size : int
        Size (pixels) of the input along one axis.
    depth : int
        Number of poolings (4 in the paper).

    Returns
    -------
    int or None
        The output size along that axis, or None when ``input_size`` is not valid.
    """
    _check_depth(depth)
    size = int(input_size)
    for _ in range(depth):
        size -= 4
        if size <= 0 or size % 2:
            return None
        size //= 2
    size -= 4
    if size <= 0:
        return None
    for _ in range(depth):
        size = 2 * size - 4
        if size <= 0:
            return None
    return size


def is_valid_input_size(input_size: int, depth: int = 4) -> bool:
    """Return True if ``input_size`` gives an exact valid-convolution output at ``depth``."""
    return output_size(input_size, depth) is not None


def alignment(depth: int = 4) -> int:
    """Return the translation step (``2**depth`` px) under which the U-Net is equivariant.

    Tiles must start at multiples of it, relative to one another, so that their max-pooling
    grids coincide with the grid of a whole-image pass.
    """
    _check_depth(depth)
    return 2**depth


def halo(depth: int = 4) -> int:
    """Return the context (px) the network consumes on each side: ``(input - output) / 2``."""
    size = smallest_valid_input_size(depth)
    out = output_size(size, depth)
    assert out is not None
    return (size - out) // 2


def skip_crops(depth: int = 4) -> tuple[int, ...]:
    """Return the px cropped from each side of every skip connection, top level first.

    At the deepest level the contracting path's feature map is 8 px larger than the
    up-convolution's output (the two bottom convolutions, doubled), and each level up doubles
    that difference and adds the 16 px of two convolutions on each path.  Neither depends on
    the input size, so one fixed crop per level serves every valid input: 88, 40, 16 and 4 px
    at depth 4, the paper's numbers.
    """
    _check_depth(depth)
    crops: list[int] = []
    difference = 8
    for _ in range(depth):
        crops.insert(0, difference // 2)
        difference = 2 * difference + 16
    return tuple(crops)


def smallest_valid_input_size(depth: int = 4) -> int:
    """Return the smallest valid input size for ``depth``."""
    _check_depth(depth)
    size = 1
    while output_size(size, depth) is None:
        size += 1
    return size


def valid_input_sizes(depth: int = 4, *, minimum: int = 1, maximum: int = 2048) -> list[int]:
    """List the valid input sizes in ``[minimum, maximum]`` for ``depth``.

    Valid sizes form an arithmetic progression with step ``2**depth`` (572 is one at depth 4).
    """
    first = smallest_valid_input_size(depth)
    step = alignment(depth)
    start = first if minimum <= first else first + -(-(minimum - first) // step) * step
    return list(range(start, maximum + 1, step))


def smallest_input_for_output(out: int, depth: int = 4) -> int:
    """Return the smallest valid input size whose output is at least ``out`` px."""
    need = int(out) + 2 * halo(depth)
    sizes = valid_input_sizes(depth, minimum=need, maximum=need + alignment(depth))
    return max(sizes[0], smallest_valid_input_size(depth))


def nearest_valid_input_size(requested: int, depth: int = 4, *, warn: bool = False) -> int:
    """Return the valid input size nearest to ``requested`` (the larger one on a tie).

    Parameters
    ----------
    requested : int
        A tile size asked for by the user.
    depth : int
        U-Net depth.
    warn : bool
        If True and ``requested`` is not valid, emit a ``UserWarning`` naming both sizes.

    Returns
    -------
    int
        A valid input size.
    """
    requested = int(requested)
    if is_valid_input_size(requested, depth):
        return requested
    first = smallest_valid_input_size(depth)
    step = alignment(depth)
    if requested <= first:
        nearest = first
    else:
        below = first + (requested - first) // step * step
        above = below + step
        nearest = below if requested - below < above - requested else above
    if warn:
        warnings.warn(
            f"tile size {requested} is not valid for a depth-{depth} U-Net; "
            f"using the nearest valid size {nearest}",
            UserWarning,
            stacklevel=3,
        )
    return nearest


@dataclass(frozen=True)
class NetworkSpec:
    """What tiling needs to know about a U-Net.

    Attributes
    ----------
    depth : int
        Number of poolings; tiles are aligned to ``2**depth`` px.
    base_filters : int
        Filters of the first level (drives the memory estimate).
    input_channels, num_classes : int
        Channels in and classes out.
    fixed_input_size : tuple of int, optional
        ``(Y, X)`` input of a model that only accepts one size; None if fully convolutional.
    padded_halo : int, optional
        For a network with padded ("same") convolutions, whose output is as large as its
        input: the px on each side of its output that the padding disturbs.  Its runner
        (:meth:`UNetModel.predict_batch`) crops them, so tiles behave as with valid
        convolutions with this halo, on inputs that are multiples of ``2**depth``.  None
        (default) for the valid-convolution U-Net.
    """

    depth: int = 4
    base_filters: int = 64
    input_channels: int = 1
    num_classes: int = 2
    fixed_input_size: tuple[int, int] | None = None
    padded_halo: int | None = None

    @property
    def halo(self) -> int:
        """Context consumed on each side (px)."""
        return halo(self.depth) if self.padded_halo is None else self.padded_halo

    @property
    def alignment(self) -> int:
        """Translation step under which the network is equivariant (px)."""
        return alignment(self.depth)

    def output_size(self, size: int) -> int | None:
        """Output size (px) of the (cropped) network for an input ``size``; None if invalid."""
        if self.padded_halo is None:
            return output_size(size, self.depth)
        out = int(size) - 2 * self.padded_halo
        return out if size % self.alignment == 0 and out > 0 else None

    def nearest_valid_input_size(self, requested: int, *, warn: bool = False) -> int:
        """Return the valid input size nearest to ``requested`` (the larger one on a tie)."""
        if self.padded_halo is None:
            return nearest_valid_input_size(requested, self.depth, warn=warn)
        step, requested = self.alignment, int(requested)
        nearest = max(self.smallest_input_for_output(1), (requested + step // 2) // step * step)
        if warn and nearest != requested:
            warnings.warn(
                f"tile size {requested} is not valid for this network (multiples of {step} "
                f"px); using the nearest valid size {nearest}",
                UserWarning,
                stacklevel=3,
            )
        return nearest

    def smallest_input_for_output(self, out: int) -> int:
        """Smallest valid input size whose output is at least ``out`` px."""
        if self.padded_halo is None:
            return smallest_input_for_output(out, self.depth)
        step = self.alignment
        return -(-(int(out) + 2 * self.padded_halo) // step) * step
