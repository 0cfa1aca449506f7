"""How long napari's main thread stalls while the Segment widget works.

Opens napari (under Xvfb when there is no display), puts a 5 x 1024 x 1024 stack made of
the nuclei sample in it and segments the whole stack with the bundled model through the
widget's own Run button.  A 20 ms QTimer ticks on the main thread throughout; the longest
gap between two ticks is the longest time the viewer could not react.  Measured:

- the first run, which loads the model (and imports TensorFlow) in the worker;
- a second run (the model is kept);
- a change of Threshold, and one of Min. size (labels recomputed from the cached
  probabilities, no network run);
- for reference, napari itself adding a labels layer of the stack's size (no plugin code):
  the floor of any run that shows a new labels layer.

Usage (from the repository root)::

    python benchmarks/bench_gui_stalls.py [--planes 5] [--size 1024] [--trace]

Prints a table; nothing is asserted.  ``--trace`` also says, for every gap over 100 ms,
where the main thread was (the stacks most often sampled by a thread every 3 ms) and
which garbage collections ran; a stretch without samples means that some thread held
the GIL.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "src" / "napari_tiled_unet" / "data" / "models" / "nuclei2d.keras"
TICK_MS = 20


def rerun_under_xvfb() -> None:
    """Without a display, run this script again inside xvfb-run."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        sys.exit("no display and no xvfb-run: install Xvfb (apt install xvfb) or run on a desktop")
    command = [xvfb, "-a", "-s", "-screen 0 1280x800x24", sys.executable, *sys.argv]
    sys.exit(subprocess.call(command))


