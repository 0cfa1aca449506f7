"""How far reduced precision and test-time augmentation move the labels: argmax agreement.

On the bundled nuclei sample (512 x 512) with the bundled model (its default options: its
normalisation, object size estimated), and with the paper-size U-Net (random weights, so
its agreement says little about a trained model: random logits sit closer together), the
float32 labels are compared with those of bfloat16 (and float16 on a GPU), of int8 (ONNX
Runtime, calibrated on the image itself, with its gate's verdict) and of float32 with 8-fold
test-time augmentation.  Without native bfloat16 the bfloat16 model runs emulated: the
numbers are the same, only slower.

For the bundled model, the int8 calibration methods (MinMax, Percentile, Entropy) are
compared too, and the instances made from the labels are matched with float32's (F1 at IoU
0.5): how much a lower border-class IoU changes the objects.  Quantised models go to a
temporary cache folder.

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
    compare_int8(unet, image, reference, options)
    result = segment(unet, image, tta=True, **options)
    print(f"  tta x8    argmax agreement {agreement(result.labels, reference.labels)}")


def border_iou(a: np.ndarray, b: np.ndarray, names: tuple[str, ...]) -> str:
    if "border" not in names:
        return ""
    k = names.index("border")
    return f", border IoU {((a == k) & (b == k)).sum() / max(((a == k) | (b == k)).sum(), 1):.3f}"


def instance_f1(a: np.ndarray, b: np.ndarray, names: tuple[str, ...]) -> str:
    from napari_tiled_unet.core.metrics import match_instances
    from napari_tiled_unet.core.options import DEFAULT_MIN_SIZE
    from napari_tiled_unet.core.outputs import instances_of

    if len(names) != 3:
        return ""
    one, two = (instances_of(x, 3, min_size=DEFAULT_MIN_SIZE, merge_diagonal=True) for x in (a, b))
    match = match_instances(one, two)
    return f", instances F1 {match.f1:.3f} ({int(two.max())} objects)"


def compare_int8(unet, image: np.ndarray, reference, options: dict, methods=("MinMax",)) -> None:
    import contextlib
    import io
    import tempfile
    import warnings

    from napari_tiled_unet import segment
    from napari_tiled_unet.core import int8 as int8_module
    from napari_tiled_unet.core.onnx_export import missing_onnx

    if missing_onnx() is not None:
        print(f"  int8      n/a: {missing_onnx()} is not installed")
        return
    names = tuple(reference.class_names)
    chosen = int8_module.CALIBRATION_METHOD
    with tempfile.TemporaryDirectory() as cache:
        os.environ["NAPARI_TILED_UNET_CACHE"] = cache
        for method in methods:
            int8_module.CALIBRATION_METHOD = method
            start = time.perf_counter()
            # (the histogram calibrators print their progress)
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                result = segment(unet, image, precision="int8", **options)
            first = time.perf_counter() - start
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                segment(unet, image, precision="int8", **options)  # from the cache
            gate, ran = result.int8, result.labels
            if gate.used == "int8":
                tail = border_iou(ran, reference.labels, names)
                tail += instance_f1(ran, reference.labels, names)
                text = f"argmax agreement {agreement(ran, reference.labels)}{tail}"
            else:
                text = f"gate failed, the run used {gate.used}"
            print(
                f"  int8 {method:<10} {text}; {first:.1f} s with calibration, "
                f"{time.perf_counter() - start:.1f} s cached"
            )
            print(f"       gate: {gate.describe()} -> {gate.used}")
    int8_module.CALIBRATION_METHOD = chosen


def main() -> None:
    import warnings

    import tifffile

    from napari_tiled_unet import build_unet, load_model, segment
    from napari_tiled_unet.batch.models import bundled_models
    from napari_tiled_unet.core.model.files import wrap_keras_model
    from napari_tiled_unet.core.precision import PrecisionWarning, cpu_has_bf16
    from napari_tiled_unet.data import nuclei2d_path

    warnings.simplefilter("ignore", PrecisionWarning)
    print(f"native bfloat16 CPU instructions: {cpu_has_bf16()}")
    image = tifffile.imread(nuclei2d_path())
    bundled = load_model(bundled_models()[0])
    compare("bundled model, nuclei sample", bundled, image)
    reference = segment(bundled, image)
    names = tuple(reference.class_names)
    print("  int8 calibration methods (bundled model):")
    compare_int8(bundled, image, reference, {}, methods=("MinMax", "Percentile", "Entropy"))
    for precision in ("bfloat16",):
        other = segment(bundled.variant(precision=precision), image, precision=precision)
        print(
            f"  {precision} for comparison: argmax agreement "
            f"{agreement(other.labels, reference.labels)}"
            f"{border_iou(other.labels, reference.labels, names)}"
            f"{instance_f1(other.labels, reference.labels, names)}"
        )
    paper = wrap_keras_model(build_unet(seed=0))
    compare("paper-size model (random weights), nuclei sample", paper, image)


if __name__ == "__main__":
    main()
