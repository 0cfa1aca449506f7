"""The single place where Keras (and with it TensorFlow) is imported.

Everything that needs Keras calls :func:`get_keras` at run time, so importing the package
stays cheap and a missing TensorFlow gives an actionable message instead of a traceback.
"""

from __future__ import annotations

import os
from types import ModuleType

_INSTALL_HINT = (
    "napari-tiled-unet needs TensorFlow >= 2.16 (Keras 3) to run a U-Net; "
    "install it with: pip install 'tensorflow>=2.16'"
)


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
    # Quiet TensorFlow's C++ start-up banner unless the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import keras
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL_HINT) from exc
    if not keras.__version__.startswith("3"):  # pragma: no cover
        raise ImportError(f"found Keras {keras.__version__}; {_INSTALL_HINT}")
    return keras


def get_tf() -> ModuleType:
    """Import and return ``tensorflow`` (after :func:`get_keras` has set the environment)."""
    get_keras()
    import tensorflow as tf

    return tf
