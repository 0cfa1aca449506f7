"""How far reduced precision and test-time augmentation move the labels: argmax agreement.

On the bundled nuclei sample (512 x 512) with the bundled model (its default options: its
normalisation, object size estimated), and with the paper-size U-Net (random weights, so
its agreement says little about a trained model: random logits sit closer together), the
float32 labels are compared with those of bfloat16 (and float16 on a GPU) and of float32
with 8-fold test-time augmentation.  Without native bfloat16 the bfloat16 model runs
emulated: the numbers are the same, only slower.

Usage: ``python benchmarks/bench_precision_agreement.py``.
"""

from __future__ import annotations

import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def agreement(a: np.ndarray, b: np.ndarray) -> str:
    return f"{100 * (a == b).mean():.3f} %"


def compare(name: str, unet, image: np.ndarray, **options) -> None:
    from napari_tiled_unet import segment
    from napari_tiled_unet.core.precision import effective_precision

    start = time.perf_counter()
    reference = segment(unet, image, **options)
    seconds = time.perf_counter() - start
    print(f"{name}: float32 {seconds:.1f} s, tile {reference.plan.tile_in[0]}")
    gpu = effective_precision("float16") == "float16"
    for precision in ("bfloat16", "float16") if gpu else ("bfloat16",):
        variant = unet.variant(precision=precision)
        start = time.perf_counter()
        result = segment(variant, image, precision=precision, **options)
        probs = np.abs(result.probabilities - reference.probabilities).max()
        print(
            f"  {precision:<9} argmax agreement {agreement(result.labels, reference.labels)}, "
            f"max |dp| {probs:.4f}, {time.perf_counter() - start:.1f} s"
        )
    result = segment(unet, image, tta=True, **options)
    print(f"  tta x8    argmax agreement {agreement(result.labels, reference.labels)}")


def main() -> None:
    import warnings

    import tifffile

    from napari_tiled_unet import build_unet, load_model
    from napari_tiled_unet.batch.models import bundled_models
    from napari_tiled_unet.core.model.files import wrap_keras_model
    from napari_tiled_unet.core.precision import PrecisionWarning, cpu_has_bf16
    from napari_tiled_unet.data import nuclei2d_path

    warnings.simplefilter("ignore", PrecisionWarning)
    print(f"native bfloat16 CPU instructions: {cpu_has_bf16()}")
    image = tifffile.imread(nuclei2d_path())
    compare("bundled model, nuclei sample", load_model(bundled_models()[0]), image)
    paper = wrap_keras_model(build_unet(seed=0))
    compare("paper-size model (random weights), nuclei sample", paper, image)


if __name__ == "__main__":
    main()
