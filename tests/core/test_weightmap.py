"""The paper's weight map: hand-computed values, class balance, ignore mask, exact d1/d2."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_tiled_unet.core.train.weightmap import (
    border_distances,
    compute_class_weights,
    weight_map,
)

W0, SIGMA = 10.0, 5.0


def _two_squares() -> np.ndarray:
    """Two 10x10 squares on 50x50, 6 background columns (20..25) between them."""
    labels = np.zeros((50, 50), dtype=np.int32)
    labels[10:20, 10:20] = 4
    labels[10:20, 26:36] = 9
    return labels


def _border_term(d1: float, d2: float) -> float:
    return W0 * np.exp(-((d1 + d2) ** 2) / (2 * SIGMA**2))


def test_background_pixels_between_two_squares_match_hand_computation() -> None:
    labels = _two_squares()
    w = weight_map(labels, w0=W0, sigma=SIGMA)
    w_bg = 2500 / (2 * 2300)  # N / (K * N_background)
    assert w.dtype == np.float32 and w.shape == labels.shape
    # In the gap, level with the squares: 3 px to the left one, 4 px to the right one.
    assert w[15, 22] == pytest.approx(w_bg + _border_term(3.0, 4.0), rel=1e-6)
    # Above the gap: Euclidean distances to the nearest corners.
    assert w[5, 22] == pytest.approx(w_bg + _border_term(np.sqrt(34), np.sqrt(41)), rel=1e-6)


def test_border_term_only_on_background_by_default() -> None:
    labels = _two_squares()
    w_fg = 2500 / (2 * 200)
    inside = weight_map(labels, w0=W0, sigma=SIGMA)
    everywhere = weight_map(labels, w0=W0, sigma=SIGMA, background_only=False)
    assert inside[15, 19] == pytest.approx(w_fg, rel=1e-6)
    # Object pixel on the facing edge: d1 = 0, d2 = 7 to the other square.
    assert everywhere[15, 19] == pytest.approx(w_fg + _border_term(0.0, 7.0), rel=1e-6)
    bg = labels == 0
    np.testing.assert_array_equal(inside[bg], everywhere[bg])


def test_single_object_has_no_border_term() -> None:
    labels = np.zeros((30, 30), dtype=np.uint8)
    labels[5:15, 5:15] = 1
    w = weight_map(labels, w0=W0, sigma=SIGMA)
    expected = np.where(labels > 0, 900 / (2 * 100), 900 / (2 * 800)).astype(np.float32)
    np.testing.assert_allclose(w, expected, rtol=1e-6)


def test_balanced_class_weights_give_each_class_the_same_total() -> None:
    labels = _two_squares()
    for n_classes in (2, 3):
        w = weight_map(labels, w0=0.0, n_classes=n_classes)
        assert w.mean() == pytest.approx(1.0, rel=1e-6)
        totals = [w[w == value].sum() for value in np.unique(w)]
        assert len(totals) == n_classes
        np.testing.assert_allclose(totals, totals[0], rtol=1e-5)


def test_unbalanced_and_explicit_class_weights() -> None:
    labels = _two_squares()
    np.testing.assert_array_equal(weight_map(labels, w0=0.0, class_weights=None), 1.0)
    w = weight_map(labels, w0=0.0, class_weights=(0.5, 3.0))
    np.testing.assert_array_equal(w, np.where(labels > 0, 3.0, 0.5).astype(np.float32))


def test_ignored_pixels_are_zero_and_not_counted() -> None:
    labels = _two_squares()
    ignore = np.zeros(labels.shape, dtype=bool)
    ignore[30:, :] = True  # 1000 background pixels not annotated
    w = weight_map(labels, w0=W0, sigma=SIGMA, ignore=ignore)
    assert np.all(w[ignore] == 0.0)
    assert w[45, 45] == 0.0
    w_bg, w_fg = 1500 / (2 * 1300), 1500 / (2 * 200)
    assert w[15, 15] == pytest.approx(w_fg, rel=1e-6)
    assert w[15, 22] == pytest.approx(w_bg + _border_term(3.0, 4.0), rel=1e-6)


def test_absent_class_gets_zero_weight() -> None:
    weights = compute_class_weights(np.zeros((3, 3), dtype=np.uint8), 3)
    np.testing.assert_array_equal(weights, [1.0, 0.0, 0.0])


def _brute_force(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = [i for i in np.unique(labels) if i]
    distances = np.sort(np.stack([ndi.distance_transform_edt(labels != i) for i in ids]), axis=0)
    return distances[0], distances[1]


@pytest.mark.parametrize("seed", range(8))
def test_distances_are_exact_for_random_objects(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(20, 70, size=2))
    labels = np.zeros(shape, dtype=np.int32)
    for label in rng.choice(1000, size=12, replace=False) + 1:
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.integers(0, 5)
        labels[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1] = label
    d1, d2 = border_distances(labels)
    b1, b2 = _brute_force(labels)
    np.testing.assert_allclose(d1, b1)
    np.testing.assert_allclose(d2, b2)


def test_distances_without_background() -> None:
    labels = np.ones((4, 10), dtype=np.int32)
    labels[:, 6:] = 2
    d1, d2 = border_distances(labels)
    np.testing.assert_array_equal(d1, 0.0)
    np.testing.assert_array_equal(d2[0], [6, 5, 4, 3, 2, 1, 1, 2, 3, 4])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": 0.0}, "sigma > 0"),
        ({"w0": -1.0}, "w0 >= 0"),
        ({"ignore": np.zeros((3, 3), dtype=bool)}, "ignore mask shape"),
        ({"class_weights": (1.0, 2.0, 3.0)}, "2 finite values"),
        ({"class_weights": "inverse"}, "'balanced'"),
    ],
)
def test_invalid_options_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        weight_map(_two_squares(), **kwargs)


def test_float_labels_and_single_object_distances_raise() -> None:
    with pytest.raises(ValueError, match="integer dtype"):
        weight_map(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="at least two objects"):
        border_distances(np.ones((5, 5), dtype=np.int32))
