import zipfile

import numpy as np
import pytest

from napari_tiled_unet import ModelMetadata, build_unet, load_model, save_model, segment
from napari_tiled_unet.core.model.files import METADATA_MEMBER, UNetModel, wrap_keras_model
from tests.spec_models import spec_unet


def aligned_loop(keras_model, image, tile_in=572, tile_out=388, step=16):
    """Independent overlap-tile loop with a fixed-input model (stride: multiple of step)."""
    halo = (tile_in - tile_out) // 2
    stride = tile_out // step * step
    n = max(1, -(-(image.shape[0] - tile_out) // stride) + 1)
    m = max(1, -(-(image.shape[1] - tile_out) // stride) + 1)
    extent_y, extent_x = (n - 1) * stride + tile_in, (m - 1) * stride + tile_in
    padded = np.pad(
        image,
        ((halo, extent_y - halo - image.shape[0]), (halo, extent_x - halo - image.shape[1])),
        mode="reflect",
    )
    out = np.zeros((extent_y - 2 * halo, extent_x - 2 * halo, 2), np.float32)
    for i in range(n):
        for j in range(m):
            tile = padded[i * stride : i * stride + tile_in, j * stride : j * stride + tile_in]
            pred = np.asarray(keras_model(tile[None, :, :, None], training=False))[0]
            out[i * stride : i * stride + tile_out, j * stride : j * stride + tile_out] = pred
    return out[: image.shape[0], : image.shape[1]]


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    keras_model = build_unet(depth=2, base_filters=4, num_classes=3, seed=1)
    meta = ModelMetadata(
        input_channels=1,
        num_classes=3,
        depth=2,
        base_filters=4,
        class_names=("bg", "cell", "edge"),
        training={"steps": 5},
        normalization={"method": "percentile", "low": 2.0, "high": 99.0, "per": "stack"},
    )
    path = save_model(UNetModel(keras_model, meta), tmp_path / "m.keras")
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary left over
    assert path.stat().st_mode & 0o777 == 0o666 & ~_current_umask()  # not owner-only
    loaded = load_model(path)
    assert loaded.metadata == meta
    image = np.random.default_rng(0).random((70, 50), dtype=np.float32)
    a = segment(UNetModel(keras_model, meta), image).probabilities
    np.testing.assert_allclose(segment(loaded, image).probabilities, a, atol=1e-6)
    import keras  # the file stays a normal Keras file

    plain = keras.saving.load_model(path, compile=False)
    assert plain.count_params() == keras_model.count_params()


def _current_umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_metadata_defaults_and_validation():
    assert ModelMetadata(num_classes=3).class_names == ("background", "interior", "border")
    with pytest.raises(ValueError, match="one name per class"):
        ModelMetadata(num_classes=2, class_names=("a",))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_spec_model_loads_and_runs_through_the_engine(tmp_path, suffix):
    keras_model = spec_unet(base=4)
    keras_model.compile(optimizer="adam", loss="categorical_crossentropy")
    path = tmp_path / f"spec{suffix}"
    keras_model.save(path)
    loaded = load_model(path)
    assert loaded.metadata.depth == 4 and loaded.metadata.base_filters == 4
    assert loaded.metadata.fixed_input_size is None  # moved into a fully convolutional twin
    image = np.random.default_rng(1).random((700, 450), dtype=np.float32)
    result = segment(loaded, image, normalize=None, tile_size=380)
    reference = aligned_loop(keras_model, image)
    assert np.abs(result.probabilities - reference).max() <= 1e-3
    assert (result.labels == reference.argmax(-1)).mean() >= 0.9999


def test_spec_model_that_does_not_fit_a_twin_keeps_its_fixed_size(tmp_path):
    keras_model = spec_unet(base=2, swap_concat=True)
    keras_model.save(tmp_path / "swapped.keras")
    loaded = load_model(tmp_path / "swapped.keras")
    assert loaded.metadata.fixed_input_size == (572, 572)
    image = np.random.default_rng(2).random((400, 300), dtype=np.float32)
    result = segment(loaded, image, normalize=None)
    assert result.plan.tile_in == (572, 572)
    reference = aligned_loop(keras_model, image)
    assert np.abs(result.probabilities - reference).max() <= 1e-3


def test_save_refuses_wrong_suffix_and_existing_file(tmp_path):
    unet = wrap_keras_model(build_unet(depth=1, base_filters=2))
    with pytest.raises(ValueError, match=r"end in \.keras"):
        save_model(unet, tmp_path / "m.h5")
    save_model(unet, tmp_path / "m.keras")
    with pytest.raises(FileExistsError):
        save_model(unet, tmp_path / "m.keras", overwrite=False)
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        assert METADATA_MEMBER in archive.namelist()


def test_bad_files_give_one_line_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.keras").write_bytes(b"not a zip")
    (tmp_path / "fake.h5").write_bytes(b"not hdf5 at all")
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as archive:
        archive.writestr("hello.txt", "hi")
    cases = {
        "missing.keras": "does not exist",
        "notes.txt": "not a model file",
        "fake.keras": "not a Keras model file",
        "fake.h5": "not an HDF5 file",
        "empty.keras": "could not load",
    }
    for name, match in cases.items():
        with pytest.raises((ValueError, FileNotFoundError), match=match) as info:
            load_model(tmp_path / name)
        assert "\n" not in str(info.value)


def test_non_unet_models_are_rejected(tmp_path):
    import keras

    inputs = keras.Input((64, 64, 1))
    x = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    keras.Model(inputs, keras.layers.Softmax()(x)).save(tmp_path / "same.keras")
    with pytest.raises(ValueError, match="not a valid-convolution U-Net"):
        load_model(tmp_path / "same.keras")
    vector_in = keras.Input((10,))
    keras.Model(vector_in, keras.layers.Dense(2)(vector_in)).save(tmp_path / "dense.keras")
    with pytest.raises(ValueError, match="expected a 2D image model"):
        load_model(tmp_path / "dense.keras")


def test_channel_mismatch_between_model_and_image(tmp_path):
    path = save_model(
        wrap_keras_model(build_unet(depth=1, base_filters=2, input_channels=3)),
        tmp_path / "rgb.keras",
    )
    with pytest.raises(ValueError, match="expects 3"):
        segment(path, np.zeros((40, 40), np.float32))
