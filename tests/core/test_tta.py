import numpy as np
import pytest

from napari_tiled_unet import segment
from napari_tiled_unet.core.model.geometry import halo, smallest_input_for_output
from napari_tiled_unet.core.tta import TRANSFORMS, _forward, _inverse, average_over, parse_tta
from tests.conftest import tiny_unet


def test_transforms_are_the_eight_symmetries_of_the_square():
    x = np.arange(2 * 3 * 4 * 1).reshape(2, 3, 4, 1)
    images = {name: _forward(x, name) for name in TRANSFORMS}
    assert len({v.tobytes() + bytes(v.shape) for v in images.values()}) == 8
    for name, image in images.items():
        np.testing.assert_array_equal(_inverse(image, name), x)
    np.testing.assert_array_equal(images["transpose"], x.transpose(0, 2, 1, 3))
    np.testing.assert_array_equal(images["flip_x"], x[:, :, ::-1])
    np.testing.assert_array_equal(images["flip_y"], x[:, ::-1])


def test_tta_options():
    assert parse_tta(False) == () and parse_tta(None) == ()
    assert parse_tta(True) == tuple(TRANSFORMS) and len(parse_tta("all")) == 8
    assert parse_tta("flips") == ("identity", "flip_y", "flip_x", "rot180")
    assert parse_tta("identity, rot90") == ("identity", "rot90")
    with pytest.raises(ValueError, match="tta must be True, 'all', 'flips' or names"):
        parse_tta("mirror")


def test_average_of_an_equivariant_function_is_the_function():
    x = np.random.default_rng(0).random((2, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(
        average_over(lambda b: b * 2, x, tuple(TRANSFORMS)), 2 * x, rtol=1e-6
    )


def whole_image_tta(unet, plane, names):
    """Reference: the whole mirror-padded image, transformed, one pass, back, averaged.

    The padding is that of the plain whole-image pass (halo before, the rest after), so
    every transform sees the same pooling grid, as the tiles do.
    """
    depth = unet.spec.depth
    h = halo(depth)
    height, width = plane.shape[:2]
    size_y, size_x = (smallest_input_for_output(n, depth) for n in (height, width))
    padded = np.pad(
        plane, ((h, size_y - height - h), (h, size_x - width - h), (0, 0)), mode="reflect"
    )
    outs = []
    for name in names:
        turns, flip = TRANSFORMS[name]
        image = np.rot90(padded[::-1] if flip else padded, turns)[None].astype(np.float32)
        out = np.rot90(np.asarray(unet.keras_model(np.ascontiguousarray(image)))[0], -turns)
        outs.append((out[::-1] if flip else out)[:height, :width])
    return np.mean(outs, axis=0)


@pytest.mark.parametrize("tile, tta", [(92, True), (140, "flips"), (None, "rot90,transpose")])
def test_tiled_tta_equals_whole_image_tta(tile, tta):
    unet = tiny_unet(2, 4, num_classes=3)
    image = np.random.default_rng(4).random((131, 97), dtype=np.float32)
    result = segment(unet, image, tile_size=tile, tta=tta, normalize=None)
    reference = whole_image_tta(unet, image[..., None], parse_tta(tta))
    assert np.abs(result.probabilities - reference).max() <= 1e-5
    assert (result.labels == reference.argmax(-1)).all()
    plain = segment(unet, image, tile_size=tile, normalize=None)
    assert np.abs(plain.probabilities - result.probabilities).max() > 1e-3
