"""Exact percentiles of data too large to hold, in a few streaming passes (pure numpy).

``np.percentile`` needs all values in memory.  Here each value is mapped to an unsigned
integer key with the same order (a radix view of the number), and the order statistics the
``"linear"`` method needs are found digit by digit: one pass over the data per 16 bits of the
dtype, each pass summing small histograms block by block.  The final interpolation repeats
numpy's arithmetic, so the result equals ``np.percentile(data, q, axis=0)`` exactly (tested),
whatever the size of the data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["blocks_reducer", "normalizer_statistics", "percentile_stream"]

_DIGIT_BITS = 16

#: ``reduce(fn)`` applies ``fn`` to every ``(n, channels)`` block of the data and returns the
#: sum of the results (a loop over blocks, or a dask reduction).
Reducer = Callable[[Callable[[np.ndarray], np.ndarray]], np.ndarray]


def _key_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"u{dtype.itemsize}")


def to_keys(values: np.ndarray) -> np.ndarray:
    """Map values to unsigned integers with the same order (NaNs last, as in a sort)."""
    dtype = values.dtype
    kind = _key_dtype(dtype)
    if dtype.kind == "u":
        return values
    bits = values.view(kind)
    sign = kind.type(1 << (8 * dtype.itemsize - 1))
    if dtype.kind == "i":
        return bits ^ sign
    # Floats: flip all bits of negatives, only the sign bit of positives.
    return np.where(bits & sign, ~bits, bits | sign)


def from_keys(keys: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`to_keys`."""
    kind = _key_dtype(dtype)
    keys = keys.astype(kind)
    if dtype.kind == "u":
        return keys.astype(dtype)
    sign = kind.type(1 << (8 * dtype.itemsize - 1))
    if dtype.kind == "i":
        return (keys ^ sign).view(dtype)
    return np.where(keys & sign, keys ^ sign, ~keys).view(dtype)


def _select(
    reduce: Reducer, dtype: np.dtype, channels: int, ranks: np.ndarray, finite_only: bool = False
) -> np.ndarray:
    """Values of the given 0-based ``ranks`` (``(k, channels)``) in the sorted data.

    With ``finite_only``, NaN and infinite values are left out of the sorted data.
    """
    width = 8 * dtype.itemsize
    digit = min(_DIGIT_BITS, width)
    prefix = np.zeros(ranks.shape, np.uint64)  # key bits found so far
    remaining = ranks.astype(np.int64)
    for shift in range(width - digit, -1, -digit):
        known = width - shift - digit  # bits already fixed above this digit
        groups = sorted({(c, int(p)) for c, p in zip(*_channel_grid(prefix))})

        def histograms(
            block: np.ndarray, shift: int = shift, known: int = known, groups: list = groups
        ) -> np.ndarray:
            counts = np.zeros((len(groups), 1 << digit), np.int64)
            keys = to_keys(np.ascontiguousarray(block)).astype(np.uint64)
            finite = np.isfinite(block) if finite_only else None
            for row, (channel, head) in enumerate(groups):
                column = keys[:, channel]
                if finite is not None:
                    column = column[finite[:, channel]]
                if known:
                    column = column[(column >> np.uint64(shift + digit)) == np.uint64(head)]
                digits = (column >> np.uint64(shift)) & np.uint64((1 << digit) - 1)
                counts[row] = np.bincount(digits.astype(np.intp), minlength=1 << digit)
            return counts

        counts = reduce(histograms)
        cumulative = np.cumsum(counts, axis=1)
        for (k, c), rank in np.ndenumerate(remaining):
            row = groups.index((c, int(prefix[k, c])))
            # (min: a channel without any value finds nothing; its result is NaN anyway)
            found = min(
                int(np.searchsorted(cumulative[row], rank, side="right")), counts.shape[1] - 1
            )
            remaining[k, c] = rank - (cumulative[row, found - 1] if found else 0)
            prefix[k, c] = (prefix[k, c] << np.uint64(digit)) | np.uint64(found)
    return from_keys(prefix, dtype)


