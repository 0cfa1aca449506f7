"""The Segment widget's parameters between napari sessions: a small JSON file.

No Qt here: the widget reads the values when it opens, writes them when they change, and
"Restore defaults" writes :data:`SEGMENT_DEFAULTS` back.  A missing, unreadable or
outdated file silently falls back to the defaults, key by key.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["SEGMENT_DEFAULTS", "load_settings", "save_settings", "settings_path"]

#: Parameters of the Segment widget that persist, with their defaults.
SEGMENT_DEFAULTS: dict[str, Any] = {
    "model": "",
    "stack": "whole stack",
    "normalize": "as the model was trained",
    "low": 1.0,
    "high": 99.8,
    "tile_size": 0,
    "output": "class labels",
    "threshold": 0.5,
    "min_size": 0,
    "probabilities": False,
}


def settings_path() -> Path:
    """Return the settings file, in the user config folder of ``napari-tiled-unet``."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-tiled-unet", appauthor=False)) / "segment_widget.json"


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def load_settings(path: Path | None = None) -> dict[str, Any]:
    """Return the stored parameters, completed and checked against the defaults.

    Parameters
    ----------
    path : pathlib.Path, optional
        The settings file (default :func:`settings_path`).

    Returns
    -------
    dict
        One entry per key of :data:`SEGMENT_DEFAULTS`; stored values of the wrong type and
        unknown keys are ignored.
    """
    values = dict(SEGMENT_DEFAULTS)
    try:
        stored = json.loads((path or settings_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return values
    if isinstance(stored, dict):
        for key, default in SEGMENT_DEFAULTS.items():
            if key in stored and _same_kind(stored[key], default):
                values[key] = type(default)(stored[key])
    return values


def save_settings(values: dict[str, Any], path: Path | None = None) -> bool:
    """Write the known parameters of ``values``; return False if the file cannot be written.

    The file is replaced atomically, so a crash never leaves half a settings file.
    """
    path = path or settings_path()
    known = {key: values[key] for key in SEGMENT_DEFAULTS if key in values}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".settings.", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(known, handle, indent=2)
        os.replace(tmp, path)
    except OSError:
        return False
    return True
