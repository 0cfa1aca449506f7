import numpy as np
import pytest

from napari_tiled_unet import segment
from napari_tiled_unet.core.memory import OutOfMemoryWarning, fallback_of, is_out_of_memory
from napari_tiled_unet.core.model.files import wrap_keras_model
from napari_tiled_unet.core.tiling import default_memory_budget, parse_bytes, plan_tiles
from tests.conftest import tiny_unet


@pytest.mark.parametrize(
    "text, value",
    [
        ("300MB", 300 * 10**6),
        ("2GB", 2 * 10**9),
        ("1.5GiB", 3 * 2**29),
        ("512 MiB", 512 * 2**20),
        ("123456", 123456),
        (4096, 4096),
        ("64k", 64000),
    ],
)
def test_memory_sizes_are_read_with_units(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["lots", "2 GBB", "-3MB", "0", "GB", "1.5.2GB", "inf"])
def test_unreadable_memory_sizes_are_one_line_errors(text):
    with pytest.raises(ValueError, match=r"cannot read the memory size .*e\.g\. 300MB"):
        parse_bytes(text)


def test_default_budget_follows_the_available_memory():
    assert default_memory_budget(4 * 2**30) == 2**30
    assert default_memory_budget(2**40) == 8 * 2**30  # capped
    assert default_memory_budget(2**28) == 256 * 2**20  # floor
    assert 256 * 2**20 <= default_memory_budget() <= 8 * 2**30


def test_budget_as_text_chooses_the_tiles_that_fit():
    spec = tiny_unet(3, 8).spec
    small = plan_tiles((3000, 3000), spec, memory_budget="30MB")
    large = plan_tiles((3000, 3000), spec, memory_budget="3GB")
    assert small.tile_in[0] < large.tile_in[0]
    assert small.memory_per_batch <= 30 * 10**6 and small.memory_budget == 30 * 10**6


def _raising(unet, monkeypatch, failures, error):
    """Make ``unet``'s network calls fail with ``error`` for the first ``failures`` calls."""
    real = unet.predict_batch
    sizes = []

    def predict(batch):
        sizes.append(batch.shape[:3])
        if len(sizes) <= failures:
            raise error
        return real(batch)

    monkeypatch.setattr(unet, "predict_batch", predict)
    return sizes


def _fresh(depth=2):
    return wrap_keras_model(tiny_unet(depth, 4).keras_model)


@pytest.mark.parametrize("failures", [1, 2])
def test_out_of_memory_halves_the_batch_and_gives_the_same_result(monkeypatch, failures):
    image = np.random.default_rng(0).random((150, 170), dtype=np.float32)
    expected = segment(_fresh(), image, tile_size=92, batch_size=4, normalize=None)
    unet = _fresh()
    sizes = _raising(unet, monkeypatch, failures, MemoryError())
    with pytest.warns(OutOfMemoryWarning, match="out of memory with 4 tile") as said:
        result = segment(unet, image, tile_size=92, batch_size=4, normalize=None)
    assert len(said) == 1  # said once for the whole run
    # equal up to the rounding of TensorFlow's batched kernels (a few 1e-8)
    np.testing.assert_allclose(result.probabilities, expected.probabilities, atol=1e-6)
    assert (result.labels == expected.labels).all()
    assert sizes[0][0] == 4 and sizes[failures][0] == 4 // 2**failures
    assert fallback_of(unet, result.plan) == {"batch_size": 4 // 2**failures, "tile_in": [92, 92]}


def test_out_of_memory_at_one_tile_uses_smaller_tiles(monkeypatch):
    from napari_tiled_unet.core._keras import get_tf

    tf = get_tf()  # TensorFlow comes through the package's isolated import, as everywhere
    image = np.random.default_rng(1).random((200, 180), dtype=np.float32)
    expected = segment(_fresh(3), image, tile_size=196, batch_size=1, normalize=None)
    unet = _fresh(3)
    error = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    assert is_out_of_memory(error) and not is_out_of_memory(ValueError("x"))
    sizes = _raising(unet, monkeypatch, 2, error)
    with pytest.warns(OutOfMemoryWarning, match="continuing with 1 of 140 x 140 px"):
        result = segment(unet, image, tile_size=196, batch_size=1, normalize=None)
    np.testing.assert_allclose(result.probabilities, expected.probabilities, atol=1e-5)
    assert (result.labels == expected.labels).all()
    # 196 px in = 108 px out; halved: 48 px out (140 in), then 24 px out (116 in)
    assert sizes[0][1:] == (196, 196) and sizes[1][1:] == (140, 140)
    assert sizes[2][1:] == (116, 116) and sizes[-1][1:] == (116, 116)
    assert fallback_of(unet, result.plan) == {"batch_size": 1, "tile_in": [116, 116]}


def test_out_of_memory_for_the_smallest_tile_is_a_one_line_error(monkeypatch):
    unet = _fresh()
    _raising(unet, monkeypatch, 100, MemoryError())
    with pytest.warns(OutOfMemoryWarning), pytest.raises(MemoryError, match="even for one"):
        segment(unet, np.zeros((60, 60), np.float32), tile_size=92, normalize=None)


def test_other_errors_are_not_retried(monkeypatch):
    unet = _fresh()
    sizes = _raising(unet, monkeypatch, 1, RuntimeError("broken"))
    with pytest.raises(RuntimeError, match="broken"):
        segment(unet, np.zeros((60, 60), np.float32), tile_size=92, normalize=None)
    assert len(sizes) == 1


def test_small_budget_on_a_large_image_chooses_small_tiles_and_finishes():
    unet = _fresh()
    image = np.random.default_rng(2).random((1200, 1100), dtype=np.float32)
    small = segment(unet, image, memory_budget="5MB", normalize=None)
    assert small.plan.tile_in[0] < 300 and small.plan.memory_per_batch <= 5 * 10**6
    large = segment(unet, image, memory_budget="1GB", normalize=None)
    assert large.plan.tile_in[0] > small.plan.tile_in[0]
    assert (small.labels == large.labels).mean() >= 0.9999


def test_int8_plans_count_onnx_runtime_memory_and_say_so():
    from napari_tiled_unet.core.prepare import prepare
    from napari_tiled_unet.core.tiling import RUNTIME_FACTORS, activation_bytes

    spec = tiny_unet(3, 8).spec
    tf, ort = (activation_bytes(spec, (300, 300), 2, runtime=r) for r in RUNTIME_FACTORS)
    ratio = RUNTIME_FACTORS["onnxruntime"] / RUNTIME_FACTORS["tensorflow"]
    assert ort == pytest.approx(tf * ratio, rel=1e-6)
    with pytest.raises(ValueError, match="runtime must be one of"):
        activation_bytes(spec, (300, 300), runtime="tflite")
    image = np.zeros((500, 400), np.float32)
    job = prepare(tiny_unet(3, 8), image, precision="int8", tile_size=300, batch_size=2)
    assert job.plan.runtime == "onnxruntime"
    assert job.plan.memory_per_batch == activation_bytes(
        spec, job.plan.tile_in, 2, runtime="onnxruntime"
    )
    plain = prepare(tiny_unet(3, 8), image, tile_size=300, batch_size=2).plan
    assert plain.runtime == "tensorflow" and plain.tile_in == job.plan.tile_in
    assert plain.memory_per_batch != job.plan.memory_per_batch  # each with its own factor
