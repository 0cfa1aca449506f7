"""Intensity normalisation applied before the network (pure numpy).

Statistics ignore values that are not finite (NaN, +-inf), and every NaN or infinite input
pixel enters the network as 0 (the low percentile), so that one bad pixel cannot spread
through the network's receptive field.  float64 data and integers of 32 bits and more are
normalised in float64 and only then cast to float32, so that no value overflows and wide
integers keep their precision; narrower types are normalised in float32.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "MeanStdNormalizer",
    "NonFiniteWarning",
    "Normalizer",
    "PercentileNormalizer",
    "check_dtype",
    "count_nonfinite",
    "network_input",
    "normalizer_from_dict",
    "warn_nonfinite",
    "work_dtype",
]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


class NonFiniteWarning(UserWarning):
    """Some input pixels were NaN or infinite and were segmented as the low percentile."""


def check_dtype(dtype: Any) -> None:
    """Raise a one-line TypeError unless ``dtype`` holds real numbers (bool, int, float)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        kinds = {"c": "complex", "O": "Python object", "U": "text", "S": "bytes"}
        hint = "np.abs(image) or image.real" if dtype.kind == "c" else "image.astype(np.float32)"
        raise TypeError(
            f"images of pixel type {dtype} ({kinds.get(dtype.kind, 'not numbers')}) cannot be "
            f"segmented; pass real numbers (bool, integers or floats), e.g. {hint}"
        )


def warn_nonfinite(count: int, total: int, *, normalized: bool, what: str = "the image") -> None:
    """Warn (one line, :class:`NonFiniteWarning`) that ``count`` of ``total`` values were bad."""
    if count:
        instead = "the low percentile (0 after normalisation)" if normalized else "0"
        warnings.warn(
            f"{count} of {total} pixel values of {what} are NaN or infinite; they were "
            f"segmented as {instead}",
            NonFiniteWarning,
            stacklevel=3,
        )


def work_dtype(dtype: Any) -> np.dtype:
    """Return the float type data of ``dtype`` are normalised in (float32 or float64)."""
    dtype = np.dtype(dtype)
    wide = (dtype.kind == "f" and dtype.itemsize >= 8) or (
        dtype.kind in "iu" and dtype.itemsize >= 4
    )
    return np.dtype(np.float64 if wide else np.float32)


def count_nonfinite(data: Any) -> int:
    """Return how many values of ``data`` are NaN or infinite (0 for integer data)."""
    arr = np.asarray(data)
    if arr.dtype.kind not in "fc":
        return 0
    return int(arr.size - np.count_nonzero(np.isfinite(arr)))


