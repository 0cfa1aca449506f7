"""A small padded ("same") Keras U-Net packaged as the BioImage Model Zoo packages them.

The description is written by hand in the zoo's format (0.5), the way a contributor's
``rdf.yaml`` looks, not by this package's exporter.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


def padded_unet(depth=2, base_filters=4, classes=2, seed=0, softmax=False):
    """A U-Net with padded convolutions: the output is as large as the input."""
    from napari_tiled_unet.core._keras import get_keras

    keras = get_keras()
    layers = keras.layers
    init = keras.initializers.HeNormal(seed)

    def conv(x, filters, name):
        return layers.Conv2D(
            filters, 3, padding="same", activation="relu", kernel_initializer=init, name=name
        )(x)

    inputs = keras.Input((None, None, 1), name="input")
    x, skips = inputs, []
    for level in range(depth):
        f = base_filters * 2**level
        x = conv(conv(x, f, f"enc{level}_a"), f, f"enc{level}_b")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = conv(conv(x, base_filters * 2**depth, "mid_a"), base_filters * 2**depth, "mid_b")
    for level in reversed(range(depth)):
        f = base_filters * 2**level
        x = layers.Conv2DTranspose(f, 2, strides=2, name=f"up{level}", kernel_initializer=init)(x)
        x = layers.Concatenate(name=f"cat{level}")([skips[level], x])
        x = conv(conv(x, f, f"dec{level}_a"), f, f"dec{level}_b")
    x = layers.Conv2D(classes, 1, name="logits", kernel_initializer=init)(x)
    if softmax:
        x = layers.Softmax(name="softmax")(x)
    return keras.Model(inputs, x, name="padded_unet")


PREPROCESSING = {
    "zero_mean_unit_variance": """\
      - id: zero_mean_unit_variance
        kwargs:
          axes: [y, x]
          eps: 1.0e-6""",
    "scale_range": """\
      - id: scale_range
        kwargs:
          axes: [y, x]
          min_percentile: 2.0
          max_percentile: 99.0
          eps: 1.0e-6
      - id: clip
        kwargs:
          min: 0.0
          max: 1.0""",
}


def rdf_yaml(
    *,
    halo=None,
    preprocessing="zero_mean_unit_variance",
    postprocessing="softmax",
    weights="keras_v3",
    axes=("batch", "y", "x", "channel"),
    step=4,
):
    """The description, with a few variations the tests need."""
    space = {"y", "x", "z"}
    input_axes, output_axes = [], []
    for axis in axes:
        if axis == "batch":
            input_axes.append("      - type: batch")
            output_axes.append("      - type: batch")
        elif axis == "channel":
            input_axes.append("      - type: channel\n        channel_names: [dapi]")
            output_axes.append(
                "      - type: channel\n        channel_names: [background, nucleus]"
            )
        elif axis in space:
            input_axes.append(
                f"      - type: space\n        id: {axis}\n        unit: micrometer\n"
                f"        scale: 0.5\n        size: {{min: 64, step: {step}}}"
            )
            out = (
                f"      - type: space\n        id: {axis}\n        unit: micrometer\n"
                f"        scale: 0.5\n        size: {{tensor_id: raw, axis_id: {axis}}}"
            )
            output_axes.append(out + (f"\n        halo: {halo}" if halo else ""))
    post = "      - id: softmax\n        kwargs: {axis: channel}" if postprocessing else ""
    weight_lines = {
        "keras_v3": "  keras_v3:\n    source: model.keras\n    keras_version: 3.8.0\n"
        "    backend: [tensorflow, 2.18.0]",
        "torchscript": "  torchscript:\n    source: model.pt\n    pytorch_version: 2.5.0",
    }[weights]
    return f"""\
type: model
format_version: 0.5.4
name: Padded nuclei U-Net
description: A small U-Net with padded convolutions for nuclei (test model).
authors:
  - name: A. Contributor
cite:
  - text: "Ronneberger et al. U-Net (2015)"
    doi: 10.1007/978-3-319-24574-4_28
license: MIT
tags: [unet, segmentation, 2d]
documentation: README.md
inputs:
  - id: raw
    axes:
{chr(10).join(input_axes)}
    test_tensor:
      source: test_input.npy
    data:
      type: float32
    preprocessing:
{PREPROCESSING[preprocessing] if preprocessing else "      []"}
outputs:
  - id: prob
    axes:
{chr(10).join(output_axes)}
    test_tensor:
      source: test_output.npy
    postprocessing:
{post or "      []"}
weights:
{weight_lines}
"""


def preprocess(x, preprocessing="zero_mean_unit_variance"):
    """What the described preprocessing does to a ``(1, Y, X, 1)`` array (numpy)."""
    if preprocessing == "zero_mean_unit_variance":
        return (x - x.mean()) / (x.std() + 1e-6)
    lo, hi = np.percentile(x, [2.0, 99.0])
    return np.clip((x - lo) / (hi - lo + 1e-6), 0.0, 1.0)


def write_package(folder: Path, model, *, zipped=True, **variation) -> Path:
    """Write the model, test tensors, README and description; return the zip (or folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    if variation.get("weights", "keras_v3") == "keras_v3":
        model.save(folder / "model.keras")
    else:
        (folder / "model.pt").write_bytes(b"not a real torchscript file")
    x = np.random.default_rng(0).random((1, 64, 64, 1), dtype=np.float32) * 200
    pre = preprocess(x, variation.get("preprocessing") or "zero_mean_unit_variance")
    y = np.asarray(model(pre.astype(np.float32)))
    if variation.get("postprocessing", "softmax"):
        y = np.exp(y) / np.exp(y).sum(-1, keepdims=True)
    np.save(folder / "test_input.npy", x)
    np.save(folder / "test_output.npy", y)
    (folder / "README.md").write_text("# Padded U-Net\n\n## Validation\n\nNone (test model).\n")
    (folder / "rdf.yaml").write_text(rdf_yaml(**variation))
    if not zipped:
        return folder
    target = folder.with_suffix(".zip")
    with zipfile.ZipFile(target, "w") as archive:
        for file in folder.iterdir():
            archive.write(file, file.name)
    return target
