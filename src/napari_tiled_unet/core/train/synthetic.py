"""Generated fluorescence images of nuclei with exact instance labels (numpy/scipy only).

:func:`synthetic_nuclei` draws an image of nuclei of a chosen typical diameter with the
things that make real images hard: textured chromatin, bright nucleoli or a dim rim, dim
and bright nuclei side by side, touching and overlapping nuclei, dividing cells (pairs of
small daughters), debris that is not a nucleus, uneven background, blur and
Poisson + Gaussian noise.  It feeds the training of the bundled model and the tests of the
object-size estimator and the instance post-processing, which need images whose object
size and instances are known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["NucleiStyle", "synthetic_nuclei"]


@dataclass(frozen=True)
class NucleiStyle:
    """How a generated image looks; every field is drawn at random by default.

    Attributes
    ----------
    density : float
        Fraction of the image covered by nuclei (before overlap).
    texture : float
        Strength of the chromatin speckle (0 = smooth).
    nucleoli : int
        Largest number of bright spots per nucleus.
    rim : float
        -1..1: negative makes the rim dim and the core bright, positive the reverse.
    contrast : float
        Spread of brightness between nuclei (0 = all alike, 1 = 20x apart).
    touching : float
        Probability that a nucleus is placed against an earlier one.
    dividing : float
        Fraction of nuclei drawn as a dividing pair.
    debris : float
        Specks and fragments per nucleus (unlabelled).
    background : float
        Uneven background level relative to the nuclei.
    blur : float
        Gaussian blur in units of the diameter / 20.
    photons : float
        Photons at the brightest nucleus (Poisson noise); 0 for none.
    read_noise : float
        Gaussian noise relative to the brightest nucleus.
    """

    density: float = 0.25
    texture: float = 0.3
    nucleoli: int = 2
    rim: float = 0.0
    contrast: float = 0.5
    touching: float = 0.3
    dividing: float = 0.05
    debris: float = 0.2
    background: float = 0.05
    blur: float = 1.0
    photons: float = 300.0
    read_noise: float = 0.01

    @classmethod
    def random(cls, rng: np.random.Generator) -> NucleiStyle:
        """Draw a style over the whole range the bundled model is trained for."""
        return cls(
            density=float(rng.uniform(0.08, 0.45)),
            texture=float(rng.choice([0.0, rng.uniform(0.1, 0.8)])),
            nucleoli=int(rng.integers(0, 5)),
            rim=float(rng.uniform(-0.8, 0.6)),
            contrast=float(rng.uniform(0.0, 1.0)),
            touching=float(rng.uniform(0.0, 0.7)),
            dividing=float(rng.uniform(0.0, 0.15)),
            debris=float(rng.uniform(0.0, 0.5)),
            background=float(rng.uniform(0.0, 0.3)),
            blur=float(rng.uniform(0.3, 2.0)),
            photons=float(rng.choice([0.0, np.exp(rng.uniform(np.log(20), np.log(2000)))])),
            read_noise=float(rng.uniform(0.0, 0.05)),
        )


def _blob_mask(
    shape: tuple[int, int],
    centre: tuple[float, float],
    radii: tuple[float, float],
    angle: float,
    wobble: np.ndarray,
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """Box, mask and normalised radius (0 centre .. 1 edge) of one irregular ellipse."""
    reach = max(radii) * 1.3 + 2
    y0, y1 = max(0, int(centre[0] - reach)), min(shape[0], int(centre[0] + reach) + 1)
    x0, x1 = max(0, int(centre[1] - reach)), min(shape[1], int(centre[1] + reach) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - centre[0], xx - centre[1]
    u = (dy * np.cos(angle) + dx * np.sin(angle)) / radii[0]
    v = (-dy * np.sin(angle) + dx * np.cos(angle)) / radii[1]
    theta = np.arctan2(v, u)
    edge = 1.0 + sum(
        a * np.cos((k + 2) * theta + p) for k, (a, p) in enumerate(wobble.reshape(-1, 2))
    )
    r = np.sqrt(u**2 + v**2) / edge
    return (slice(y0, y1), slice(x0, x1)), r <= 1.0, r


def _place(
    shape: tuple[int, int],
    diameter: float,
    style: NucleiStyle,
    rng: np.random.Generator,
) -> list[tuple[tuple[float, float], tuple[float, float], float]]:
    """Centres, radii and angles of the nuclei (dividing cells as two small daughters)."""
    area = np.pi * (diameter / 2) ** 2
    count = max(1, int(rng.poisson(style.density * shape[0] * shape[1] / area)))
    nuclei: list[tuple[tuple[float, float], tuple[float, float], float]] = []
    for _ in range(count):
        size = diameter / 2 * float(np.exp(rng.normal(0.0, 0.15)))
        elong = float(rng.uniform(1.0, 1.6))
        radii = (size * np.sqrt(elong), size / np.sqrt(elong))
        angle = float(rng.uniform(0, np.pi))
        if nuclei and rng.random() < style.touching:  # against an earlier nucleus
            (cy, cx), (ra, _), _ = nuclei[int(rng.integers(len(nuclei)))]
            direction = rng.uniform(0, 2 * np.pi)
            gap = (ra + size) * rng.uniform(0.8, 1.0)
            centre = (
                float(np.clip(cy + gap * np.sin(direction), 0, shape[0] - 1)),
                float(np.clip(cx + gap * np.cos(direction), 0, shape[1] - 1)),
            )
        else:
            centre = (float(rng.uniform(0, shape[0])), float(rng.uniform(0, shape[1])))
        if rng.random() < style.dividing:  # two daughters side by side
            small = (size * 0.7, size * 0.5)
            off = size * 0.55
            for sign in (-1, 1):
                c = (
                    centre[0] + sign * off * np.sin(angle),
                    centre[1] + sign * off * np.cos(angle),
                )
                nuclei.append((c, small, angle + np.pi / 2))
        else:
            nuclei.append((centre, radii, angle))
    return nuclei


def _texture(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Band-passed noise of unit spread with blobs about ``scale`` px across."""
    noise = ndi.gaussian_filter(rng.normal(0, 1, shape), max(scale / 2, 0.5))
    noise -= ndi.gaussian_filter(noise, max(scale * 2, 1.0))
    return noise / (noise.std() + 1e-9)


