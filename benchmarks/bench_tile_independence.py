"""How much ``segment``'s result depends on the tile size, with and without normalisation.

Random small U-Nets (depth 2-3, 4-8 filters, random weights) segment random images of
random sizes in four pixel ranges, each at every valid tile size up to 400 px; the
table gives the largest difference of any probability from the result at the first tile
size, and the agreement of the labels.  Run it twice to see what oneDNN's optimisations
change::

    python benchmarks/bench_tile_independence.py
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/bench_tile_independence.py
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RANGES = {
    "uint8 0-255": (np.uint8, 255.0),
    "uint16 0-60000": (np.uint16, 60000.0),
    "float32 0-1": (np.float32, 1.0),
    "float64 0-1e4": (np.float64, 1e4),
}


def spread(model, image: np.ndarray, sizes: list[int], normalize: object) -> tuple[float, float]:
    """Largest |dp| against the first tile size, and the lowest label agreement."""
    from napari_tiled_unet import segment

    results = [segment(model, image, tile_size=t, normalize=normalize) for t in sizes]
    first = results[0].probabilities
    diff = max(float(np.abs(r.probabilities - first).max()) for r in results[1:])
    agree = min(float((r.labels == results[0].labels).mean()) for r in results[1:])
    return diff, agree


def main() -> None:
    from napari_tiled_unet import build_unet
    from napari_tiled_unet.core.model.files import wrap_keras_model
    from napari_tiled_unet.core.model.geometry import smallest_input_for_output, valid_input_sizes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6, help="random models and images per range")
    args = parser.parse_args()
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")
    print(f"TF_ENABLE_ONEDNN_OPTS={onednn}; {args.cases} random models x images per row")
    print(f"{'pixel range':16} {'normalize':>10} {'max |dp|':>10} {'labels agree':>13}")
    rng = np.random.default_rng(0)
    models = []
    for seed in range(args.cases):
        depth, filters = int(rng.integers(2, 4)), int(rng.choice([4, 8]))
        keras_model = build_unet(depth=depth, base_filters=filters, seed=seed)
        smallest = smallest_input_for_output(2**depth, depth)  # one pooling step of output
        sizes = [s for s in valid_input_sizes(depth) if smallest <= s <= 400]
        shape = (int(rng.integers(40, 300)), int(rng.integers(40, 300)))
        models.append((wrap_keras_model(keras_model), sizes, shape))
    for name, (dtype, top) in RANGES.items():
        for normalize in ("auto", None):
            worst, agree = 0.0, 1.0
            for model, sizes, shape in models:
                image = (rng.random(shape) * top).astype(dtype)
                diff, same = spread(model, image, sizes, normalize)
                worst, agree = max(worst, diff), min(agree, same)
            print(f"{name:16} {normalize!s:>10} {worst:10.2e} {agree:13.6f}", flush=True)


if __name__ == "__main__":
    main()
