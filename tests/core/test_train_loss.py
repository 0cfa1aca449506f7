"""Pixel-weighted cross-entropy and foreground IoU against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_tiled_unet.core.train.loss import (
    crop_to_output,
    foreground_iou,
    iou_counts,
    weighted_cross_entropy,
)


def _probs() -> np.ndarray:
    """One 1x3 tile, 2 classes: p(class 0) = 0.8, 0.3, 0.5."""
    return np.array([[[[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]]]], dtype=np.float32)


def test_weighted_mean_matches_hand_computation() -> None:
    targets = np.array([[[0, 1, 1]]])
    weights = np.array([[[1.0, 3.0, 0.5]]], dtype=np.float32)
    loss = float(weighted_cross_entropy(_probs(), targets, weights))
    expected = (1 * -math.log(0.8) + 3 * -math.log(0.7) + 0.5 * -math.log(0.5)) / 4.5
    assert loss == pytest.approx(expected, rel=1e-6)


def test_without_weights_is_the_plain_mean() -> None:
    loss = float(weighted_cross_entropy(_probs(), np.array([[[0, 1, 0]]])))
    assert loss == pytest.approx(-(math.log(0.8) + math.log(0.7) + math.log(0.5)) / 3, rel=1e-6)


def test_zero_weight_pixels_contribute_nothing() -> None:
    weights = np.array([[[1.0, 2.0, 0.0]]], dtype=np.float32)
    base = float(weighted_cross_entropy(_probs(), np.array([[[0, 1, 0]]]), weights))
    # Change the ignored pixel's prediction to (nearly) certain and wrong, and its target.
    probs = _probs()
    probs[0, 0, 2] = [1e-9, 1.0]
    changed = float(weighted_cross_entropy(probs, np.array([[[0, 1, 0]]]), weights))
    assert changed == pytest.approx(base, rel=1e-7)
    assert base == pytest.approx((-math.log(0.8) - 2 * math.log(0.7)) / 3, rel=1e-6)


def test_all_zero_weights_give_zero_and_scale_does_not_matter() -> None:
    targets = np.array([[[0, 1, 1]]])
    zero = np.zeros((1, 1, 3), np.float32)
    assert float(weighted_cross_entropy(_probs(), targets, zero)) == 0.0
    w = np.array([[[1.0, 2.0, 3.0]]], dtype=np.float32)
    assert float(weighted_cross_entropy(_probs(), targets, 7 * w)) == pytest.approx(
        float(weighted_cross_entropy(_probs(), targets, w)), rel=1e-6
    )


def test_one_hot_targets_equal_class_indices() -> None:
    targets = np.array([[[1, 0, 1]]])
    one_hot = np.eye(2, dtype=np.float32)[targets]
    weights = np.array([[[2.0, 1.0, 1.0]]], dtype=np.float32)
    assert float(weighted_cross_entropy(_probs(), one_hot, weights)) == pytest.approx(
        float(weighted_cross_entropy(_probs(), targets, weights)), rel=1e-6
    )


def test_targets_and_weights_larger_than_the_output_are_centre_cropped() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=(2, 4, 4)).astype(np.float32)
    targets = rng.integers(0, 3, (2, 4, 4))
    weights = rng.random((2, 4, 4)).astype(np.float32)
    big_t = rng.integers(0, 3, (2, 10, 8))  # random outside the centre: must not matter
    big_w = rng.random((2, 10, 8)).astype(np.float32) * 100
    big_t[:, 3:7, 2:6], big_w[:, 3:7, 2:6] = targets, weights
    assert float(weighted_cross_entropy(probs, big_t, big_w)) == pytest.approx(
        float(weighted_cross_entropy(probs, targets, weights)), rel=1e-6
    )


def test_confident_zero_probability_is_clipped_not_infinite() -> None:
    probs = np.array([[[[1.0, 0.0]]]], dtype=np.float32)
    loss = float(weighted_cross_entropy(probs, np.array([[[1]]])))
    assert loss == pytest.approx(-math.log(1e-7), rel=1e-4)


def test_odd_margin_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="even margin"):
        weighted_cross_entropy(_probs(), np.zeros((1, 2, 4), int))
    with pytest.raises(ValueError, match="even margin"):
        crop_to_output(np.zeros((5, 5)), (2, 2), batched=False)


def test_iou_counts_three_classes_foreground_is_interior_and_border() -> None:
    pred = np.array([[0, 1, 2, 2], [0, 0, 1, 0]])
    true = np.array([[0, 2, 1, 0], [1, 0, 1, 0]])
    # predicted fg: (0,1) (0,2) (0,3) (1,2); true fg: (0,1) (0,2) (1,0) (1,2)
    assert iou_counts(pred, true) == (3, 5)
    assert foreground_iou(pred, true) == pytest.approx(0.6)
    probs = np.eye(3, dtype=np.float32)[pred]
    assert iou_counts(probs, true) == (3, 5)


def test_iou_skips_zero_weight_pixels_and_empty_is_perfect() -> None:
    pred = np.array([[1, 1], [0, 0]])
    true = np.array([[1, 0], [1, 0]])
    weights = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert iou_counts(pred, true, weights) == (1, 1)
    assert foreground_iou(np.zeros((2, 2), int), np.zeros((2, 2), int)) == 1.0