def _paint_nucleus(
    signal: np.ndarray,
    box: tuple[slice, slice],
    mask: np.ndarray,
    r: np.ndarray,
    style: NucleiStyle,
    diameter: float,
    rng: np.random.Generator,
) -> None:
    """Add one nucleus' brightness (profile, nucleoli) to ``signal`` inside ``mask``."""
    brightness = float(np.exp(-rng.uniform(0, 3.0 * style.contrast)))
    rim = style.rim + rng.normal(0, 0.15)
    profile = 1.0 + rim * (r**2 - 0.5)
    value = brightness * np.clip(profile, 0.1, None)
    spots = int(rng.integers(0, style.nucleoli + 1))
    if spots:
        ys, xs = np.nonzero(mask)
        for pick in rng.integers(len(ys), size=spots):
            sy, sx = ys[pick], xs[pick]
            width = diameter * rng.uniform(0.05, 0.12)
            yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
            bump = np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * width**2))
            value = value + brightness * rng.uniform(0.5, 1.5) * bump
    region = signal[box]
    region[mask] += value[mask]  # overlapping nuclei add up, as fluorescence does


def _debris(signal: np.ndarray, diameter: float, n: int, rng: np.random.Generator) -> None:
    """Add unlabelled specks and small fragments (at most a quarter of a nucleus across)."""
    shape = signal.shape
    for _ in range(n):
        size = diameter * rng.uniform(0.04, 0.25) / 2
        centre = (float(rng.uniform(0, shape[0])), float(rng.uniform(0, shape[1])))
        box, mask, _ = _blob_mask(
            shape, centre, (size, size * rng.uniform(0.5, 1)), 0.0, np.zeros(2)
        )
        region = signal[box]
        region[mask] = np.maximum(region[mask], rng.uniform(0.2, 1.2))


def synthetic_nuclei(
    shape: tuple[int, int],
    diameter: float,
    *,
    rng: np.random.Generator,
    style: NucleiStyle | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate a fluorescence-like image of nuclei and its instance labels.

    Parameters
    ----------
    shape : (int, int)
        Image size ``(Y, X)``.
    diameter : float
        Typical nucleus diameter in pixels (sizes vary by about +-15 % around it; the median
        equivalent diameter of the labels is within a few per cent of it).
    rng : numpy.random.Generator
        Source of randomness.
    style : NucleiStyle, optional
        Appearance; default :meth:`NucleiStyle.random`.

    Returns
    -------
    image : ndarray of float32
        ``(Y, X)``, photon counts (or 0..~1 values without Poisson noise).
    labels : ndarray of int32
        ``(Y, X)`` instances numbered ``1..N`` (later nuclei lie on top of earlier ones;
        pieces smaller than a tenth of a nucleus are dropped).
    """
    if diameter <= 2:
        raise ValueError(f"diameter must be > 2 px, got {diameter!r}")
    style = style or NucleiStyle.random(rng)
    labels = np.zeros(shape, np.int32)
    signal = np.zeros(shape, np.float32)
    for index, (centre, radii, angle) in enumerate(_place(shape, diameter, style, rng), 1):
        wobble = rng.normal(0, 0.04, size=6)
        box, mask, r = _blob_mask(shape, centre, radii, angle, wobble)
        if mask.any():
            labels[box][mask] = index
            _paint_nucleus(signal, box, mask, r, style, diameter, rng)
    labels = _keep_main_pieces(labels, min_pixels=max(4, int(0.1 * np.pi * diameter**2 / 4)))
    if style.texture > 0:
        speckle = _texture(shape, max(diameter / 10, 1.0), rng)
        signal *= np.clip(1 + style.texture * 0.5 * speckle, 0.05, None)
    _debris(signal, diameter, int(rng.poisson(style.debris * labels.max())), rng)
    gradient = _texture(shape, max(shape) / 2, rng)
    signal += style.background * (1 + 0.5 * gradient).clip(0, None)
    signal = ndi.gaussian_filter(signal, style.blur * diameter / 20)
    if style.photons > 0:
        signal = rng.poisson(np.clip(signal, 0, None) * style.photons) / style.photons
    signal = signal + rng.normal(0, style.read_noise, shape)
    return np.asarray(signal, np.float32), labels


def _keep_main_pieces(labels: np.ndarray, *, min_pixels: int) -> np.ndarray:
    """Keep the largest piece of every object cut by those on top; renumber 1..N."""
    out = np.zeros_like(labels)
    count = 0
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        pieces, n = ndi.label(labels[box] == index)
        sizes = np.bincount(pieces.ravel())[1:]
        if n == 0 or sizes.max() < min_pixels:
            continue
        count += 1
        out[box][pieces == 1 + int(np.argmax(sizes))] = count
    return out
