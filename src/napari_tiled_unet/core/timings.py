"""Tile timings of a network on this machine, and where they are cached.

The automatic tile choice (:func:`~napari_tiled_unet.core.tiling.plan_tiles`) compares the
covers of an image by their FLOPs, assuming one rate for every tile size.  Convolution
kernels do not run at one rate: on one 2-core CPU a call of 4 GiB of activations ran 2.3x
slower per FLOP than calls of 1-2 GiB, and small tiles pay a fixed cost per call.
:func:`napari_tiled_unet.core.autotune.tune_tiles` times a network on a ladder of square
tiles; the :class:`TileTimings` are cached per machine, network architecture and precision,
and from then on the automatic tile is the one whose cover takes the least *measured* time
(rates interpolated between the timed tiles, nothing larger than the largest one timed).

Timings depend on the architecture, not on the weights, so one calibration serves every
model of the same shape (a retrained model, a fine-tuned one).  TensorFlow is not imported
here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_tiled_unet.core.cache import atomic_path, cache_dir
from napari_tiled_unet.core.tiling import activation_bytes, tile_flops

__all__ = ["TileTimings", "cached_timings", "machine_id", "save_timings"]

# 2: float32 runs compute their widest convolutions as matrix products (faster)
_FORMAT = "napari-tiled-unet tile timings 2"


@functools.lru_cache(maxsize=1)
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def _tensorflow_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        return "missing"


def machine_id() -> str:
    """Describe what timings depend on besides the network: CPU, cores, TensorFlow, threads.

    TensorFlow is not imported for this (its version is read from the installed package).
    """
    import sys

    version = _tensorflow_version()
    threads = 0
    if "tensorflow" in sys.modules:  # set_threads may have changed TensorFlow's default
        threads = sys.modules["tensorflow"].config.threading.get_intra_op_parallelism_threads()
    return f"{_cpu_name()}; {_cores()} cores; TensorFlow {version}; intra-op {threads or 'auto'}"


def _network_key(spec: Any, precision: str, tta: Sequence[str], machine: str) -> str:
    parts = [_FORMAT, machine, repr(spec), precision, ",".join(tta)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class TileTimings:
    """Seconds of one network call of one square tile, at a ladder of tile sizes.

    Attributes
    ----------
    sizes : tuple of int
        Square input tiles timed, ascending.
    seconds : tuple of float
        Seconds of one warm call of one tile of each size.
    activation : tuple of int
        The activation estimate of each size (bytes).
    flops : tuple of float
        FLOPs of each size.
    machine : str
        Where they were measured (:func:`machine_id`).
    precision : str
        The precision of the network timed.
    """

    sizes: tuple[int, ...]
    seconds: tuple[float, ...]
    activation: tuple[int, ...]
    flops: tuple[float, ...]
    machine: str
    precision: str

    def call_seconds(self, spec: Any, tile: tuple[int, int]) -> float | None:
        """Estimated seconds of one call of ``tile``; None when it is larger than any timed.

        The rate (FLOPs per second) is interpolated linearly over the activation estimate
        between the timed tiles, and held at the smallest tile's rate below it.
        """
        need = activation_bytes(spec, tile)
        if need > self.activation[-1] * 1.001:
            return None
        rates = [f / s for f, s in zip(self.flops, self.seconds)]
        rate = float(np.interp(need, self.activation, rates))
        return tile_flops(spec, tile) / rate

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the cache file)."""
        return {
            "format": _FORMAT,
            "machine": self.machine,
            "precision": self.precision,
            "sizes": list(self.sizes),
            "seconds": list(self.seconds),
            "activation_bytes": list(self.activation),
            "flops": list(self.flops),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TileTimings:
        """Inverse of :meth:`to_dict` (ValueError for anything else)."""
        if data.get("format") != _FORMAT:
            raise ValueError("not a napari-tiled-unet tile timing file")
        sizes = tuple(int(s) for s in data["sizes"])
        seconds = tuple(float(s) for s in data["seconds"])
        activation = tuple(int(a) for a in data["activation_bytes"])
        flops = tuple(float(f) for f in data["flops"])
        lengths = {len(sizes), len(seconds), len(activation), len(flops)}
        if lengths != {len(sizes)} or not sizes or min(seconds) <= 0:
            raise ValueError("tile timing file is inconsistent")
        return cls(sizes, seconds, activation, flops, str(data["machine"]), str(data["precision"]))

    def table(self, spec: Any) -> str:
        """Return the timings as a table (tile, activations, seconds, GFLOP/s, Mpx/s)."""
        lines = [f"{'tile':>6}{'act. MiB':>10}{'s/call':>9}{'GFLOP/s':>9}{'out Mpx/s':>11}"]
        for size, sec, act, flop in zip(self.sizes, self.seconds, self.activation, self.flops):
            out = spec.output_size(size) or 0
            lines.append(
                f"{size:>6}{act / 2**20:>10.0f}{sec:>9.3f}{flop / sec / 1e9:>9.1f}"
                f"{out * out / sec / 1e6:>11.3f}"
            )
        return "\n".join(lines)


def _cache_file(key: str) -> Path:
    return cache_dir("tiles") / f"{key}.json"


def cached_timings(
    spec: Any, precision: str = "float32", tta: Sequence[str] = ()
) -> TileTimings | None:
    """Return this machine's timings of a network of ``spec`` at ``precision`` if tuned.

    None for int8 (ONNX Runtime's rates are not TensorFlow's: its tiles follow the FLOP
    model), for models of one fixed input size, and where nothing (readable) is cached.
    """
    if spec.fixed_input_size is not None or precision == "int8":
        return None
    try:
        path = _cache_file(_network_key(spec, precision, tta, machine_id()))
        if not path.is_file():
            return None
        return TileTimings.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an unreadable cache entry is the same as none: tune again


def save_timings(timings: TileTimings, spec: Any, tta: Sequence[str] = ()) -> Path:
    """Write ``timings`` of a network of ``spec`` (and ``tta``) to the cache; return the file."""
    target = _cache_file(_network_key(spec, timings.precision, tta, timings.machine))
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(timings.to_dict(), indent=1), encoding="utf-8")
    return target
