"""What the plugin adds to napari's start-up, and how long its Segment dock takes to open.

Each measurement runs in a fresh process (imports are cached within one), several times;
the table shows the median and the range, in milliseconds:

- ``napari.Viewer()`` with the plugin disabled in npe2, then enabled: the difference is
  what the plugin costs every napari user at start (its manifest is read, nothing of it
  is imported: the plugin's modules and TensorFlow must still be absent afterwards);
- reading and registering the plugin's manifest with npe2 on its own (the part of the
  difference above that is the plugin's, without the noise of a whole viewer start);
- ``import napari_tiled_unet`` on its own;
- opening the Segment dock in a viewer that is already up (``add_plugin_dock_widget``),
  and from ``napari.Viewer()`` to a docked Segment widget.

Needs a display (``xvfb-run -a python benchmarks/bench_startup.py``).  The viewer is not
shown, so the time to draw the first frame is not included.

    python benchmarks/bench_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

_VIEWER = r"""
import json, sys, time
plugin = sys.argv[1] == "on"
start = time.perf_counter()
import napari
from npe2 import PluginManager
manager = PluginManager.instance()
manager.discover()
if not plugin:
    manager.disable("napari-tiled-unet")
viewer = napari.Viewer(show=False)
seconds = time.perf_counter() - start
loaded = sorted(m for m in ("napari_tiled_unet", "tensorflow", "keras") if m in sys.modules)
viewer.close()
print(json.dumps({"seconds": seconds, "loaded": loaded}))
"""

_IMPORT = r"""
import json, sys, time
start = time.perf_counter()
import napari_tiled_unet
seconds = time.perf_counter() - start
heavy = sorted(m for m in ("tensorflow", "keras", "napari", "qtpy") if m in sys.modules)
print(json.dumps({"seconds": seconds, "loaded": heavy}))
"""

_MANIFEST = r"""
import json, time
from npe2 import PluginManager, PluginManifest
start = time.perf_counter()
manifest = PluginManifest.from_distribution("napari-tiled-unet")
PluginManager().register(manifest)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""

_DOCK = r"""
import json, sys, time
import napari
start = time.perf_counter()
viewer = napari.Viewer(show=False)
up = time.perf_counter()
viewer.window.add_plugin_dock_widget("napari-tiled-unet", "Segment")
docked = time.perf_counter()
loaded = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
viewer.close()
print(json.dumps({"seconds": docked - up, "total": docked - start, "loaded": loaded}))
"""


def run(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter and return the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def row(name: str, values: list[float], note: str = "") -> None:
    ms = [v * 1000 for v in values]
    print(
        f"{name:<44}{statistics.median(ms):>9.0f}{min(ms):>9.0f}{max(ms):>9.0f}  {note}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'measurement (fresh process each)':<44}{'median':>9}{'min':>9}{'max':>9}  (ms)")
    run(_VIEWER, "on")  # warm the file system caches once
    off, on, loaded_on = [], [], set()
    for _ in range(args.repeat):  # interleaved, so drifts in load hit both alike
        off.append(run(_VIEWER, "off")["seconds"])
        result = run(_VIEWER, "on")
        on.append(result["seconds"])
        loaded_on.update(result["loaded"])
    row("napari.Viewer(), plugin disabled", off)
    row("napari.Viewer(), plugin enabled", on, f"imported at start: {sorted(loaded_on) or 'none'}")
    added = statistics.median(on) - statistics.median(off)
    print(f"{'added by the plugin (difference of medians)':<44}{added * 1000:>9.0f}")
    manifest = [run(_MANIFEST)["seconds"] for _ in range(args.repeat)]
    row("read and register the plugin's manifest", manifest, "what npe2 does for it at start")
    imports = [run(_IMPORT) for _ in range(args.repeat)]
    heavy = sorted({m for r in imports for m in r["loaded"]})
    row(
        "import napari_tiled_unet", [r["seconds"] for r in imports], f"pulls in: {heavy or 'none'}"
    )
    docks = [run(_DOCK) for _ in range(args.repeat)]
    tf = sorted({m for r in docks for m in r["loaded"]})
    row(
        "open the Segment dock in a running viewer",
        [r["seconds"] for r in docks],
        f"imported by then: {tf or 'none'}",
    )
    row("napari.Viewer() to a docked Segment widget", [r["total"] for r in docks])


if __name__ == "__main__":
    main()
