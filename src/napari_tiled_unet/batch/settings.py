"""The widgets' parameters between napari sessions: a small JSON file per widget.

No Qt here: a widget reads the values when it opens, writes them when they change, and
"Restore defaults" writes its defaults (:data:`SEGMENT_DEFAULTS`, :data:`BATCH_DEFAULTS`,
:data:`TRAIN_DEFAULTS`) back.  A missing, unreadable or outdated file silently falls back
to the defaults, key by key.

Files carry a format version (:data:`SETTINGS_VERSION`).  A widget writes every value, the
untouched defaults too, so a file from before version 2 holds the Segment widget's old
defaults ("class labels", minimum size 0) whether or not anyone chose them; on reading, a
value that equals a default retired since (:data:`_RETIRED_DEFAULTS`) gives way to today's.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from napari_tiled_unet.core.options import DEFAULT_MIN_CONTRAST, DEFAULT_MIN_SIZE

__all__ = [
    "BATCH_DEFAULTS",
    "SETTINGS_VERSION",
    "SEGMENT_DEFAULTS",
    "TRAIN_DEFAULTS",
    "batch_settings_path",
    "load_settings",
    "save_settings",
    "settings_path",
    "train_settings_path",
]

#: Parameters of the Segment widget that persist, with their defaults.
SEGMENT_DEFAULTS: dict[str, Any] = {
    "model": "",
    "stack": "whole stack",
    "normalize": "as the model was trained",
    "low": 1.0,
    "high": 99.8,
    "tile_size": 0,
    # "auto": instance labels for models with a border class (core.options.output_kind).
    "output": "auto",
    "threshold": 0.5,
    "min_size": DEFAULT_MIN_SIZE,
    "min_contrast": DEFAULT_MIN_CONTRAST,
    "probabilities": False,
    "object_size": "auto",
    "precision": "float32",
    "memory_budget": "",
    "tta": False,
}

#: Parameters of the Batch widget that persist, with their defaults ("" = not chosen).
BATCH_DEFAULTS: dict[str, Any] = {
    "input_folder": "",
    "pattern": "",
    "output_folder": "",
    "model": "",
    "axes": "",
    "tile_size": 0,
    "normalize": "as the model was trained",
    "object_size": "auto",
    "probabilities": False,
    "probability_dtype": "float32",
    "overwrite": False,
    "precision": "float32",
    "memory_budget": "",
    "tta": False,
}

#: Parameters of the Train widget that persist, with their defaults ("" = not chosen; an
#: empty learning rate means the optimiser's default).
TRAIN_DEFAULTS: dict[str, Any] = {
    "start": "new",
    "classes": 3,
    "depth": 4,
    "base_filters": 32,
    "model": "",
    "steps": 100,
    "epochs": 10,
    "learning_rate": "",
    "optimizer": "adam",
    "w0": 10.0,
    "sigma": 5.0,
    "model_name": "my_unet",
}


#: Format of the settings files; version 2 made the output policy the core's.
SETTINGS_VERSION = 2
_VERSION_KEY = "version"
#: Defaults of files older than version 2 that are defaults no more, per key.
_RETIRED_DEFAULTS: dict[str, Any] = {"output": "class labels", "min_size": 0}


def _config_file(name: str) -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-tiled-unet", appauthor=False)) / name


def settings_path() -> Path:
    """Return the Segment widget's settings file, in the user config folder."""
    return _config_file("segment_widget.json")


def batch_settings_path() -> Path:
    """Return the Batch widget's settings file, in the user config folder."""
    return _config_file("batch_widget.json")


def train_settings_path() -> Path:
    """Return the Train widget's settings file, in the user config folder."""
    return _config_file("train_widget.json")


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def load_settings(
    path: Path | None = None, defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return the stored parameters, completed and checked against the defaults.

    Parameters
    ----------
    path : pathlib.Path, optional
        The settings file (default :func:`settings_path`).
    defaults : dict, optional
        The parameters and their defaults (default :data:`SEGMENT_DEFAULTS`).

    Returns
    -------
    dict
        One entry per key of ``defaults``; stored values of the wrong type and unknown keys
        are ignored, and so are old defaults in files older than :data:`SETTINGS_VERSION`.
    """
    defaults = SEGMENT_DEFAULTS if defaults is None else defaults
    values = dict(defaults)
    try:
        stored = json.loads((path or settings_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return values
    if isinstance(stored, dict):
        version = stored.get(_VERSION_KEY, 1)
        if not isinstance(version, int) or version < SETTINGS_VERSION:
            stored = {k: v for k, v in stored.items() if _RETIRED_DEFAULTS.get(k, ...) != v}
        for key, default in defaults.items():
            if key in stored and _same_kind(stored[key], default):
                values[key] = type(default)(stored[key])
    return values


def save_settings(
    values: dict[str, Any], path: Path | None = None, defaults: dict[str, Any] | None = None
) -> bool:
    """Write the known parameters of ``values``; return False if the file cannot be written.

    Known are the keys of ``defaults`` (default :data:`SEGMENT_DEFAULTS`).  The file is
    replaced atomically, so a crash never leaves half a settings file.
    """
    path = path or settings_path()
    defaults = SEGMENT_DEFAULTS if defaults is None else defaults
    known: dict[str, Any] = {_VERSION_KEY: SETTINGS_VERSION}
    known.update({key: values[key] for key in defaults if key in values})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".settings.", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(known, handle, indent=2)
        os.replace(tmp, path)
    except OSError:
        return False
    return True
