import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_tiled_unet import PercentileNormalizer, iter_segment, segment
from napari_tiled_unet.core.model.geometry import (
    halo,
    smallest_input_for_output,
    valid_input_sizes,
)
from tests.conftest import tiny_unet


def whole_image_pass(unet, plane):
    """Independent reference: mirror-pad the whole (Y, X, C) plane, one network call."""
    depth = unet.spec.depth
    h = halo(depth)
    height, width = plane.shape[:2]
    size_y, size_x = (smallest_input_for_output(n, depth) for n in (height, width))
    padded = np.pad(
        plane, ((h, size_y - height - h), (h, size_x - width - h), (0, 0)), mode="reflect"
    )
    out = np.asarray(unet.keras_model(padded[None].astype(np.float32), training=False))[0]
    return out[:height, :width]


def assert_equivalent(tiled, reference):
    assert np.abs(tiled - reference).max() <= 1e-3
    assert (tiled.argmax(-1) == reference.argmax(-1)).mean() >= 0.9999


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    depth=st.sampled_from([2, 3]),
    height=st.integers(1, 160),
    width=st.integers(1, 160),
    data=st.data(),
)
def test_tiled_equals_whole_image_pass(depth, height, width, data):
    unet = tiny_unet(depth, 4)
    tile = data.draw(st.sampled_from(valid_input_sizes(depth, minimum=40, maximum=260)))
    image = np.random.default_rng(height * 1000 + width).normal(size=(height, width))
    result = segment(unet, image.astype(np.float32), tile_size=tile, normalize=None)
    assert result.probabilities.shape == (height, width, 2)
    assert_equivalent(result.probabilities, whole_image_pass(unet, image[..., None]))


def test_batches_and_tile_sizes_agree(unet3):
    image = np.random.default_rng(1).random((333, 251), dtype=np.float32)
    reference = whole_image_pass(unet3, image[..., None])
    for tile, batch in [(92, 1), (92, 5), (140, 3), (None, None)]:
        result = segment(unet3, image, tile_size=tile, batch_size=batch, normalize=None)
        assert_equivalent(result.probabilities, reference)


def test_stack_axes_and_channels():
    unet = tiny_unet(2, 4, input_channels=2, num_classes=3)
    rng = np.random.default_rng(2)
    image = rng.random((2, 3, 50, 2, 41)).astype(np.float32)  # T Z Y C X
    result = segment(unet, image, axes="TZYCX", normalize=None)
    assert result.axes == "TZYX"
    assert result.probabilities.shape == (2, 3, 50, 41, 3)
    assert result.labels.shape == (2, 3, 50, 41) and result.labels.dtype == np.uint8
    plane = np.moveaxis(image[1, 2], 1, -1)  # Y C X -> Y X C
    assert_equivalent(result.probabilities[1, 2], whole_image_pass(unet, plane))
    np.testing.assert_array_equal(result.labels, result.probabilities.argmax(-1))


def test_unusual_axis_order_round_trips(unet2):
    image = np.random.default_rng(3).random((40, 3, 30)).astype(np.float32)  # Y Z X
    result = segment(unet2, image, axes="YZX", normalize=None)
    assert result.probabilities.shape == (40, 3, 30, 2)
    reference = whole_image_pass(unet2, image[:, 1, :, None])
    assert_equivalent(result.probabilities[:, 1], reference)


def test_percentile_normalisation_per_plane_and_per_stack(unet2):
    rng = np.random.default_rng(4)
    stack = np.stack([rng.random((40, 40)) * 10, rng.random((40, 40)) * 1000 + 50])
    per_plane = segment(unet2, stack.astype(np.uint16), axes="ZYX")
    scaled = segment(unet2, (stack * 3 + 7).astype(np.float64), axes="ZYX")
    # Percentile normalisation makes the result invariant to a gain and an offset.
    np.testing.assert_allclose(per_plane.probabilities[1], scaled.probabilities[1], atol=1e-2)
    per_stack = segment(unet2, stack, axes="ZYX", normalize=PercentileNormalizer(per="stack"))
    assert not np.allclose(per_stack.probabilities[0], per_plane.probabilities[0], atol=1e-3)
    norm = PercentileNormalizer(1, 99)
    lo, hi = norm.statistics(stack[0][..., None])
    manual = norm.apply(stack[0][..., None], lo, hi)
    expected = segment(unet2, manual[..., 0], normalize=None)
    got = segment(unet2, stack[0], normalize=norm)
    np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=1e-6)


def test_no_normalisation_feeds_data_unchanged(unet2):
    image = np.random.default_rng(5).integers(0, 255, (30, 30)).astype(np.uint8)
    result = segment(unet2, image, normalize=None)
    assert_equivalent(result.probabilities, whole_image_pass(unet2, image[..., None]))


