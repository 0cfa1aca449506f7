"""The widget tests need Qt and napari; without them this folder is not collected."""

from __future__ import annotations

import importlib.util

if not all(importlib.util.find_spec(name) for name in ("qtpy", "napari", "magicgui")):
    collect_ignore_glob = ["test_*.py"]
