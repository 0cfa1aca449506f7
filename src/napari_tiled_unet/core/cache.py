"""The cache folder of derived files (such as quantised models) and atomic writes into it.

The folder is ``$NAPARI_TILED_UNET_CACHE`` when that is set, else the user's cache folder
(``platformdirs``).  Everything in it can be deleted at any time: it is made again.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CACHE_ENV_VAR", "atomic_path", "cache_dir"]

#: Environment variable that overrides the cache folder.
CACHE_ENV_VAR = "NAPARI_TILED_UNET_CACHE"


def cache_dir(kind: str) -> Path:
    """Return (and create) the cache folder for files of ``kind``, e.g. ``"int8"``."""
    root = os.environ.get(CACHE_ENV_VAR)
    if not root:
        from platformdirs import user_cache_dir

        root = user_cache_dir("napari-tiled-unet", appauthor=False)
    folder = Path(root) / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is renamed to ``target``.

    When the body raises, the temporary file is deleted and ``target`` is left as it was,
    so a reader never sees a half-written file.
    """
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
