"""napari sample data: the bundled real nuclei image with its ground truth (wiring only)."""

from __future__ import annotations

from typing import Any

__all__ = ["nuclei2d_sample"]


def nuclei2d_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """Return the DSB2018 nuclei image and its instance labels as napari layer data."""
    from napari_tiled_unet.data import nuclei2d

    image, labels = nuclei2d()
    return [
        (image, {"name": "nuclei"}, "image"),
        (labels, {"name": "nuclei ground truth", "opacity": 0.4, "visible": False}, "labels"),
    ]
