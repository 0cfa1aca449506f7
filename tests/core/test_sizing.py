"""Object size: the estimator, resampling to the model's scale, and its use in every path."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import tifffile

from napari_tiled_unet import segment
from napari_tiled_unet.core.model.files import UNetModel, save_model
from napari_tiled_unet.core.sizing import (
    estimate_object_size,
    measure_object_size,
    plan_rescale,
    resize,
    scaled_shape,
)
from napari_tiled_unet.core.train.synthetic import NucleiStyle, synthetic_nuclei
from tests.conftest import tiny_unet


def sized(size: float | None, depth: int = 2) -> UNetModel:
    """A tiny 3-class U-Net that says it was trained on objects of ``size`` px."""
    unet = tiny_unet(depth, 4, num_classes=3)
    return UNetModel(unet.keras_model, replace(unet.metadata, object_size=size))


@pytest.mark.parametrize("diameter", [8, 12, 16, 24, 32, 48, 64, 90, 120])
def test_estimate_is_within_20_percent_on_generated_nuclei(diameter: float) -> None:
    rng = np.random.default_rng(diameter)
    side = max(256, int(diameter * 10))
    image, labels = synthetic_nuclei((side, side), diameter, rng=rng, style=NucleiStyle())
    # The generator's diameter is what the image shows; the labels of nuclei lying under
    # others are cut, so their median is a little smaller.
    assert measure_object_size(labels) == pytest.approx(diameter, rel=0.2)
    assert estimate_object_size(image) == pytest.approx(diameter, rel=0.2)


@pytest.mark.parametrize("factor", [0.5, 1.0, 2.0, 3.0])
def test_estimate_on_the_real_sample_rescaled(factor: float) -> None:
    from napari_tiled_unet.data import nuclei2d

    image, labels = nuclei2d()
    shape = scaled_shape(labels.shape, factor)
    image = resize(image, shape)
    labels = resize(labels, shape, order=0).astype(np.int32)
    assert estimate_object_size(image) == pytest.approx(measure_object_size(labels), rel=0.2)


def test_estimate_ignores_nan_and_says_none_for_blank_images() -> None:
    image, labels = synthetic_nuclei((256, 256), 20, rng=np.random.default_rng(0))
    image[10, 10] = np.nan
    assert estimate_object_size(image) == pytest.approx(measure_object_size(labels), rel=0.2)
    assert estimate_object_size(np.zeros((64, 64))) is None
    assert estimate_object_size(np.full((64, 64), np.nan)) is None
    with pytest.raises(ValueError, match="2D plane"):
        estimate_object_size(np.zeros((4, 64, 64)))


def test_measure_object_size_and_resize() -> None:
    labels = np.zeros((50, 50), np.int32)
    labels[:10, :10] = 1  # 100 px: 11.28 px across
    labels[20:40, 20:40] = 2
    labels[45:50, 45:50] = 3
    assert measure_object_size(labels) == pytest.approx(2 * np.sqrt(100 / np.pi))
    assert measure_object_size(np.zeros((4, 4), np.int32)) is None
    small = resize(labels, (25, 25), order=0)
    assert set(np.unique(small)) <= {0, 1, 2, 3}  # nearest neighbour invents no labels
    image = np.random.default_rng(0).random((40, 30, 2)).astype(np.float32)
    assert resize(image, (20, 15)).shape == (20, 15, 2)
    assert resize(image, (40, 30)) is not None
    np.testing.assert_allclose(resize(np.ones((7, 9)), (20, 3)), 1.0, rtol=1e-6)


def test_plan_rescale_rules_and_errors() -> None:
    never = lambda: pytest.fail("must not estimate")  # noqa: E731
    assert plan_rescale(None, None, never).factor == 1.0  # the model records no size
    assert plan_rescale("none", 20.0, never).factor == 1.0
    given = plan_rescale(40, 20.0, never)
    assert given.factor == 0.5 and not given.estimated
    assert given.describe() == "objects 40 px -> image scaled x0.50"
    assert plan_rescale(20.5, 20.0, never).factor == 1.0  # within 5 %: not resampled
    auto = plan_rescale(None, 20.0, lambda: [np.zeros((32, 32))])
    assert auto.estimated and auto.factor == 1.0 and auto.object_size is None
    with pytest.raises(ValueError, match="does not record the object size"):
        plan_rescale(30, None, never)
    with pytest.raises(ValueError, match="diameter > 0"):
        plan_rescale(-3, 20.0, never)
    with pytest.raises(ValueError, match="'auto', 'none' or a diameter"):
        plan_rescale("big", 20.0, never)
    with pytest.warns(UserWarning, match="too far"):
        assert plan_rescale(1000, 20.0, never).factor == 0.05
    # small objects are enlarged to 0.9 of the model's size, never shrunk for it
    assert plan_rescale(10, 20.0, never).factor == pytest.approx(1.8)
    assert plan_rescale(19, 20.0, never).factor == 1.0
    with pytest.warns(UserWarning, match="too far"):
        assert plan_rescale(2, 20.0, never).factor == 4.0


def test_segment_resamples_to_the_model_scale_exactly_and_back() -> None:
    image, _ = synthetic_nuclei((150, 130), 40, rng=np.random.default_rng(1))
    model = sized(20.0)
    result = segment(model, image, object_size=40)
    assert result.rescale.factor == 0.5 and result.plan.shape == (75, 65)
    assert result.probabilities.shape == (150, 130, 3) and result.labels.shape == (150, 130)
    np.testing.assert_allclose(result.probabilities.sum(-1), 1.0, atol=1e-5)
    # The overlap-tile engine stays exact on the model's grid: any tile size, same numbers.
    tiled = segment(model, image, object_size=40, tile_size=44)
    assert tiled.plan.n_tiles > 1
    np.testing.assert_allclose(tiled.probabilities, result.probabilities, atol=1e-5)
    # ... and equals resampling by hand, one pass at the model scale, resampling back.
    from napari_tiled_unet.core.normalize import PercentileNormalizer

    norm = PercentileNormalizer()
    scaled = resize(norm.apply(image[..., None], *norm.statistics(image[..., None])), (75, 65))
    by_hand = segment(model, scaled, axes="YXC", normalize=None, object_size="none")
    np.testing.assert_allclose(
        resize(by_hand.probabilities, (150, 130)), result.probabilities, atol=1e-5
    )


def test_auto_is_the_default_for_models_that_record_a_size() -> None:
    image, labels = synthetic_nuclei((200, 200), 40, rng=np.random.default_rng(2))
    result = segment(sized(20.0), image)
    assert result.rescale.estimated
    assert result.rescale.object_size == pytest.approx(measure_object_size(labels), rel=0.2)
    assert result.rescale.describe().startswith("objects ~")
    plain = segment(sized(None), image)
    assert plain.rescale.factor == 1.0 and plain.plan.shape == (200, 200)


def test_stacks_lazy_and_batch_give_the_in_memory_result(tmp_path) -> None:
    from napari_tiled_unet.batch.run import run_batch
    from napari_tiled_unet.core.outputs import instances_of

    rng = np.random.default_rng(3)
    stack = np.stack([synthetic_nuclei((120, 100), 36, rng=rng)[0] for _ in range(2)])
    model = sized(18.0)
    memory = segment(model, stack, axes="ZYX", object_size=36)
    assert memory.probabilities.shape == (2, 120, 100, 3)
    lazy = segment(model, stack, axes="ZYX", object_size=36, lazy=True)
    np.testing.assert_allclose(lazy.probabilities.compute(), memory.probabilities, atol=1e-6)
    path = save_model(model, tmp_path / "m.keras")
    source = tmp_path / "in" / "stack.tif"
    source.parent.mkdir()
    tifffile.imwrite(
        source,
        stack.astype(np.float32),
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "ZYX", "spacing": 1.5, "unit": "um"},
    )
    summary = run_batch([source], tmp_path / "out", model=path, object_size=36, min_size=0)
    assert summary.ok
    with tifffile.TiffFile(tmp_path / "out" / "stack_labels.tif") as tif:
        written = tif.asarray()
        assert tif.imagej_metadata["spacing"] == pytest.approx(1.5)
        assert tif.pages[0].resolution[0] == pytest.approx(2.0)
    # Batch writes instances as the CLI's defaults make them, faint objects dropped using
    # the raw plane: the in-memory labels, through the same steps, must match exactly.
    expected = np.stack(
        [
            instances_of(p, 3, min_size=0, merge_diagonal=True, image=plane)
            for p, plane in zip(memory.labels, stack)
        ]
    )
    np.testing.assert_array_equal(written, expected)
    import json

    record = json.loads((tmp_path / "out" / "napari-tiled-unet-run.json").read_text())
    scale = record["runs"][-1]["files"][0]["details"]["object_size"]
    assert scale["factor"] == 0.5 and scale["summary"] == "objects 36 px -> image scaled x0.50"