def test_progress_events_and_cancel(unet2):
    image = np.random.default_rng(6).random((3, 90, 90), dtype=np.float32)
    events = list(_events(iter_segment(unet2, image, axes="ZYX", tile_size=60, batch_size=4)))
    n_tiles = events[0].n_tiles
    assert n_tiles > 4
    assert [e.plane for e in events if e.tiles_done == n_tiles] == [(0,), (1,), (2,)]
    assert events[-1].fraction == 1.0
    assert all(0 < a.fraction < b.fraction for a, b in zip(events, events[1:]))
    steps = iter_segment(unet2, image, axes="ZYX", tile_size=60, batch_size=4)
    first = next(steps)
    assert first.tiles_done == 4 and first.probabilities.shape[-1] == 2
    steps.close()  # cancelling at a yield stops cleanly
    with pytest.raises(StopIteration):
        next(steps)


def _events(steps):
    while True:
        try:
            yield next(steps)
        except StopIteration:
            return


def test_selected_planes_only(unet2):
    image = np.random.default_rng(7).random((4, 30, 30), dtype=np.float32)
    steps = iter_segment(unet2, image, axes="ZYX", planes=[(2,)])
    result = None
    while result is None:
        try:
            next(steps)
        except StopIteration as stop:
            result = stop.value
    assert result.probabilities[2].sum() > 0 and result.probabilities[[0, 1, 3]].sum() == 0


@pytest.mark.parametrize(
    "shape, axes, match",
    [
        ((20, 20, 3), None, "pass axes"),
        ((20, 20, 3), "YXC", "3 channel"),
        ((20, 20), "YXZ", "name 3 dimensions"),
        ((20, 20, 2), "YYX", "once each"),
        ((4, 20, 20), "ZXC", "Y and X"),
    ],
)
def test_axes_and_channel_errors(unet2, shape, axes, match):
    with pytest.raises(ValueError, match=match):
        segment(unet2, np.zeros(shape, np.float32), axes=axes)


def test_bad_model_and_normalize_arguments(unet2):
    with pytest.raises(TypeError, match="model must be"):
        segment(object(), np.zeros((10, 10)))
    with pytest.raises(ValueError, match="normalize must be"):
        segment(unet2, np.zeros((10, 10)), normalize="zscore")


def test_plane_functions_are_what_iter_segment_runs(unet3):
    from napari_tiled_unet.core.predict import iter_plane, normalized_plane, segment_plane
    from napari_tiled_unet.core.prepare import prepare

    image = (np.random.default_rng(8).random((2, 70, 90)) * 900).astype(np.uint16)
    whole = segment(unet3, image, axes="ZYX", tile_size=108, batch_size=3)
    job = prepare(unet3, image, axes="ZYX", tile_size=108, batch_size=3)
    assert job.plan == whole.plan and job.plane_shape == (2,)
    for z in range(2):
        plane = normalized_plane(job.canonical[z], job.normalizer)
        np.testing.assert_array_equal(
            segment_plane(unet3, plane, job.plan), whole.probabilities[z]
        )
        # Normalising each tile as it is cut gives the same bits as normalising the plane.
        raw = job.canonical[z]
        scale = job.normalizer.statistics(raw)
        per_tile = segment_plane(unet3, raw, job.plan, scale=scale)
        np.testing.assert_array_equal(per_tile, whole.probabilities[z])
    batches = list(iter_plane(unet3, plane, job.plan))
    assert sum(len(tiles) for tiles, _ in batches) == job.plan.n_tiles > 3
    assert batches[0][1].shape == (3, *job.plan.tile_out, 2)


def test_options_object_and_keywords_give_the_same_run(unet2):
    from napari_tiled_unet.core.options import SegmentOptions

    image = np.random.default_rng(3).random((2, 50, 60)).astype(np.float32)
    options = SegmentOptions(axes="ZYX", tile_size=76, batch_size=2)
    by_object = segment(unet2, image, options)
    by_keywords = segment(unet2, image, axes="ZYX", tile_size=76, batch_size=2)
    assert by_object.plan == by_keywords.plan and by_object.plan.batch_size == 2
    np.testing.assert_array_equal(by_object.probabilities, by_keywords.probabilities)
    # Keywords given with an options object replace its fields.
    replaced = segment(unet2, image, options, tile_size=None).plan
    assert replaced == segment(unet2, image, axes="ZYX", batch_size=2).plan != by_object.plan
    with pytest.raises(TypeError, match="tile_sise"):
        segment(unet2, image, options, tile_sise=76)


def test_a_plan_made_beforehand_is_the_plan_that_runs(unet2):
    from napari_tiled_unet.core.predict import drain, iter_segment
    from napari_tiled_unet.core.tiling import plan_tiles

    image = np.random.default_rng(4).random((50, 60)).astype(np.float32)
    plan = plan_tiles((50, 60), unet2.spec, tile_size=76).with_batch_size(1)
    events = list(iter_segment(unet2, image, plan=plan))
    assert len(events) == plan.n_tiles > 1  # one tile per network call, as planned
    result = drain(iter_segment(unet2, image, plan=plan))
    assert result.plan == plan
    whole = segment(unet2, image).probabilities
    np.testing.assert_allclose(result.probabilities, whole, atol=1e-5)
    with pytest.raises(ValueError, match="tile plan"):
        drain(iter_segment(unet2, image[:40], plan=plan))
