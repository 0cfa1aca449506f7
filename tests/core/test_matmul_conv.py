"""Wide convolutions as matrix products: same weights, same numbers in tiles and whole images."""

import numpy as np
import pytest

from napari_tiled_unet import build_unet, segment
from napari_tiled_unet.core._keras import get_keras
from napari_tiled_unet.core.model import matmul_conv
from napari_tiled_unet.core.model.files import wrap_keras_model
from napari_tiled_unet.core.model.matmul_conv import with_matmul_convolutions
from tests.core.test_predict import whole_image_pass


@pytest.fixture
def narrow_threshold(monkeypatch):
    """Rewrite convolutions from 8 channels on, so that small networks have some."""
    monkeypatch.setattr(matmul_conv, "MIN_CHANNELS", 8)


def _rewritten(model):
    return [layer for layer in model.layers if type(layer).__name__ == "MatmulConv2D"]


def test_only_wide_valid_3x3_convolutions_are_rewritten_and_weights_are_shared(
    narrow_threshold,
):
    model = build_unet(depth=2, base_filters=4, seed=0)  # 4, 8, 16 channels
    fast = with_matmul_convolutions(model)
    rewritten = _rewritten(fast)
    # level 1 (8 channels: 4 -> 8 stays, 8 -> 8 goes), the bottleneck (8 -> 16, 16 -> 16),
    # level 1 up (16 -> 8, 8 -> 8)
    assert [(layer.conv.kernel.shape[2], layer.conv.kernel.shape[3]) for layer in rewritten] == [
        (8, 8),
        (8, 16),
        (16, 16),
        (16, 8),
        (8, 8),
    ]
    assert {id(v) for v in fast.weights} == {id(v) for v in model.weights}
    image = np.random.default_rng(0).random((2, 92, 108, 1), dtype=np.float32)
    np.testing.assert_allclose(fast(image), model(image), atol=1e-5)


def test_models_without_wide_convolutions_are_returned_as_they_are():
    model = build_unet(depth=2, base_filters=4, seed=0)
    assert with_matmul_convolutions(model) is model


def test_a_one_pixel_output_is_the_same_number_as_in_a_larger_output():
    # the paper network's width: there a one-row matrix product sums in another order
    keras = get_keras()
    inputs = keras.Input((None, None, 512))
    model = keras.Model(inputs, keras.layers.Conv2D(512, 3, activation="relu")(inputs))
    fast = with_matmul_convolutions(model)
    assert len(_rewritten(fast)) == 1
    x = np.random.default_rng(1).standard_normal((1, 12, 12, 512)).astype(np.float32)
    whole = np.asarray(fast(x))
    for top, left, size in [(4, 4, 3), (0, 7, 3), (2, 3, 4), (1, 1, 9)]:
        part = np.asarray(fast(x[:, top : top + size, left : left + size]))
        np.testing.assert_array_equal(part, whole[:, top : top + size - 2, left : left + size - 2])


def test_tiles_of_a_rewritten_network_equal_its_whole_image_pass(narrow_threshold):
    unet = wrap_keras_model(build_unet(depth=2, base_filters=8, seed=3))
    assert _rewritten(with_matmul_convolutions(unet.keras_model))
    image = np.random.default_rng(2).random((150, 131), dtype=np.float32)
    whole = segment(unet, image, normalize=None)
    assert whole.plan.n_tiles == 1
    for tile in (92, 108, 124):
        tiled = segment(unet, image, tile_size=tile, batch_size=1, normalize=None)
        assert tiled.plan.n_tiles > 1
        np.testing.assert_array_equal(tiled.probabilities, whole.probabilities)
    # batches of tiles: TensorFlow's own convolutions round differently by batch size
    batched = segment(unet, image, tile_size=108, batch_size=3, normalize=None)
    np.testing.assert_allclose(batched.probabilities, whole.probabilities, atol=1e-5)
    # and it is the network it was: float32 rounding apart
    plain = whole_image_pass(unet, image[..., None])  # the Keras model as built
    assert np.abs(plain - whole.probabilities).max() < 1e-5
