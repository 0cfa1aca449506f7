"""What every subcommand does on failure: one line on stderr and an exit status.

A user's mistake (a ``ValueError``, ``TypeError``, ``OSError`` or ``ImportError``) is
printed as ``napari-tiled-unet: error: <one line>`` with status 2, never as a traceback;
warnings are printed as one line each.
"""

from __future__ import annotations

import sys

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "USER_ERRORS", "fail", "one_line", "show_warning"]

EXIT_FAILED = 2
EXIT_INTERRUPTED = 130
#: Errors that are the user's to fix: reported in one line.
USER_ERRORS = (ValueError, TypeError, OSError, ImportError)


def one_line(exc: BaseException) -> str:
    """Return the first line of an error's message (its repr when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def fail(message: str, status: int = EXIT_FAILED) -> int:
    """Print ``message`` as the command's error and return ``status``."""
    print(f"napari-tiled-unet: error: {message}", file=sys.stderr)
    return status


def show_warning(
    message: Warning | str, category: type[Warning], *_: object, **__: object
) -> None:
    """Print a warning as one line (no source location: it is meant for the user).

    A :class:`~napari_tiled_unet.core.precision.PrecisionNote` is news, not a problem, and
    is printed without the word "warning".
    """
    from napari_tiled_unet.core.precision import PrecisionNote

    kind = "" if issubclass(category, PrecisionNote) else "warning: "
    print(f"napari-tiled-unet: {kind}{message}", file=sys.stderr)
