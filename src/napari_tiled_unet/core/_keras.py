"""The single place where Keras (and with it TensorFlow) is imported.

Everything that needs Keras calls :func:`get_keras` at run time, so importing the package
stays cheap and a missing TensorFlow gives an actionable message instead of a traceback.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import sys
import tempfile
import types
from collections.abc import Iterator
from types import ModuleType

_INSTALL_HINT = (
    "napari-tiled-unet needs TensorFlow >= 2.16 (Keras 3) to run a U-Net; "
    "install it with: pip install 'tensorflow>=2.16'"
)

# Start-up chatter that TensorFlow's C++ runtime writes straight to file descriptor 2 before
# its logging is configured (TF_CPP_MIN_LOG_LEVEL cannot silence it).  Only these lines are
# dropped; anything else written during the import is passed on.
_BENIGN = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
    r"Could not find cuda drivers|failed call to cuInit|cpu_feature_guard|"
    r"To enable the following instructions|rebuild TensorFlow with the appropriate"
)


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """Capture fd 2 while TensorFlow starts, then replay all but the benign lines."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. some GUIs)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines() if line and not _BENIGN.search(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


# TensorFlow's switch for RTLD_GLOBAL (imported by tensorflow/python/pywrap_tensorflow.py).
_GLOBAL_FLAGS_MODULE = "tensorflow.python.pywrap_dlopen_global_flags"


@contextlib.contextmanager
def _isolated_dlopen() -> Iterator[None]:
    """Load TensorFlow's libraries with ``RTLD_DEEPBIND`` and without ``RTLD_GLOBAL``.

    TensorFlow's Linux wheels carry their own LLVM and load it with ``RTLD_GLOBAL``; Mesa's
    LLVM-based OpenGL drivers (llvmpipe under Xvfb, in virtual machines and remote desktops,
    radeonsi on AMD GPUs) load the system's LLVM into the same process, and the two then
    bind to each other's symbols: importing TensorFlow after napari opened its canvas
    segfaults, and drawing after TensorFlow was imported crashes inside Mesa or aborts at
    exit.  With deep binding TensorFlow's libraries prefer their own symbols, and without
    ``RTLD_GLOBAL`` they offer none to libraries loaded later, so both orders work.
    Does nothing outside Linux.
    """
    deepbind = getattr(os, "RTLD_DEEPBIND", 0)
    if not sys.platform.startswith("linux") or not deepbind:
        yield
        return
    # A stand-in for TensorFlow's flag module keeps the default (local) flags meanwhile.
    stub = types.ModuleType(_GLOBAL_FLAGS_MODULE)
    stub.set_dlopen_flags = stub.reset_dlopen_flags = lambda: None  # type: ignore[attr-defined]
    flags = sys.getdlopenflags()
    previous = sys.modules.get(_GLOBAL_FLAGS_MODULE)
    sys.modules[_GLOBAL_FLAGS_MODULE] = stub
    sys.setdlopenflags(flags | deepbind)
    try:
        yield
    finally:
        sys.setdlopenflags(flags)
        if previous is None:
            sys.modules.pop(_GLOBAL_FLAGS_MODULE, None)
        else:
            sys.modules[_GLOBAL_FLAGS_MODULE] = previous


# TensorFlow's two large shared libraries, loaded ahead of its import (see _preload).
_LIBRARIES = ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2")
_preloaded: list[int] = []  # their handles, kept for the life of the process


def _preload() -> None:
    """Load TensorFlow's large shared libraries without holding Python's GIL.

    Loading them runs some hundred milliseconds of static initialisers.  Python's import
    machinery and ``ctypes.CDLL`` both call ``dlopen`` with the GIL held, so when a worker
    thread imports TensorFlow the viewer's main thread stops for that long.  ``dlopen``
    called as a ctypes foreign function releases the GIL; the import that follows finds the
    libraries loaded.  The flags are those :func:`_isolated_dlopen` gives the import (local,
    deep binding).  Any failure just leaves the loading to the import.  Linux only.
    """
    deepbind = getattr(os, "RTLD_DEEPBIND", 0)
    if _preloaded or not sys.platform.startswith("linux") or not deepbind:
        return
    try:
        import ctypes
        import importlib.util

        spec = importlib.util.find_spec("tensorflow")  # finds, does not import
        if spec is None or not spec.submodule_search_locations:
            return
        folder = next(iter(spec.submodule_search_locations))
        dlopen = ctypes.CDLL(None).dlopen
        dlopen.restype, dlopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
        for name in _LIBRARIES:
            path = os.path.join(folder, name)
            if os.path.exists(path):
                handle = dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL | deepbind)
                if handle:
                    _preloaded.append(int(handle))
    except (OSError, AttributeError, ValueError, ImportError):
        return


def get_keras() -> ModuleType:
    """Import and return the ``keras`` module (Keras 3 on the TensorFlow backend).

    Returns
    -------
    module
        The ``keras`` package.

    Raises
    ------
    ImportError
        If TensorFlow/Keras 3 is not installed, with the command that installs it.
    """
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        with _filtered_stderr():
            _preload()
            with _isolated_dlopen():
                import tensorflow as tf
            import keras

            tf.config.list_physical_devices()  # device probing prints its notes now
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL_HINT) from exc
    if not keras.__version__.startswith("3"):  # pragma: no cover
        raise ImportError(f"found Keras {keras.__version__}; {_INSTALL_HINT}")
    # TensorFlow's import leaves ~300,000 Python objects (modules, classes, op registries)
    # that live as long as the process.  Every full garbage collection traversed them,
    # 0.1 s each, a few times per minute of segmenting; moved out of the collector's sight
    # they are never traversed again (objects made from now on are collected as usual).
    gc.freeze()
    return keras


def get_tf() -> ModuleType:
    """Import and return ``tensorflow`` (after :func:`get_keras` has set the environment)."""
    get_keras()
    import tensorflow as tf

    return tf


def set_threads(threads: int) -> None:
    """Run TensorFlow's operations on ``threads`` threads (within ops; 2 ops at a time).

    Must come before TensorFlow runs anything in this process (a one-line ValueError if not).
    """
    tf = get_tf()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(min(2, int(threads)))
    except RuntimeError as exc:
        raise ValueError(
            "the number of threads can only be set before TensorFlow starts; set it first"
        ) from exc