def _finite_float32(values: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Cast to float32: non-finite inputs become 0, values beyond float32 are clipped."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = values.astype(np.float32, copy=False)
    if np.isfinite(out).all():  # the usual case: one pass, no copy
        return out
    if np.shares_memory(out, data):
        out = out.copy()  # never fill the caller's array
    np.clip(out, -_FLOAT32_MAX, _FLOAT32_MAX, out=out)
    if data.dtype.kind == "f":
        out[~np.isfinite(data)] = 0.0
    out[np.isnan(out)] = 0.0
    return out


def network_input(data: Any, scale: tuple[Any, Any] | None = None) -> np.ndarray:
    """Return float32 network input: ``data`` normalised with ``scale = (low, high)``, or as is.

    NaN and infinite values become 0 (the low percentile when normalising) and values beyond
    the float32 range are clipped to it, so the network only ever sees finite numbers.
    """
    if scale is not None:
        return PercentileNormalizer.apply(data, *scale)
    arr = np.asarray(data)
    if arr.dtype.kind == "b":
        arr = arr.view(np.uint8)
    return _finite_float32(arr, arr)


def no_finite_value_error(channel: int, channels: int, size: int) -> ValueError:
    where = f" in channel {channel}" if channels > 1 else ""
    return ValueError(
        f"no finite pixel value{where}: all {size} are NaN or infinite; check the image "
        "(an empty or failed acquisition?) or replace its NaN values before segmenting"
    )


@dataclass(frozen=True)
class PercentileNormalizer:
    """Map the ``low`` and ``high`` percentiles of the data to 0 and 1 (per channel).

    Parameters
    ----------
    low, high : float
        Percentiles (0-100) mapped to 0 and 1; values outside are not clipped.
    per : {"plane", "stack"}
        Compute the percentiles for each 2D image ("plane") or once over the whole stack.
    eps : float
        Added to the range, ``(x - p_low) / (p_high - p_low + eps)``, as bioimage.io's
        ``scale_range`` does; 0 (default) for this package's own models.
    """

    low: float = 1.0
    high: float = 99.8
    per: Literal["plane", "stack"] = "plane"
    eps: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(
                f"percentiles must satisfy 0 <= low < high <= 100, "
                f"got low={self.low}, high={self.high}"
            )
        if self.per not in ("plane", "stack"):
            raise ValueError(f"per must be 'plane' or 'stack', got {self.per!r}")

    def statistics(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the per-channel ``(low, high)`` values of ``(..., C)`` data (float64).

        NaN and infinite values are left out; a channel without any finite value is a
        ValueError.  The percentiles are taken of the data as they are (no cast first).
        """
        arr = np.asarray(data)
        if arr.dtype.kind == "b":
            arr = arr.view(np.uint8)
        flat = arr.reshape(-1, arr.shape[-1])
        q = [self.low, self.high]
        if flat.dtype.kind != "f" or np.isfinite(flat).all():
            lo, hi = np.percentile(flat, q, axis=0)
            return lo, hi + self.eps
        values = np.empty((2, flat.shape[1]), np.float64)
        for channel in range(flat.shape[1]):
            column = flat[:, channel]
            finite = column[np.isfinite(column)]
            if finite.size == 0:
                raise no_finite_value_error(channel, flat.shape[1], column.size)
            values[:, channel] = np.percentile(finite, q)
        return values[0], values[1] + self.eps

    @staticmethod
    def apply(data: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Scale ``(..., C)`` data so ``lo`` -> 0 and ``hi`` -> 1, as finite float32.

        The arithmetic runs in :func:`work_dtype` of the data; NaN and infinite values
        become 0, results beyond the float32 range are clipped to it.
        """
        arr = np.asarray(data)
        if arr.dtype.kind == "b":
            arr = arr.view(np.uint8)
        work = work_dtype(arr.dtype)
        lo, hi = np.asarray(lo).astype(work), np.asarray(hi).astype(work)
        with np.errstate(over="ignore", invalid="ignore"):
            span = hi - lo
            if not np.isfinite(span).all():  # a range wider than the float type: halve it
                lo, hi, arr = lo / 2, hi / 2, arr.astype(work) / 2
                span = hi - lo
            scale = np.where(hi > lo, span, 1.0).astype(work)
            values = (np.asarray(arr, dtype=work) - lo) / scale
        return _finite_float32(values, np.asarray(data))

    def to_dict(self) -> dict[str, Any]:
        """Serialise for model metadata."""
        info = {"method": "percentile", **asdict(self)}
        if not self.eps:  # files of models without it stay as they were
            del info["eps"]
        return info


@dataclass(frozen=True)
class MeanStdNormalizer:
    """Zero mean and unit variance per channel: ``(x - mean) / (std + eps)``.

    The statistics are ``(mean, mean + std + eps)``, so :meth:`apply` is the same affine map
    as :meth:`PercentileNormalizer.apply`.  Models from the BioImage Model Zoo ask for it
    (``zero_mean_unit_variance``).

    Parameters
    ----------
    eps : float
        Added to the standard deviation.
    per : {"plane", "stack"}
        Statistics of each 2D image ("plane") or of the whole stack.
    """

    eps: float = 1e-6
    per: Literal["plane", "stack"] = "plane"

    def __post_init__(self) -> None:
        if self.per not in ("plane", "stack"):
            raise ValueError(f"per must be 'plane' or 'stack', got {self.per!r}")

    def statistics(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the per-channel ``(mean, mean + std + eps)`` of ``(..., C)`` data."""
        return self.from_sums(self.block_sums(np.asarray(data).reshape(-1, data.shape[-1])))

    @staticmethod
    def block_sums(block: np.ndarray) -> np.ndarray:
        """Return the ``(3, C)`` sums of 1, x and x**2 (float64) of an ``(n, C)`` block."""
        values = block.astype(np.float64)
        return np.stack(
            [
                np.full(values.shape[1], values.shape[0], np.float64),
                values.sum(0),
                np.square(values).sum(0),
            ]
        )

    def from_sums(self, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Statistics from ``(3, C)`` sums of 1, x and x**2 (data seen in blocks)."""
        count, total, squares = sums
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        return mean.astype(np.float32), (mean + std + self.eps).astype(np.float32)

    apply = staticmethod(PercentileNormalizer.apply)

    def to_dict(self) -> dict[str, Any]:
        """Serialise for model metadata."""
        return {"method": "mean_std", **asdict(self)}


#: What :func:`napari_tiled_unet.segment` accepts as a normaliser.
Normalizer = PercentileNormalizer | MeanStdNormalizer


def normalizer_from_dict(info: dict[str, Any] | None) -> Normalizer | None:
    """Rebuild a normaliser from model metadata (None or ``{"method": "none"}`` -> None)."""
    if not info or info.get("method") in (None, "none"):
        return None
    if info.get("method") == "mean_std":
        return MeanStdNormalizer(float(info.get("eps", 1e-6)), info.get("per", "plane"))
    if info.get("method") != "percentile":
        raise ValueError(
            f"unknown normalisation method {info.get('method')!r} in model "
            "metadata; expected 'percentile', 'mean_std' or 'none'"
        )
    return PercentileNormalizer(
        float(info.get("low", 1.0)),
        float(info.get("high", 99.8)),
        info.get("per", "plane"),
        float(info.get("eps", 0.0)),
    )
