"""Intensity normalisation applied before the network (pure numpy)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["MeanStdNormalizer", "Normalizer", "PercentileNormalizer", "normalizer_from_dict"]


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
        """Return the per-channel ``(low, high)`` values of ``(..., C)`` data."""
        flat = np.asarray(data).reshape(-1, data.shape[-1])
        lo, hi = np.percentile(flat, [self.low, self.high], axis=0)
        return lo.astype(np.float32), (hi + self.eps).astype(np.float32)

    @staticmethod
    def apply(data: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Scale ``(..., C)`` data so ``lo`` -> 0 and ``hi`` -> 1, as float32."""
        scale = np.where(hi != lo, hi - lo, 1.0).astype(np.float32)
        return (np.asarray(data, dtype=np.float32) - lo) / scale

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
