"""Pixel size, units, Z spacing and frame interval of TIFF files (ImageJ, OME, plain)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Calibration", "read_calibration"]


@dataclass(frozen=True)
class Calibration:
    """Physical size of a pixel, a Z step and a time step, as read from the file.

    Attributes
    ----------
    resolution : ((int, int), (int, int)), optional
        The X and Y resolution (pixels per ``unit``) as the file stores them (rationals),
        copied unchanged into outputs.
    unit : str, optional
        Length unit of ``resolution`` and ``spacing`` (ASCII, e.g. ``"um"``).
    spacing : float, optional
        Distance between Z planes.
    interval : float, optional
        Time between frames (seconds).
    """

    resolution: tuple[tuple[int, int], tuple[int, int]] | None = None
    unit: str | None = None
    spacing: float | None = None
    interval: float | None = None

    @property
    def pixel_size(self) -> tuple[float, float] | None:
        """``(y, x)`` pixel size in :attr:`unit`."""
        if self.resolution is None:
            return None
        (xn, xd), (yn, yd) = self.resolution
        return (yd / yn, xd / xn) if xn and yn else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, with the pixel size spelled out."""
        return {**asdict(self), "pixel_size": self.pixel_size}


def _ascii_unit(unit: Any) -> str | None:
    if not unit:
        return None
    text = str(unit).replace("\\u00B5", "u").replace("µ", "u").replace("μ", "u")
    return "um" if text in ("micron", "microns", "um") else text.encode("ascii", "ignore").decode()


def _rational(value: float) -> tuple[int, int]:
    from fractions import Fraction

    fraction = Fraction(value).limit_denominator(2**31 - 1)
    return (fraction.numerator, fraction.denominator)


def _tag_resolution(page: Any) -> tuple[tuple[int, int], tuple[int, int]] | None:
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    x, y = tuple(tags["XResolution"].value), tuple(tags["YResolution"].value)
    return None if x == (1, 1) and y == (1, 1) else (x, y)


def _ome_calibration(xml: str) -> Calibration:
    root = ElementTree.fromstring(xml)
    pixels = next((e for e in root.iter() if e.tag.endswith("Pixels")), None)
    if pixels is None:
        return Calibration()
    size_x, size_y = pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeY")
    resolution = None
    if size_x and size_y and float(size_x) > 0 and float(size_y) > 0:
        resolution = (_rational(1 / float(size_x)), _rational(1 / float(size_y)))
    z, t = pixels.get("PhysicalSizeZ"), pixels.get("TimeIncrement")
    return Calibration(
        resolution,
        _ascii_unit(pixels.get("PhysicalSizeXUnit", "µm")) if resolution else None,
        float(z) if z else None,
        float(t) if t else None,
    )


def read_calibration(tif: Any) -> Calibration:
    """Pixel size, unit, Z spacing and frame interval of an open ``tifffile.TiffFile``."""
    page = tif.pages.first
    if tif.is_imagej:
        info = tif.imagej_metadata or {}
        spacing, interval = info.get("spacing"), info.get("finterval")
        return Calibration(
            _tag_resolution(page),
            _ascii_unit(info.get("unit")),
            float(spacing) if spacing else None,
            float(interval) if interval else None,
        )
    if tif.is_ome and tif.ome_metadata:
        try:
            return _ome_calibration(tif.ome_metadata)
        except (ElementTree.ParseError, ValueError):
            return Calibration()
    resolution = _tag_resolution(page)
    unit = {2: "inch", 3: "cm", 4: "mm", 5: "um"}.get(int(page.tags.valueof(296, 2)))
    if resolution is None or unit is None or (unit == "inch" and resolution[0][0] == 72):
        return Calibration()  # 72 dpi is a writer's default, not a measurement
    return Calibration(resolution, unit)
