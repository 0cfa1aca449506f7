"""The precision, memory budget and test-time augmentation fields of the run forms."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, ComboBox, LineEdit

from napari_tiled_unet.core.precision import PRECISIONS
from napari_tiled_unet.core.tiling import parse_bytes

__all__ = ["memory_request", "run_fields", "run_options"]


def run_fields() -> tuple[ComboBox, LineEdit, CheckBox]:
    """Return new precision, memory budget and test-time augmentation fields."""
    precision = ComboBox(label="Precision", choices=PRECISIONS)
    budget = LineEdit(label="Memory budget", value="")
    tta = CheckBox(text="Test-time augmentation (8 network passes: 8x slower)")
    precision.tooltip = (
        "Arithmetic of the network. bfloat16 needs a CPU with avx512_bf16/amx_bf16 or a "
        "GPU, float16 a GPU; elsewhere float32 is used, with a warning. int8 (the onnx "
        "extra) is quantised on tiles of the image and used only where its labels agree "
        "with float32's on other tiles; else bfloat16 or float32, with a warning."
    )
    budget.tooltip = (
        "Memory for one network call, e.g. 300MB or 2GB; empty: a quarter of the "
        "available memory. It sets the automatic tile and batch size."
    )
    tta.tooltip = "Average the class probabilities over the 8 flips and rotations of each tile."
    return precision, budget, tta


def memory_request(form: Any) -> int | None:
    """Return the budget in ``form``'s field: None (automatic) if empty or unreadable.

    An unreadable value is reported when the run starts (:func:`run_options`).
    """
    text = form.memory_budget.value.strip()
    try:
        return parse_bytes(text) if text else None
    except ValueError:
        return None


def run_options(form: Any) -> dict[str, Any]:
    """Return precision, memory budget and augmentation of ``form`` (one-line ValueError)."""
    text = form.memory_budget.value.strip()
    return {
        "precision": form.precision.value,
        "memory_budget": parse_bytes(text) if text else None,
        "tta": bool(form.tta.value),
    }
