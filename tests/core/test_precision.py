import warnings

import numpy as np
import pytest

from napari_tiled_unet import segment
from napari_tiled_unet.core import precision as precision_module
from napari_tiled_unet.core.precision import (
    PrecisionWarning,
    cast_keras_model,
    check_precision,
    cpu_has_bf16,
    effective_precision,
)
from tests.conftest import tiny_unet
from tests.core.test_predict import whole_image_pass


def test_cpu_flags_decide_native_bfloat16():
    assert cpu_has_bf16("processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16\n")
    assert cpu_has_bf16("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert not cpu_has_bf16("flags : fpu sse avx2 avx512f\n")
    assert not cpu_has_bf16("")


def test_unknown_precision_is_a_one_line_error():
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16"):
        check_precision("fp8")
    with pytest.raises(ValueError, match="precision must be one of"):
        segment(tiny_unet(2, 4), np.zeros((20, 20), np.float32), precision="half")


def test_without_native_support_the_run_is_float32_with_one_warning(monkeypatch):
    monkeypatch.setattr(precision_module, "_has_gpu", lambda: False)
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: False)
    with pytest.warns(PrecisionWarning, match="precision float16 needs a GPU"):
        assert effective_precision("float16") == "float32"
    with pytest.warns(PrecisionWarning, match="avx512_bf16"):
        assert effective_precision("bfloat16") == "float32"
    image = np.random.default_rng(0).random((40, 40), dtype=np.float32)
    unet = tiny_unet(2, 4)
    with pytest.warns(PrecisionWarning):
        reduced = segment(unet, image, precision="bfloat16", normalize=None)
    plain = segment(unet, image, normalize=None)
    np.testing.assert_array_equal(reduced.probabilities, plain.probabilities)


def test_bfloat16_model_keeps_weights_and_float32_output():
    unet = tiny_unet(2, 4, num_classes=3)
    cast = cast_keras_model(unet.keras_model, "bfloat16")
    policies = {layer.name: layer.dtype_policy.name for layer in cast.layers}
    assert policies["down1_conv1"] == "mixed_bfloat16"
    assert policies["up1_conv2"] == "mixed_bfloat16"
    assert policies["classifier"] == "float32" and policies["softmax"] == "float32"
    for a, b in zip(unet.keras_model.get_weights(), cast.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(1).random((2, 92, 92, 1), dtype=np.float32)
    out = np.asarray(cast(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)
    reference = np.asarray(unet.keras_model(x))
    assert 0 < np.abs(out - reference).max() < 0.05  # bfloat16 arithmetic, close to float32


@pytest.fixture
def native_bf16(monkeypatch):
    """Pretend the CPU has bfloat16 (TensorFlow emulates it where it has not)."""
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: True)


@pytest.mark.parametrize("tile, batch", [(100, 1), (100, 4), (140, 2)])
def test_bfloat16_tiled_equals_bfloat16_whole_image_pass(native_bf16, tile, batch):
    unet = tiny_unet(3, 4)
    image = np.random.default_rng(3).random((203, 150), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)
        result = segment(
            unet, image, tile_size=tile, batch_size=batch, normalize=None, precision="bfloat16"
        )
    reduced = unet.variant(precision="bfloat16")
    reference = whole_image_pass(reduced, image[..., None])
    assert np.abs(result.probabilities - reference).max() <= 1e-3
    assert (result.labels == reference.argmax(-1)).mean() >= 0.9999
    # and it is a different computation from float32
    assert np.abs(reference - whole_image_pass(unet, image[..., None])).max() > 1e-4


def test_variants_are_made_once(native_bf16):
    unet = tiny_unet(2, 4)
    first = unet.variant(precision="bfloat16")
    assert unet.variant(precision="bfloat16") is first
    assert first.variant(precision="bfloat16") is first
    with_tta = unet.variant(precision="bfloat16", tta=("identity", "flip_x"))
    assert with_tta.keras_model is first.keras_model
    with pytest.raises(ValueError, match="start from the float32 one"):
        first.variant(precision="float16")
