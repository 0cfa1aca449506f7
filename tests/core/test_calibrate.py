"""Class-bias calibration: a logit shift baked into the classifier's bias."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import tiny_unet


def test_shift_equals_reweighted_probabilities_and_is_recorded() -> None:
    from napari_tiled_unet import segment
    from napari_tiled_unet.core.train.calibrate import shift_class_bias

    model = tiny_unet(2, 4, num_classes=3)
    image = np.random.default_rng(0).random((48, 40)).astype(np.float32)
    before = np.asarray(segment(model, image, object_size="none").probabilities)
    offsets = (0.5, -0.2, -1.0)
    shifted = shift_class_bias(model, offsets)
    after = np.asarray(segment(shifted, image, object_size="none").probabilities)
    expected = before * np.exp(offsets)
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(after, expected, atol=2e-5)
    assert shifted.metadata.training["class_bias_shift"] == pytest.approx(offsets)
    # the original is untouched
    again = np.asarray(segment(model, image, object_size="none").probabilities)
    np.testing.assert_array_equal(again, before)
    with pytest.raises(ValueError, match="one offset per class"):
        shift_class_bias(model, (1.0, 2.0))


def test_class_balance_weights_follow_the_class_frequencies() -> None:
    from napari_tiled_unet.core.train.calibrate import class_balance_weights

    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 2:8] = 1  # 36 px: 16 interior, 20 border
    weights = class_balance_weights([labels], num_classes=3)
    counts = np.array([400 - 36, 16, 20])
    np.testing.assert_allclose(weights, 400 / (3 * counts))


def test_calibration_picks_the_alpha_that_removes_a_border_spill() -> None:
    """A model whose border spills 3 px outwards is corrected to the true outlines."""
    from napari_tiled_unet.core.train import calibrate

    truth = np.zeros((64, 64), np.int32)
    for k, (y, x) in enumerate([(14, 14), (14, 44), (44, 30)], start=1):
        yy, xx = np.ogrid[:64, :64]
        truth[(yy - y) ** 2 + (xx - x) ** 2 <= 16] = k
    from scipy import ndimage as ndi

    from napari_tiled_unet.core.train.targets import instance_to_classes

    classes = instance_to_classes(truth, n_classes=3)
    spill = ndi.binary_dilation(truth > 0, iterations=3) & (truth == 0)
    # Probabilities of a biased model: a ring outside each object says "border" by a
    # small margin; a shift towards background by log(2) turns it back.
    probs = np.full((64, 64, 3), 0.05, np.float32)
    probs[classes == 0, 0] = 0.9
    probs[classes == 1, 1] = 0.9
    probs[classes == 2, 2] = 0.9
    probs[spill] = (0.45, 0.05, 0.5)
    weights = np.array([0.5, 1.0, 2.0])
    scores = {a: calibrate._shifted_score(probs, truth, -a * np.log(weights)) for a in (0.0, 1.0)}
    assert scores[1.0] > 0.5
    assert scores[0.0] < scores[1.0]
