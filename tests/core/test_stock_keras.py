import subprocess
import sys
import zipfile

import numpy as np
import pytest

from napari_tiled_unet import build_unet, load_model, save_model
from napari_tiled_unet.core.model import geometry as g
from napari_tiled_unet.core.model.files import METADATA_MEMBER, wrap_keras_model
from napari_tiled_unet.core.model.stock import is_stock_keras, to_stock_keras


def legacy_unet(depth=2, base_filters=4, num_classes=2, seed=0):
    """The U-Net as earlier versions built it: skip connections cropped by CenterCropLike."""
    from napari_tiled_unet.core._keras import get_keras
    from napari_tiled_unet.core.model.builder import paper_initializer
    from napari_tiled_unet.core.model.layers import CenterCropLike

    keras = get_keras()
    layers, init = keras.layers, paper_initializer(seed)

    def conv(x, filters, name):
        return layers.Conv2D(filters, 3, activation="relu", kernel_initializer=init, name=name)(x)

    inputs = keras.Input((None, None, 1), name="image")
    x, skips = inputs, []
    for level in range(depth):
        x = conv(
            conv(x, base_filters * 2**level, f"down{level + 1}_conv1"),
            base_filters * 2**level,
            f"down{level + 1}_conv2",
        )
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level + 1}_pool")(x)
    x = conv(
        conv(x, base_filters * 2**depth, "bottom_conv1"), base_filters * 2**depth, "bottom_conv2"
    )
    for level in reversed(range(depth)):
        f = base_filters * 2**level
        x = layers.Conv2DTranspose(
            f, 2, strides=2, kernel_initializer=init, name=f"up{level + 1}_upconv"
        )(x)
        skip = CenterCropLike(name=f"up{level + 1}_crop")([skips[level], x])
        x = layers.Concatenate(name=f"up{level + 1}_concat")([skip, x])
        x = conv(conv(x, f, f"up{level + 1}_conv1"), f, f"up{level + 1}_conv2")
    x = layers.Conv2D(num_classes, 1, kernel_initializer=init, name="classifier")(x)
    outputs = layers.Softmax(name="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="unet")


def test_skip_crops_are_the_papers_and_independent_of_the_input_size():
    assert g.skip_crops(4) == (88, 40, 16, 4)
    assert g.skip_crops(0) == ()
    for depth in range(1, 6):
        for size in g.valid_input_sizes(depth, maximum=1000)[:12]:
            skips, s = [], size
            for _ in range(depth):
                s -= 4
                skips.append(s)
                s //= 2
            u = 2 * (s - 4)
            crops = []
            for level in reversed(range(depth)):
                crops.insert(0, (skips[level] - u) // 2)
                assert (skips[level] - u) % 2 == 0
                u = 2 * (u - 4)
            assert tuple(crops) == g.skip_crops(depth), (depth, size)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_cropping2d_equals_the_old_center_crop_on_real_feature_maps(depth):
    from napari_tiled_unet.core._keras import get_keras
    from napari_tiled_unet.core.model.layers import CenterCropLike

    keras = get_keras()
    model = build_unet(depth=depth, base_filters=2, seed=1)
    assert is_stock_keras(model)
    assert not [layer for layer in model.layers if "CenterCropLike" in type(layer).__name__]
    names = [f"up{k}" for k in range(1, depth + 1)]
    probe = keras.Model(
        model.inputs[0],
        [
            t
            for k in range(1, depth + 1)
            for t in (
                model.get_layer(f"down{k}_conv2").output,
                model.get_layer(f"up{k}_upconv").output,
                model.get_layer(f"up{k}_crop").output,
            )
        ],
    )
    rng = np.random.default_rng(depth)
    for h, w in zip(g.valid_input_sizes(depth)[:3], g.valid_input_sizes(depth)[2:5]):
        maps = probe(rng.random((1, h, w, 1), dtype=np.float32))
        for k, name in enumerate(names):
            skip, up, cropped = (np.asarray(m) for m in maps[3 * k : 3 * k + 3])
            old = np.asarray(CenterCropLike()([skip, up]))
            assert cropped.shape[1:3] == up.shape[1:3], (name, h, w)
            np.testing.assert_array_equal(cropped, old)


def test_paper_model_keeps_its_parameter_count_with_stock_crops():
    model = build_unet()
    assert model.count_params() == 31_030_658
    assert is_stock_keras(model)


def test_to_stock_keras_keeps_names_weights_and_outputs():
    old = legacy_unet(depth=3, base_filters=4)
    assert not is_stock_keras(old)
    new = to_stock_keras(old)
    assert is_stock_keras(new)
    assert sorted(layer.name for layer in new.layers) == sorted(layer.name for layer in old.layers)
    assert new.get_layer("up1_crop").cropping == ((40, 40), (40, 40))
    x = np.random.default_rng(0).random((2, 124, 156, 1), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(new(x)), np.asarray(old(x)))
    assert to_stock_keras(new) is new


PLAIN_KERAS = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "napari_tiled_unet":
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Block())
import os
os.environ["KERAS_BACKEND"] = "tensorflow"
import numpy as np, keras
model = keras.models.load_model(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(model(x)))
print("IMPORTED", sorted(m for m in sys.modules if m.startswith("napari_tiled_unet")))
print("LAYERS", sorted({type(layer).__module__.split(".")[0] for layer in model.layers}))
"""


def test_old_model_resaved_loads_with_plain_keras_and_gives_the_same_outputs(tmp_path):
    from napari_tiled_unet.core._keras import get_keras

    get_keras()
    old_file = tmp_path / "old.keras"
    old = legacy_unet(depth=2, base_filters=4)
    old.save(old_file)  # a file of an earlier version: needs CenterCropLike to load
    unet = load_model(old_file)
    assert not is_stock_keras(unet.keras_model)
    new_file = save_model(unet, tmp_path / "new.keras")
    with zipfile.ZipFile(new_file) as archive:
        assert METADATA_MEMBER in archive.namelist()
    x = np.random.default_rng(0).random((1, 76, 92, 1), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_KERAS)
    out = subprocess.run(
        [sys.executable, "-I", str(script), str(new_file), "x.npy", "y.npy"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "IMPORTED []" in out.stdout
    assert "napari_tiled_unet" not in out.stdout.split("LAYERS")[1]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.asarray(old(x)))
    reloaded = load_model(new_file)
    assert is_stock_keras(reloaded.keras_model)
    np.testing.assert_array_equal(reloaded.predict_batch(x), unet.predict_batch(x))


def test_the_plain_keras_check_would_see_a_custom_layer(tmp_path):
    # The subprocess check above can fail: a file with CenterCropLike does not load there.
    from napari_tiled_unet.core._keras import get_keras

    get_keras()
    legacy_unet(depth=1, base_filters=2).save(tmp_path / "old.keras")
    np.save(tmp_path / "x.npy", np.zeros((1, 44, 44, 1), np.float32))
    (tmp_path / "plain.py").write_text(PLAIN_KERAS)
    out = subprocess.run(
        [sys.executable, "-I", "plain.py", "old.keras", "x.npy", "y.npy"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode != 0


def test_wrapped_new_model_saves_stock(tmp_path):
    path = save_model(wrap_keras_model(build_unet(depth=1, base_filters=2)), tmp_path / "m.keras")
    assert is_stock_keras(load_model(path).keras_model)
