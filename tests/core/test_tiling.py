import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_tiled_unet.core.tiling import (
    NetworkSpec,
    activation_bytes,
    axis_origins,
    cut_tile,
    plan_tiles,
    reflect_indices,
    tile_flops,
)


@given(st.integers(1, 40), st.integers(0, 90))
def test_reflect_indices_match_numpy_pad(size, pad):
    data = np.arange(size)
    expected = np.pad(data, pad, mode="reflect") if size > 1 else np.zeros(size + 2 * pad)
    got = data[reflect_indices(np.arange(-pad, size + pad), size)]
    np.testing.assert_array_equal(got, expected)


@given(st.integers(1, 3000), st.sampled_from([4, 20, 36, 388, 1028]), st.sampled_from([4, 16]))
def test_axis_origins_cover_and_align(size, tile_out, step):
    if tile_out < step and tile_out < size:
        with pytest.raises(ValueError):
            axis_origins(size, tile_out, step)
        return
    origins = axis_origins(size, tile_out, step)
    assert origins[0] == 0
    assert all(o % step == 0 for o in origins)
    assert origins[-1] + tile_out >= size
    assert all(b - a <= tile_out and b > a for a, b in zip(origins, origins[1:]))


def test_owned_regions_partition_the_image():
    plan = plan_tiles((1000, 700), NetworkSpec(), tile_size=572)
    hits = np.zeros((1000, 700), int)
    for tile in plan.tiles():
        hits[tile.owned] += 1
        assert tile.input_start == (tile.output_start[0] - 92, tile.output_start[1] - 92)
    assert (hits == 1).all()


def test_automatic_tiles_follow_the_memory_budget():
    spec = NetworkSpec()
    small = plan_tiles((4000, 4000), spec, memory_budget=300 * 2**20)
    large = plan_tiles((4000, 4000), spec, memory_budget=3 * 2**30)
    assert small.tile_in[0] < large.tile_in[0]
    assert activation_bytes(spec, small.tile_in) <= 300 * 2**20
    assert small.memory_per_batch <= 300 * 2**20
    assert large.n_tiles < small.n_tiles


def test_tile_flops_count_the_network_layers():
    from tests.conftest import tiny_unet

    unet = tiny_unet(3, 8, num_classes=3)
    tile = (124, 108)
    keras_model = unet.keras_model
    counted = 0.0
    for layer in keras_model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        macs_per_pixel = int(np.prod(kernel.shape))  # kh * kw * c_in * c_out
        # A stride-2 2x2 up-convolution applies its whole kernel once per input pixel.
        transposed = type(layer).__name__ == "Conv2DTranspose"
        counted += 2 * macs_per_pixel * _pixels(keras_model, layer, tile, inp=transposed)
    assert tile_flops(unet.spec, tile) == pytest.approx(counted, rel=1e-9)


def _pixels(keras_model, layer, tile, inp=False):
    """Y * X of a layer's output (or input) for a ``tile`` input, through a sub-model."""
    import keras

    tensor = layer.input if inp else layer.output
    probe = keras.Model(keras_model.inputs, tensor)
    return int(np.prod(probe(np.zeros((1, *tile, 1), np.float32)).shape[1:3]))


def test_automatic_tiles_do_the_least_work_in_calls_of_moderate_size():
    spec = NetworkSpec()  # the paper's network
    one = plan_tiles((1024, 1024), spec, memory_budget="8GB")
    assert one.n_tiles == 1  # one call covers it: no halo computed twice
    # A large budget does not make huge calls, which TensorFlow's CPU kernels run slowly:
    # 2048 px is covered by 2 x 2 tiles just large enough, not one 4 GiB call.
    big = plan_tiles((2048, 2048), spec, memory_budget="8GB")
    assert big.tile_out[0] >= 1024 and big.n_tiles == 4
    assert big.memory_per_batch <= 2 * 2**30

    # ... and of the tiles that fit, none covers the image with less work.
    def work(plan):
        return plan.n_tiles * tile_flops(spec, plan.tile_in)

    for size in range(big.tile_in[0] - 160, big.tile_in[0], 16):
        other = plan_tiles((2048, 2048), spec, tile_size=size)
        assert work(other) > work(big)


def test_small_images_use_one_covering_tile():
    plan = plan_tiles((37, 5), NetworkSpec())
    assert plan.n_tiles == 1
    assert plan.tile_out[0] >= 37 and plan.tile_out[1] >= 5


def test_explicit_tile_size_is_rounded_with_a_warning():
    with pytest.warns(UserWarning, match="600.*604"):
        plan = plan_tiles((2000, 2000), NetworkSpec(), tile_size=600)
    assert plan.tile_in == (604, 604)


def test_fixed_input_models_fix_the_tile():
    plan = plan_tiles((1024, 1024), NetworkSpec(fixed_input_size=(572, 572)), tile_size=300)
    assert plan.tile_in == (572, 572)
    assert plan.origins[0] == (0, 384, 640)


def test_cut_tile_mirrors_the_border():
    plane = np.arange(30 * 20, dtype=np.float32).reshape(30, 20, 1)
    plan = plan_tiles((30, 20), NetworkSpec(depth=1, base_filters=2), tile_size=20)
    tile = next(plan.tiles())
    cut = cut_tile(plane, tile, plan)
    padded = np.pad(plane[..., 0], plan.halo, mode="reflect")
    np.testing.assert_array_equal(cut[..., 0], padded[: plan.tile_in[0], : plan.tile_in[1]])


def test_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        plan_tiles((0, 10), NetworkSpec())


@settings(max_examples=30, deadline=None)
@given(st.integers(200, 3000), st.integers(200, 3000))
def test_memory_estimate_grows_with_tiles(a, b):
    spec = NetworkSpec()
    sa = 188 + (a - 188) // 16 * 16
    sb = 188 + (b - 188) // 16 * 16
    if sa < sb:
        assert activation_bytes(spec, (sa, sa)) < activation_bytes(spec, (sb, sb))
