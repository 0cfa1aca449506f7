"""Segmentation accuracy against ground-truth instance labels (pure numpy/scipy).

- :func:`foreground_iou`: pixel IoU of foreground (any object) vs background.
- :func:`match_instances`: one-to-one matching of predicted to true objects at an IoU
  threshold (maximum total IoU, so ties at exactly 0.5 are resolved optimally), giving
  true/false positives, false negatives, precision, recall, F1 and the "average precision"
  ``TP / (TP + FP + FN)`` of the 2018 Data Science Bowl (as reported by StarDist/Cellpose).
- :func:`mean_average_precision`: that average precision averaged over IoU thresholds
  0.5, 0.55, ..., 0.9.
- :func:`touching_pairs` / :func:`split_rate`: how many pairs of touching true objects the
  prediction keeps apart, the failure the U-Net paper's weight map addresses.

All functions take label images of any dimensionality: 0 = background, one positive
integer per object (numbers need not be consecutive).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

__all__ = [
    "InstanceMatch",
    "foreground_iou",
    "match_instances",
    "mean_average_precision",
    "split_rate",
    "touching_pairs",
]

#: IoU thresholds of :func:`mean_average_precision`: 0.5, 0.55, ..., 0.9.
AP_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(9))


def _check_pair(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred), np.asarray(true)
    for name, arr in (("prediction", p), ("ground truth", t)):
        if arr.dtype.kind not in "iub":
            raise ValueError(f"{name} labels must be integers, got dtype {arr.dtype}")
        if arr.size and arr.min() < 0:
            raise ValueError(f"{name} labels must be >= 0 (0 = background)")
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground truth {t.shape}")
    return p.astype(np.int64, copy=False), t.astype(np.int64, copy=False)


def _ratio(num: int, den: int, empty: bool) -> float:
    """``num / den``; a zero denominator scores 1.0 if both images are empty, else 0.0."""
    return num / den if den else float(empty)


def foreground_iou(pred: np.ndarray, true: np.ndarray) -> float:
    """Return the IoU of the foreground (label > 0) of two label images (1.0 if both empty)."""
    p, t = _check_pair(pred, true)
    union = np.count_nonzero((p > 0) | (t > 0))
    return np.count_nonzero((p > 0) & (t > 0)) / union if union else 1.0


@dataclass(frozen=True)
class InstanceMatch:
    """Result of :func:`match_instances`.

    Attributes
    ----------
    threshold : float
        IoU a pair needs to count as a match.
    tp, fp, fn : int
        Matched pairs, unmatched predicted objects, unmatched true objects.
    pairs : ndarray
        ``(tp, 2)`` matched ``(true label, predicted label)``.
    ious : ndarray of float64
        IoU of each matched pair.
    """

    threshold: float
    tp: int
    fp: int
    fn: int
    pairs: np.ndarray
    ious: np.ndarray

    @property
    def _empty(self) -> bool:
        return self.tp + self.fp + self.fn == 0

    @property
    def precision(self) -> float:
        """``TP / (TP + FP)``."""
        return _ratio(self.tp, self.tp + self.fp, self._empty)

    @property
    def recall(self) -> float:
        """``TP / (TP + FN)``."""
        return _ratio(self.tp, self.tp + self.fn, self._empty)

    @property
    def f1(self) -> float:
        """``2 TP / (2 TP + FP + FN)``, the harmonic mean of precision and recall."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn, self._empty)

    @property
    def average_precision(self) -> float:
        """``TP / (TP + FP + FN)`` (the Data Science Bowl 2018 definition)."""
        return _ratio(self.tp, self.tp + self.fp + self.fn, self._empty)


