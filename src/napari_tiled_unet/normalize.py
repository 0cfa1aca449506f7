"""Intensity normalisation applied before the network (pure numpy)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["PercentileNormalizer", "normalizer_from_dict"]


@dataclass(frozen=True)
class PercentileNormalizer:
    """Map the ``low`` and ``high`` percentiles of the data to 0 and 1 (per channel).

    Parameters
    ----------
    low, high : float
        Percentiles (0-100) mapped to 0 and 1; values outside are not clipped.
    per : {"plane", "stack"}
        Compute the percentiles for each 2D image ("plane") or once over the whole stack.
    """

    low: float = 1.0
    high: float = 99.8
    per: Literal["plane", "stack"] = "plane"

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
        return lo.astype(np.float32), hi.astype(np.float32)

    @staticmethod
    def apply(data: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Scale ``(..., C)`` data so ``lo`` -> 0 and ``hi`` -> 1, as float32."""
        scale = np.where(hi > lo, hi - lo, 1.0).astype(np.float32)
        return (np.asarray(data, dtype=np.float32) - lo) / scale

    def to_dict(self) -> dict[str, Any]:
        """Serialise for model metadata."""
        return {"method": "percentile", **asdict(self)}


def normalizer_from_dict(info: dict[str, Any] | None) -> PercentileNormalizer | None:
    """Rebuild a normaliser from model metadata (None or ``{"method": "none"}`` -> None)."""
    if not info or info.get("method") in (None, "none"):
        return None
    if info.get("method") != "percentile":
        raise ValueError(
            f"unknown normalisation method {info.get('method')!r} in model "
            "metadata; expected 'percentile' or 'none'"
        )
    return PercentileNormalizer(
        float(info.get("low", 1.0)), float(info.get("high", 99.8)), info.get("per", "plane")
    )
