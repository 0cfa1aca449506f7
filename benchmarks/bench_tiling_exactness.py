"""How close tiled results are to one whole-image pass (paper U-Net, random weights, fp32).

Compares, on a mirror-padded 1024 x 1024 image, one pass of the network over the whole
padded image with
(a) ``segment`` at several tile sizes (tiles on the 16 px pooling grid), and
(b) the paper-style tiling with 572 x 572 tiles placed side by side every 388 px, whose
    pooling grids are shifted by 4, 8, ... px against the whole-image grid.
Usage: ``python benchmarks/bench_tiling_exactness.py [--size 1024]``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def whole_pass(unet, image: np.ndarray) -> np.ndarray:
    from napari_tiled_unet.core.model.geometry import smallest_input_for_output

    size = smallest_input_for_output(max(image.shape))
    pad = ((92, size - image.shape[0] - 92), (92, size - image.shape[1] - 92))
    padded = np.pad(image, pad, mode="reflect")[None, :, :, None]
    return unet.predict_batch(padded)[0, : image.shape[0], : image.shape[1]]


def paper_stride_tiling(unet, image: np.ndarray) -> np.ndarray:
    n = -(-max(image.shape) // 388)
    pad = ((92, 92 + n * 388 - image.shape[0]), (92, 92 + n * 388 - image.shape[1]))
    padded = np.pad(image, pad, mode="reflect")
    out = np.zeros((n * 388, n * 388, 2), np.float32)
    for i in range(n):
        for j in range(n):
            tile = padded[i * 388 : i * 388 + 572, j * 388 : j * 388 + 572]
            out[i * 388 : (i + 1) * 388, j * 388 : (j + 1) * 388] = unet.predict_batch(
                tile[None, :, :, None]
            )[0]
    return out[: image.shape[0], : image.shape[1]]


def main() -> None:
    from napari_tiled_unet import build_unet, segment
    from napari_tiled_unet.core.model.files import wrap_keras_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    unet = wrap_keras_model(build_unet(seed=0))
    image = np.random.default_rng(0).random((args.size, args.size), dtype=np.float32)
    reference = whole_pass(unet, image)
    print(f"{'tiling':<42}{'tiles':>6}{'max |dp|':>12}{'argmax agreement':>18}")
    rows = []
    for tile in (572, 380, 700):
        result = segment(unet, image, tile_size=tile, normalize=None)
        rows.append(
            (f"segment, {tile} px tiles (16 px grid)", result.plan.n_tiles, result.probabilities)
        )
    n = -(-args.size // 388)
    rows.append(("paper-style 572 px tiles every 388 px", n * n, paper_stride_tiling(unet, image)))
    for label, tiles, probs in rows:
        diff = float(np.abs(probs - reference).max())
        agree = float((probs.argmax(-1) == reference.argmax(-1)).mean())
        print(f"{label:<42}{tiles:>6}{diff:>12.2e}{100 * agree:>17.4f}%")


if __name__ == "__main__":
    main()
