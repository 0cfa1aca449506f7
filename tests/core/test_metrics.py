"""Instance matching, AP, foreground IoU and touching-pair splitting on hand-made labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_tiled_unet.core.metrics import (
    AP_THRESHOLDS,
    foreground_iou,
    match_instances,
    mean_average_precision,
    split_rate,
    touching_pairs,
)


def _two_touching() -> np.ndarray:
    """Two 4x4 objects sharing an edge (columns 2..5 and 6..9), one apart object."""
    labels = np.zeros((12, 16), np.int32)
    labels[2:6, 2:6] = 3
    labels[2:6, 6:10] = 7
    labels[8:11, 12:15] = 5
    return labels


def test_perfect_prediction_scores_one_with_any_numbering() -> None:
    true = _two_touching()
    pred = np.select([true == 3, true == 7, true == 5], [10, 20, 30], 0)
    match = match_instances(pred, true)
    assert (match.tp, match.fp, match.fn) == (3, 0, 0)
    assert match.f1 == match.precision == match.recall == match.average_precision == 1.0
    assert sorted(map(tuple, match.pairs.tolist())) == [(3, 10), (5, 30), (7, 20)]
    np.testing.assert_allclose(match.ious, 1.0)
    assert mean_average_precision(pred, true) == 1.0


def test_merged_pair_is_one_false_positive_and_two_misses() -> None:
    true = _two_touching()
    pred = (true > 0).astype(np.int32)  # everything one object
    pred[true == 5] = 2
    match = match_instances(pred, true)
    # merged object: IoU 16/32 = 0.5 with each of 3 and 7 -> one of them matches at 0.5
    assert (match.tp, match.fp, match.fn) == (2, 0, 1)
    assert match.f1 == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))
    at_06 = match_instances(pred, true, threshold=0.6)
    assert (at_06.tp, at_06.fp, at_06.fn) == (1, 1, 2)
    assert at_06.average_precision == pytest.approx(1 / 4)
    assert split_rate(pred, true) == 0.0


def test_tie_at_half_is_matched_one_to_one() -> None:
    true = np.zeros((4, 8), np.int32)
    true[:, :] = 1
    pred = np.zeros_like(true)
    pred[:, :4], pred[:, 4:] = 1, 2  # each half has IoU exactly 0.5 with the object
    match = match_instances(pred, true, threshold=0.5)
    assert (match.tp, match.fp, match.fn) == (1, 1, 0)
    assert match.ious.tolist() == [0.5]


def test_iou_threshold_decides_a_shifted_object() -> None:
    true = np.zeros((10, 10), np.int32)
    true[0:5, 0:4] = 1
    pred = np.zeros_like(true)
    pred[0:5, 1:5] = 1  # 15 overlap / 25 union = 0.6
    assert match_instances(pred, true, threshold=0.6).tp == 1
    assert match_instances(pred, true, threshold=0.65).tp == 0
    expected_ap = np.mean([1.0 if th <= 0.6 else 0.0 for th in AP_THRESHOLDS])
    assert mean_average_precision(pred, true) == pytest.approx(expected_ap)
    assert AP_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def test_empty_images() -> None:
    empty = np.zeros((5, 5), np.int32)
    one = empty.copy()
    one[1:3, 1:3] = 4
    assert match_instances(empty, empty).f1 == 1.0
    missed = match_instances(empty, one)
    assert (missed.tp, missed.fn, missed.precision, missed.recall) == (0, 1, 0.0, 0.0)
    assert foreground_iou(empty, empty) == 1.0
    assert foreground_iou(one, empty) == 0.0


def test_foreground_iou_hand_case() -> None:
    true = _two_touching()
    pred = np.zeros_like(true)
    pred[2:6, 2:8] = 1  # 24 px, all inside the 32 px of objects 3 and 7
    assert foreground_iou(pred, true) == pytest.approx(24 / (32 + 9))


def test_touching_pairs_full_and_face_connectivity() -> None:
    labels = np.zeros((6, 6), np.int32)
    labels[0:2, 0:2] = 1
    labels[2:4, 2:4] = 2  # touches 1 only diagonally
    labels[2:4, 4:6] = 9  # shares an edge with 2
    assert touching_pairs(labels).tolist() == [[1, 2], [2, 9]]
    assert touching_pairs(labels, connectivity=1).tolist() == [[2, 9]]
    assert touching_pairs(np.zeros((3, 3), np.int32)).shape == (0, 2)


def test_split_rate_counts_kept_apart_lost_and_merged_pairs() -> None:
    true = _two_touching()
    assert split_rate(true * 2, true) == 1.0
    lost = true.copy()
    lost[true == 7] = 0
    assert split_rate(lost, true) == 0.0  # object 7 lost: the pair is not split
    assert math.isnan(split_rate(true, np.where(true == 5, 5, 0)))


def test_errors_are_one_line() -> None:
    with pytest.raises(ValueError, match="shape"):
        match_instances(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(ValueError, match="integers"):
        foreground_iou(np.zeros((3, 3)), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="threshold"):
        match_instances(np.zeros((3, 3), int), np.zeros((3, 3), int), threshold=0)


@settings(max_examples=30, deadline=None)
@given(arrays(np.int32, (12, 12), elements=st.integers(0, 5)), st.permutations(range(1, 6)))
def test_scores_do_not_depend_on_label_numbers(labels: np.ndarray, perm: list[int]) -> None:
    renamed = np.concatenate([[0], perm])[labels]
    match = match_instances(renamed, labels)
    n = len(np.unique(labels[labels > 0]))
    assert (match.tp, match.fp, match.fn) == (n, 0, 0)
    rate = split_rate(renamed, labels)
    assert np.isnan(rate) if not len(touching_pairs(labels)) else rate == 1.0
