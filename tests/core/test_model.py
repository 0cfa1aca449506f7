import numpy as np
import pytest

from napari_tiled_unet import build_unet, output_size

PAPER_SHAPES = {
    "down1_conv1": 570,
    "down1_conv2": 568,
    "down1_pool": 284,
    "down2_conv1": 282,
    "down2_conv2": 280,
    "down2_pool": 140,
    "down3_conv1": 138,
    "down3_conv2": 136,
    "down3_pool": 68,
    "down4_conv1": 66,
    "down4_conv2": 64,
    "down4_pool": 32,
    "bottom_conv1": 30,
    "bottom_conv2": 28,
    "up4_upconv": 56,
    "up4_conv1": 54,
    "up4_conv2": 52,
    "up3_upconv": 104,
    "up3_conv1": 102,
    "up3_conv2": 100,
    "up2_upconv": 200,
    "up2_conv1": 198,
    "up2_conv2": 196,
    "up1_upconv": 392,
    "up1_conv1": 390,
    "up1_conv2": 388,
    "classifier": 388,
    "softmax": 388,
}


def test_paper_model_is_figure_1():
    model = build_unet(input_size=572)
    assert model.count_params() == 31_030_658
    for name, size in PAPER_SHAPES.items():
        assert tuple(model.get_layer(name).output.shape[1:3]) == (size, size), name
    assert model.get_layer("up1_concat").output.shape[-1] == 128
    assert model.get_layer("bottom_conv2").output.shape[-1] == 1024
    assert model.output.shape[-1] == 2
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert len(convs) == 19
    assert all(c.padding == "valid" for c in convs)
    assert all(c.activation.__name__ == "relu" for c in convs[:-1])


def test_fully_convolutional_and_softmax():
    model = build_unet(depth=2, base_filters=4, num_classes=3, input_channels=2, seed=3)
    rng = np.random.default_rng(0)
    for h, w in [(44, 44), (60, 92), (124, 44)]:
        out = np.asarray(model(rng.random((2, h, w, 2), dtype=np.float32)))
        assert out.shape == (2, output_size(h, 2), output_size(w, 2), 3)
        np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


def test_options_change_the_network():
    narrow = build_unet(base_filters=8, depth=3, input_channels=3, num_classes=4)
    assert narrow.get_layer("down1_conv1").filters == 8
    assert narrow.get_layer("bottom_conv1").filters == 64
    assert narrow.inputs[0].shape[-1] == 3
    assert narrow.output.shape[-1] == 4
    with_dropout = build_unet(base_filters=8, depth=3, dropout=0.5)
    assert with_dropout.get_layer("bottom_dropout").rate == 0.5
    assert with_dropout.count_params() == build_unet(base_filters=8, depth=3).count_params()


def test_seeded_paper_initialiser_is_reproducible_and_he_scaled():
    a = build_unet(depth=1, base_filters=16, seed=7).get_layer("down1_conv2").get_weights()[0]
    b = build_unet(depth=1, base_filters=16, seed=7).get_layer("down1_conv2").get_weights()[0]
    np.testing.assert_array_equal(a, b)
    assert abs(a.std() - np.sqrt(2 / (9 * 16))) < 0.1 * np.sqrt(2 / (9 * 16))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"depth": -1}, "depth"),
        ({"base_filters": 0}, "base_filters"),
        ({"dropout": 1.5}, "dropout"),
        ({"input_size": 570}, "not valid"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_unet(**kwargs)