def _channel_grid(prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    channels = np.broadcast_to(np.arange(prefix.shape[1]), prefix.shape)
    return channels.ravel(), prefix.ravel()


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    # numpy's own interpolation (numpy.lib._function_base_impl._lerp), step by step, so that
    # rounding matches np.percentile bit for bit.
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, as numpy: NaN
        diff_b_a = b - a
        result = np.asanyarray(np.add(a, diff_b_a * t))
        np.subtract(
            b,
            diff_b_a * (1 - t),
            out=result,
            where=t >= 0.5,
            casting="unsafe",
            dtype=result.dtype,
        )
    return result


def percentile_stream(
    reduce: Reducer,
    *,
    dtype: np.dtype,
    channels: int,
    count: int,
    q: Sequence[float],
    finite_only: bool = False,
) -> np.ndarray:
    """Exact ``np.percentile(data, q, axis=0)`` of ``(count, channels)`` data seen in blocks.

    Parameters
    ----------
    reduce : callable
        ``reduce(fn)`` returns the sum of ``fn(block)`` over all ``(n, channels)`` blocks.
    dtype : numpy.dtype
        dtype of the data (booleans are not supported).
    channels, count : int
        Channels and values per channel.
    q : sequence of float
        Percentiles in [0, 100].
    finite_only : bool
        Leave NaN and infinite values out: each channel's result is then
        ``np.percentile`` of its finite values (one more pass over float data).

    Returns
    -------
    numpy.ndarray
        ``(len(q), channels)``, float64 (numpy's result dtype); NaN where a channel has NaNs
        (or, with ``finite_only``, no finite value).
    """
    dtype = np.dtype(dtype)
    floats = dtype.kind == "f"
    sizes = np.full(channels, count, np.int64)
    if floats and finite_only:
        sizes = reduce(lambda block: np.isfinite(block).sum(axis=0, keepdims=True))[0]
    quantiles = np.true_divide(np.asarray(q, dtype=np.float64), 100)[:, None]
    last = np.maximum(sizes - 1, 0)
    virtual = (sizes - 1) * quantiles
    previous = np.floor(virtual)
    above, below = virtual >= last, virtual < 0
    lower = np.where(above, last, np.where(below, 0, previous)).astype(np.int64)
    upper = np.where(above, last, np.where(below, 0, previous + 1)).astype(np.int64)
    # numpy measures the interpolation weight from the clipped index (-1 above the end).
    gamma = virtual - np.where(above, -1, np.where(below, 0, previous))
    ranks = np.concatenate([lower, upper])
    values = _select(reduce, dtype, channels, ranks, finite_only and floats)
    low_values, high_values = values[: len(quantiles)], values[len(quantiles) :]
    result = _lerp(low_values, high_values, gamma)
    if floats and not finite_only:
        nans = reduce(lambda block: np.isnan(block).sum(axis=0, keepdims=True))[0]
        result[:, nans > 0] = np.nan
    result[:, sizes == 0] = np.nan
    return result


def blocks_reducer(blocks: Callable[[], Sequence[np.ndarray] | object]) -> Reducer:
    """Make a :data:`Reducer` over blocks (``blocks()`` is called once per pass)."""

    def reduce(fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        total: np.ndarray | None = None
        for block in blocks():  # type: ignore[attr-defined]
            part = fn(block)
            total = part if total is None else total + part
        assert total is not None, "no data"
        return total

    return reduce


def normalizer_statistics(
    normalizer: Any, reduce: Reducer, *, dtype: Any, channels: int, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``normalizer.statistics(data)`` (float64 low and high), data seen in blocks.

    Percentiles come out exactly as in memory (NaN and infinite values left out; a channel
    without any finite value is a ValueError, as for :meth:`PercentileNormalizer.statistics`);
    a mean and standard deviation up to the rounding of sums taken in another order.
    """
    from napari_tiled_unet.core.normalize import no_finite_value_error

    if hasattr(normalizer, "block_sums"):  # mean and standard deviation: one pass of sums
        return normalizer.from_sums(reduce(normalizer.block_sums))
    values = percentile_stream(
        reduce,
        dtype=dtype,
        channels=channels,
        count=count,
        q=(normalizer.low, normalizer.high),
        finite_only=True,
    )
    for channel in np.flatnonzero(np.isnan(values).any(axis=0)):
        raise no_finite_value_error(int(channel), channels, count)
    return values[0], values[1] + normalizer.eps