def _pair_counts(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the distinct ``(t, p)`` value pairs of two flat arrays and their counts."""
    base = int(p.max(initial=0)) + 1
    keys, counts = np.unique(t * base + p, return_counts=True)
    return keys // base, keys % base, counts


def _overlaps(p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return every overlapping ``(true, pred)`` label pair and its IoU."""
    true_ids, true_area = np.unique(t[t > 0], return_counts=True)
    pred_ids, pred_area = np.unique(p[p > 0], return_counts=True)
    both = (t > 0) & (p > 0)
    t_ids, p_ids, inter = _pair_counts(t[both], p[both])
    a_t = true_area[np.searchsorted(true_ids, t_ids)]
    a_p = pred_area[np.searchsorted(pred_ids, p_ids)]
    return t_ids, p_ids, inter / (a_t + a_p - inter)


def match_instances(
    pred: np.ndarray, true: np.ndarray, *, threshold: float = 0.5
) -> InstanceMatch:
    """Match predicted to true objects one-to-one at an IoU threshold.

    Among pairs with IoU >= ``threshold`` the matching with the largest total IoU is taken
    (for thresholds above 0.5 every object has at most one such partner anyway).

    Parameters
    ----------
    pred, true : ndarray of int
        Predicted and true instance labels of the same shape.
    threshold : float
        Minimum IoU of a match, in (0, 1].

    Returns
    -------
    InstanceMatch
        Counts, matched pairs and the scores derived from them.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    p, t = _check_pair(pred, true)
    n_true, n_pred = len(np.unique(t[t > 0])), len(np.unique(p[p > 0]))
    t_ids, p_ids, ious = _overlaps(p, t)
    keep = ious >= threshold
    t_ids, p_ids, ious = t_ids[keep], p_ids[keep], ious[keep]
    rows, t_index = np.unique(t_ids, return_inverse=True)
    cols, p_index = np.unique(p_ids, return_inverse=True)
    score = np.zeros((len(rows), len(cols)))
    score[t_index, p_index] = ious
    r, c = linear_sum_assignment(score, maximize=True)
    matched = score[r, c] > 0
    pairs = np.stack([rows[r[matched]], cols[c[matched]]], axis=1).reshape(-1, 2)
    tp = len(pairs)
    return InstanceMatch(threshold, tp, n_pred - tp, n_true - tp, pairs, score[r, c][matched])


def mean_average_precision(
    pred: np.ndarray, true: np.ndarray, *, thresholds: tuple[float, ...] = AP_THRESHOLDS
) -> float:
    """Return ``TP / (TP + FP + FN)`` averaged over IoU ``thresholds`` (0.5 .. 0.9)."""
    return float(
        np.mean([match_instances(pred, true, threshold=th).average_precision for th in thresholds])
    )


def touching_pairs(labels: np.ndarray, *, connectivity: int | None = None) -> np.ndarray:
    """Return the pairs of different objects that touch, as ``(n, 2)`` sorted label pairs.

    Parameters
    ----------
    labels : ndarray of int
        Instance labels.
    connectivity : int, optional
        Neighbourhood in which pixels touch: 1 = faces only, ``ndim`` (default) = full
        (8-neighbourhood in 2D, as the border class of the 3-class targets).

    Returns
    -------
    ndarray of int64
        Unique ``(a, b)`` with ``a < b``, sorted.
    """
    arr, _ = _check_pair(labels, labels)
    conn = arr.ndim if connectivity is None else connectivity
    if conn not in range(1, arr.ndim + 1):
        raise ValueError(f"connectivity must be 1..{arr.ndim}, got {connectivity!r}")
    structure = ndi.generate_binary_structure(arr.ndim, conn)
    offsets = [o - 1 for o in np.argwhere(structure) if tuple(o - 1) > (0,) * arr.ndim]
    found = [np.zeros((0, 2), np.int64)]
    for offset in offsets:
        here = tuple(slice(max(-d, 0), n - max(d, 0)) for d, n in zip(offset, arr.shape))
        there = tuple(slice(max(d, 0), n - max(-d, 0)) for d, n in zip(offset, arr.shape))
        a, b = arr[here], arr[there]
        differ = (a > 0) & (b > 0) & (a != b)
        found.append(np.sort(np.stack([a[differ], b[differ]], axis=1), axis=1))
    return np.unique(np.concatenate(found), axis=0)


def _dominant_prediction(p: np.ndarray, t: np.ndarray) -> dict[int, int]:
    """Map each true object to the predicted label (0 included) covering most of it."""
    inside = t > 0
    t_ids, p_ids, counts = _pair_counts(t[inside], p[inside])
    order = np.lexsort((-counts, t_ids))  # by true label, largest overlap first
    first = np.unique(t_ids[order], return_index=True)[1]
    return dict(zip(t_ids[order][first].tolist(), p_ids[order][first].tolist()))


def split_rate(pred: np.ndarray, true: np.ndarray, *, connectivity: int | None = None) -> float:
    """Return the fraction of touching true object pairs that the prediction keeps apart.

    A touching pair ``(a, b)`` (see :func:`touching_pairs`) is split when the predicted
    object covering most of ``a`` and the one covering most of ``b`` are two different
    objects (background covering most of either counts as a failure: the object is lost).

    Returns
    -------
    float
        In [0, 1]; NaN when the ground truth has no touching pairs.
    """
    p, t = _check_pair(pred, true)
    pairs = touching_pairs(t, connectivity=connectivity)
    if not len(pairs):
        return float("nan")
    dominant = _dominant_prediction(p, t)
    split = [
        dominant[a] != 0 and dominant[b] != 0 and dominant[a] != dominant[b] for a, b in pairs
    ]
    return float(np.mean(split))


def fragmentation(
    pred: np.ndarray, true: np.ndarray, *, min_overlap: float = 0.1
) -> tuple[float, float]:
    """Over- and under-segmentation rates of instance labels.

    Over-segmentation: the share of true objects of which at least two predicted objects
    each cover at least ``min_overlap`` of the true object's area (a nucleus shredded into
    pieces).  Under-segmentation: the share of predicted objects of which at least two
    true objects each fill at least ``min_overlap`` of the prediction (nuclei merged).

    Returns
    -------
    over, under : float
        In [0, 1]; 0 for empty inputs.
    """
    p, t = _check_pair(pred, true)
    tids, pids, counts = _pair_counts(t, p)
    t_area = np.bincount(t.ravel())
    p_area = np.bincount(p.ravel())
    inside = (tids > 0) & (pids > 0)
    tids, pids, counts = tids[inside], pids[inside], counts[inside]
    big_for_true = counts >= min_overlap * t_area[tids]
    big_for_pred = counts >= min_overlap * p_area[pids]
    over = np.bincount(tids[big_for_true], minlength=t_area.size)[1:]
    under = np.bincount(pids[big_for_pred], minlength=p_area.size)[1:]
    n_true = int((t_area[1:] > 0).sum())
    n_pred = int((p_area[1:] > 0).sum())
    return (
        _ratio(int((over >= 2).sum()), n_true, False),
        _ratio(int((under >= 2).sum()), n_pred, False),
    )