def make_stack(planes: int, size: int) -> Any:
    """The nuclei sample tiled to ``size`` px and shifted from plane to plane."""
    import numpy as np

    from napari_tiled_unet.data import nuclei2d

    image, _ = nuclei2d()
    reps = -(-size // image.shape[0]), -(-size // image.shape[1])
    big = np.tile(image, reps)[:size, :size]
    return np.stack([np.roll(big, 37 * z, axis=(0, 1)) for z in range(planes)])


class Tracer:
    """Samples the main thread's stack every 3 ms and notes garbage collections over 10 ms."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, list[str]]] = []
        self.collections: list[tuple[float, float, int]] = []
        self._main = threading.main_thread().ident
        self._gc_start = 0.0
        gc.callbacks.append(self._on_gc)
        threading.Thread(target=self._sample, daemon=True, name="tracer").start()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_start = now
        elif now - self._gc_start > 0.01:
            self.collections.append((now, now - self._gc_start, info["generation"]))

    def _sample(self) -> None:
        while True:
            time.sleep(0.003)
            frame = sys._current_frames().get(self._main)
            if frame is not None:
                stack = traceback.extract_stack(frame)[-6:]
                where = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack]
                self.samples.append((time.perf_counter(), where[::-1]))

    def report(self, times: list[float]) -> None:
        """Print what happened in each gap of ``times`` over 100 ms."""
        for start, end in zip(times, times[1:]):
            if end - start <= 0.1:
                continue
            inside = [s for t, s in self.samples if start <= t <= end]
            stamps = [start] + [t for t, _ in self.samples if start <= t <= end] + [end]
            held = max(b - a for a, b in zip(stamps, stamps[1:]))
            print(
                f"  gap {(end - start) * 1000:.0f} ms at +{start - times[0]:.2f} s: "
                f"{len(inside)} samples, longest without one {held * 1000:.0f} ms"
            )
            for t, seconds, generation in self.collections:
                if start <= t <= end + 0.01:
                    print(f"    collection of generation {generation}: {seconds * 1000:.0f} ms")
            counts = collections.Counter(" <- ".join(stack) for stack in inside)
            for stack, n in counts.most_common(5):
                print(f"    [{n}] {stack}")


class Ticks:
    """A 20 ms timer on the main thread that records when it fires."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.times: list[float] = []
        self._timer = QTimer()
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(lambda: self.times.append(time.perf_counter()))

    def measure(self, action: Any, done: Any, timeout: float = 1800) -> tuple[float, float, int]:
        """Run ``action`` inside the event loop; return (seconds, longest gap, gaps > 100 ms)."""
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance()
        self.times = []
        self._timer.start()
        start = time.perf_counter()
        fired: list[bool] = []

        def act() -> None:
            action()
            fired.append(True)

        QTimer.singleShot(2 * TICK_MS, act)
        while not fired or not done():
            app.processEvents()
            time.sleep(0.002)
            if time.perf_counter() - start > timeout:
                sys.exit("timed out")
        seconds = time.perf_counter() - start
        # the last thing done on the main thread, and the paints after it, end a gap that
        # only the next ticks close
        settle(0.3)
        self._timer.stop()
        gaps = [b - a for a, b in zip(self.times, self.times[1:])]
        return seconds, max(gaps, default=0.0), sum(g > 0.1 for g in gaps)


def settle(seconds: float) -> None:
    """Let the event loop run for ``seconds`` (the viewer shows and paints itself)."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.005)


def main(argv: list[str] | None = None) -> None:
    rerun_under_xvfb()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--planes", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--trace", action="store_true", help="say what ran in each long gap")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="ntu-stalls-"))
    os.environ["XDG_CONFIG_HOME"] = str(folder / "config")  # the user's settings untouched
    os.environ["NAPARI_TILED_UNET_MODELS"] = str(folder / "models")

    import napari
    import numpy as np
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "error"
    viewer = napari.Viewer(title="bench_gui_stalls")
    viewer.window.resize(1280, 800)
    stack = make_stack(args.planes, args.size)
    viewer.add_image(stack, name="stack")
    _, widget = viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
    widget.model.reset_choices()
    widget.model.value = str(MODEL)
    widget.stack.value = "whole stack"
    settle(1.0)  # the window's first paints, before anything is measured
    ticks = Ticks()
    tracer = Tracer() if args.trace else None
    idle = widget.worker is None

    def not_busy() -> bool:
        return widget.worker is None

    rows = []
    for name in ("first run (model load)", "second run"):
        result = ticks.measure(widget.run, not_busy)
        rows.append((name, *result, widget.status.value))
        if tracer is not None:
            print(name)
            tracer.report(ticks.times)

    def set_threshold() -> None:
        widget.threshold.value = 0.3

    def set_min_size() -> None:
        widget.min_size.value = 60

    for name, action in (
        ("re-threshold 0.5 -> 0.3", set_threshold),
        ("min size 20 -> 60", set_min_size),
    ):
        result = ticks.measure(action, not_busy)
        rows.append(
            (name, *result, f"{int(viewer.layers['stack [unet labels]'].data.max())} objects")
        )
        if tracer is not None:
            print(name)
            tracer.report(ticks.times)

    # napari's own floor: the same stall for any new labels layer of this size, no plugin
    def add_labels() -> None:
        viewer.add_labels(np.zeros(stack.shape, np.uint16), name="reference")

    rows.append(("napari add_labels (ref.)", *ticks.measure(add_labels, lambda: True), ""))
    if tracer is not None:
        print("napari add_labels")
        tracer.report(ticks.times)
    viewer.close()
    shutil.rmtree(folder, ignore_errors=True)

    print(
        f"Segment widget, {args.planes} x {args.size} x {args.size} stack, {MODEL.name}, "
        f"{os.cpu_count()} CPU cores, {TICK_MS} ms timer on the main thread (idle before: {idle})"
    )
    print(f"{'phase':<26} {'seconds':>8} {'longest gap ms':>15} {'gaps >100 ms':>13}  status")
    for name, seconds, gap, slow, status in rows:
        print(f"{name:<26} {seconds:>8.1f} {gap * 1000:>15.0f} {slow:>13d}  {status}")


if __name__ == "__main__":
    main()
