"""Measured peak RSS of one forward pass against the tiling's activation-memory estimate.

Each tile size runs in its own process: baseline RSS after a tiny warm-up call, then the
peak after one call at the tile size.  Usage: ``python benchmarks/bench_memory_estimate.py``.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CASES = [(572, 64), (892, 64), (1212, 64), (572, 16), (1212, 16)]


def child(size: int, base_filters: int) -> None:
    import numpy as np

    from napari_tiled_unet import build_unet
    from napari_tiled_unet.core.model.files import wrap_keras_model
    from napari_tiled_unet.core.tiling import NetworkSpec, activation_bytes

    unet = wrap_keras_model(build_unet(seed=0, base_filters=base_filters))
    batch = np.zeros((1, size, size, 1), np.float32)
    unet.predict_batch(batch[:, :188, :188])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    unet.predict_batch(batch)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    estimate = activation_bytes(NetworkSpec(base_filters=base_filters), (size, size)) / 2**20
    print(
        f"{size:>6}{base_filters:>9}{before:>12.0f}{after:>12.0f}{after - before:>12.0f}"
        f"{estimate:>12.0f}{(after - before) / estimate:>8.2f}",
        flush=True,
    )


def main() -> None:
    if len(sys.argv) == 3:
        child(int(sys.argv[1]), int(sys.argv[2]))
        return
    print(
        f"{'tile':>6}{'filters':>9}{'base MiB':>12}{'peak MiB':>12}{'delta MiB':>12}"
        f"{'estim. MiB':>12}{'ratio':>8}",
        flush=True,
    )
    for size, filters in CASES:
        subprocess.run(
            [sys.executable, __file__, str(size), str(filters)],
            check=True,
            stderr=subprocess.DEVNULL,
        )


if __name__ == "__main__":
    main()
