"""Instance labels from the U-Net's class output (pure numpy/scipy).

For the 3-class scheme (background 0 / interior 1 / border 2, see
:mod:`napari_tiled_unet.core.train.targets`) each connected component of the interior class is
one object seed; seeds then grow into the border pixels that touch them, and only into
border pixels, one pixel ring at a time, so a border line between two touching objects is
shared between them and never bridged.  Border pixels that no seed reaches (stray border
blobs) become background.  With 2-class output there is no border class and the objects
are simply the connected components of the foreground.

Real images break that rule in one way: textured nuclei get a few stray border pixels
inside, which cut the interior into pieces.  The default ``method="merge"`` therefore
first turns border islands that touch no background into interior, then merges
neighbouring objects whose union is as convex as a single nucleus (a stray cut leaves the
two halves of one ellipse; a real border between touching nuclei leaves a waist), and
merges fragments far smaller than their neighbours into them.  ``method="seeds"`` is the
plain rule (kept for models whose borders are trustworthy, e.g. for non-convex objects).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_tiled_unet.core.options import DEFAULT_MIN_CONTRAST

__all__ = ["DEFAULT_MIN_CONTRAST", "classes_to_instances", "drop_faint", "relabel_sequential"]

#: A union of two neighbours at least this convex (area / convex hull area) is one object.
_CONVEX = 0.93
#: ... and no larger than this many median objects (two touching nuclei are about two).
_ONE_OBJECT = 1.3
#: Objects smaller than this fraction of the median object join their largest neighbour.
_FRAGMENT = 0.1


def _to_classes(prediction: np.ndarray) -> np.ndarray:
    """Return integer class labels from class labels or channel-last probabilities."""
    arr = np.asarray(prediction)
    if arr.dtype.kind == "f":
        if arr.ndim < 2 or arr.shape[-1] not in (2, 3):
            raise ValueError(
                f"float input is read as probabilities with 2 or 3 classes on the last axis, "
                f"got shape {arr.shape}; pass integer class labels instead"
            )
        return np.argmax(arr, axis=-1)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"class labels must be integer or bool, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError("class labels must be an image with at least one axis, got a scalar")
    if arr.size and arr.min() < 0:
        raise ValueError(f"class labels must be >= 0, got minimum {arr.min()}")
    return arr


def _grow_into(labels: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Grow labelled seeds into the pixels of ``region`` connected to them, ring by ring.

    A pixel reached by two seeds in the same ring goes to the higher label.  Each ring
    looks only at the pixels still to reach (their full neighbourhood, read from a copy
    padded with background), not at the whole image.
    """
    todo = region & (labels == 0)
    if not todo.any():
        return labels
    padded = np.pad(labels, 1)
    flat = padded.ravel()
    strides = np.array(padded.strides) // padded.itemsize
    offsets = [
        int(np.dot(step, strides))
        for step in np.ndindex(*(3,) * labels.ndim)
        if any(s != 1 for s in step)
    ]
    offsets = [o - int(strides.sum()) for o in offsets]  # steps of -1, 0, +1 per axis
    index = np.ravel_multi_index(np.nonzero(todo), labels.shape)
    index = np.ravel_multi_index(
        tuple(i + 1 for i in np.unravel_index(index, labels.shape)), padded.shape
    )
    while index.size:
        grown = flat[index + offsets[0]]
        for offset in offsets[1:]:
            np.maximum(grown, flat[index + offset], out=grown)
        reached = grown > 0
        if not reached.any():
            break
        flat[index[reached]] = grown[reached]
        index = index[~reached]
    labels[...] = padded[(slice(1, -1),) * labels.ndim]
    return labels


def _smallest_uint(n: int) -> np.dtype:
    for dtype in (np.uint16, np.uint32):
        if n <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def relabel_sequential(labels: np.ndarray, *, min_size: int = 0) -> np.ndarray:
    """Drop objects smaller than ``min_size`` pixels and renumber the rest ``1..N``.

    Objects keep their order (by old label).  Returns uint16, or uint32 when ``N`` exceeds
    65535 (uint64 beyond that).
    """
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu" or (arr.size and arr.min() < 0):
        raise ValueError("labels must be non-negative integers (0 = background)")
    if not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ValueError(f"min_size must be an integer >= 0 pixels, got {min_size!r}")
    top = int(arr.max(initial=0))
    if top <= max(arr.size, 65536):  # ids dense enough: a table lookup, no sort
        counts = np.bincount(arr.ravel(), minlength=top + 1)
        keep = counts >= max(min_size, 1)
        keep[0] = False
        mapping = np.zeros(top + 1, dtype=np.int64)
        mapping[keep] = np.arange(1, int(keep.sum()) + 1)
        return mapping[arr].astype(_smallest_uint(int(keep.sum())))
    # Huge, sparse label ids: np.unique instead of a table over all of them.
    ids, inverse, counts = np.unique(arr, return_inverse=True, return_counts=True)
    keep = (counts >= min_size) & (ids != 0)
    mapping = np.zeros(ids.size, dtype=np.int64)
    mapping[keep] = np.arange(1, int(keep.sum()) + 1)
    return mapping[inverse.reshape(arr.shape)].astype(_smallest_uint(int(keep.sum())))


def classes_to_instances(
    prediction: np.ndarray,
    *,
    interior_class: int = 1,
    border_class: int | None = 2,
    min_size: int = 0,
    connectivity: int = 1,
    method: str = "merge",
) -> np.ndarray:
    """Turn per-pixel classes (or class probabilities) into instance labels.

    Parameters
    ----------
    prediction : ndarray
        Integer/bool class labels of any dimensionality, or float probabilities with the
        2 or 3 classes on the last axis (reduced by argmax).  For 2-class output the
        foreground is the ``interior_class``.
    interior_class : int
        Class whose connected components seed the objects (1 in both schemes).
    border_class : int or None
        Class the seeds grow into (2 in the 3-class scheme); absent values or None mean no
        growth, i.e. plain connected components of the interior/foreground.
    min_size : int
        Objects with fewer pixels (after growth) are removed; 0 keeps all.  E.g. 20 drops
        speckles.
    connectivity : int
        Neighbourhood that links interior pixels: 1 = faces only (4-neighbourhood in 2D,
        robust to thin predicted borders), ``ndim`` = full (8 in 2D).
    method : {"merge", "seeds"}
        "merge" (default): stray border pixels inside an object do not split it (see the
        module's description; 2D planes, each plane of a stack on its own).  "seeds": every
        interior component is an object.

    Returns
    -------
    ndarray of uint16 (uint32 for more than 65535 objects)
        Instance labels, 0 = background, objects numbered ``1..N`` without gaps.  uint16 is
        the minimum so that all images of a stack share one dtype.

    Raises
    ------
    ValueError
        For non-numeric or negative classes, probabilities without a 2/3-class last axis,
        equal interior and border classes, or invalid ``min_size``/``connectivity``.
    """
    classes = _to_classes(prediction)
    if interior_class == border_class:
        raise ValueError(f"interior_class and border_class must differ, both are {border_class}")
    if connectivity not in range(1, classes.ndim + 1):
        raise ValueError(f"connectivity must be 1..{classes.ndim}, got {connectivity!r}")
    if method not in ("merge", "seeds"):
        raise ValueError(f"method must be 'merge' or 'seeds', got {method!r}")
    if method == "merge" and border_class is not None and classes.ndim >= 2:
        objects = np.zeros(classes.shape, np.int64)
        offset = 0
        for index in np.ndindex(*classes.shape[:-2]):
            plane = _merged_plane(classes[index], interior_class, border_class, connectivity)
            objects[index] = np.where(plane > 0, plane + offset, 0)
            offset += int(plane.max(initial=0))
        return relabel_sequential(objects, min_size=min_size)
    structure = ndi.generate_binary_structure(classes.ndim, connectivity)
    seeds, _ = ndi.label(classes == interior_class, structure=structure)
    if border_class is not None:
        seeds = _grow_into(seeds, classes == border_class)
    return relabel_sequential(seeds, min_size=min_size)


def _merged_plane(
    classes: np.ndarray, interior_class: int, border_class: int, connectivity: int
) -> np.ndarray:
    """Objects of one 2D plane with stray border pixels healed (``method="merge"``)."""
    interior = classes == interior_class
    border = classes == border_class
    islands, n = ndi.label(border)
    if n:  # border islands that touch no background lie inside an object
        background = ~(interior | border)
        near = ndi.binary_dilation(background, ndi.generate_binary_structure(2, 2))
        touching = np.unique(islands[near & border])
        inside = np.ones(n + 1, bool)
        inside[touching] = False
        inside[0] = False
        interior = interior | inside[islands]
    structure = ndi.generate_binary_structure(2, connectivity)
    seeds, count = ndi.label(interior, structure=structure)
    objects = _grow_into(seeds, border)
    if count > 1:
        objects = _merge_neighbours(objects)
    return objects


def _neighbours(objects: np.ndarray) -> list[tuple[int, int]]:
    """Sorted pairs ``(a, b)``, ``a < b``, of labels that touch (8-neighbourhood)."""
    pairs: set[tuple[int, int]] = set()
    shifted = (
        (objects[:, :-1], objects[:, 1:]),
        (objects[:-1, :], objects[1:, :]),
        (objects[:-1, :-1], objects[1:, 1:]),
        (objects[:-1, 1:], objects[1:, :-1]),
    )
    for a, b in shifted:
        hit = (a != b) & (a > 0) & (b > 0)
        lo, hi = np.minimum(a[hit], b[hit]), np.maximum(a[hit], b[hit])
        pairs.update(zip(lo.tolist(), hi.tolist()))
    return sorted(pairs)


def _solidity(mask: np.ndarray) -> float:
    """Area over convex hull area of a boolean mask (1 for a convex shape)."""
    from skimage.morphology import convex_hull_image

    hull = convex_hull_image(mask)
    return float(mask.sum()) / max(float(hull.sum()), 1.0)


def _merge_neighbours(objects: np.ndarray) -> np.ndarray:
    """Merge touching objects whose union is convex, and small fragments into neighbours."""
    areas = np.bincount(objects.ravel()).astype(np.int64)
    sizes = np.sort(areas[1:][areas[1:] > 0])
    # Area-weighted median: the size of a typical object even when many are in pieces.
    median = float(sizes[np.searchsorted(np.cumsum(sizes), sizes.sum() / 2)])
    groups = {i: [i] for i in range(1, len(areas))}
    boxes = {i: box for i, box in enumerate(ndi.find_objects(objects), start=1) if box}
    owner = np.arange(len(areas))
    for a, b in _neighbours(objects):
        ra, rb = int(owner[a]), int(owner[b])
        if ra == rb:
            continue
        box = tuple(
            slice(min(p.start, q.start), max(p.stop, q.stop))
            for p, q in zip(boxes[ra], boxes[rb], strict=True)
        )
        small = min(areas[ra], areas[rb]) < _FRAGMENT * median
        one_size = areas[ra] + areas[rb] <= _ONE_OBJECT * median
        if one_size and not small:  # a cut through one convex shape leaves a convex union
            one_size = _solidity(np.isin(objects[box], groups[ra] + groups[rb])) >= _CONVEX
        if small or one_size:
            for member in groups[rb]:
                owner[member] = ra
            groups[ra] += groups.pop(rb)
            areas[ra] += areas[rb]
            boxes[ra] = box
    return owner[objects]


def drop_faint(
    labels: np.ndarray, image: np.ndarray, min_contrast: float = DEFAULT_MIN_CONTRAST
) -> np.ndarray:
    """Remove objects much fainter than the typical object of their 2D plane.

    A network trained to find dim nuclei next to bright ones also finds faint ghosts
    (out-of-focus nuclei, debris, autofluorescence) at a few percent of a nucleus'
    brightness, which nobody would annotate.  An object's contrast is its mean intensity
    minus the local background (the image smoothed over the background pixels only, over
    about two object diameters, so uneven illumination does not count); objects whose
    contrast is below ``min_contrast`` times the median contrast of the objects in their
    plane are removed.  Planes with fewer than 3 objects, or whose objects are not brighter
    than their surroundings (e.g. dark nuclei on bright background), are left as they are.

    Parameters
    ----------
    labels : ndarray of int
        Instance labels, Y and X last.
    image : ndarray
        The intensities the labels were made from: the shape of ``labels``, or with one
        more axis at the end (channels, averaged).
    min_contrast : float
        Fraction of the typical contrast, ``0 <= min_contrast < 1``; 0 keeps everything.

    Returns
    -------
    ndarray
        The labels without the faint objects, renumbered ``1..N`` per call (the dtype of
        :func:`relabel_sequential`).
    """
    labels = np.asarray(labels)
    image = np.asarray(image)
    if not 0 <= float(min_contrast) < 1:
        raise ValueError(f"min_contrast must be in [0, 1), got {min_contrast!r}")
    if image.shape != labels.shape:
        if image.shape[:-1] != labels.shape:
            raise ValueError(f"image shape {image.shape} does not fit labels {labels.shape}")
        image = image.mean(axis=-1)
    if labels.ndim < 2:
        raise ValueError(f"labels must have Y and X axes, got shape {labels.shape}")
    if min_contrast == 0 or labels.max(initial=0) == 0:
        return relabel_sequential(labels)
    keep = np.zeros(int(labels.max()) + 1, bool)
    for index in np.ndindex(*labels.shape[:-2]):
        plane = labels[index]
        ids, contrast = _contrasts(plane, image[index])
        typical = float(np.median(contrast)) if ids.size else 0.0
        if ids.size < 3 or not typical > 0:
            keep[ids] = True
        else:
            keep[ids[contrast >= min_contrast * typical]] = True
    keep[0] = False
    return relabel_sequential(np.where(keep[labels], labels, 0))


def _contrasts(plane: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mean intensity minus local background) of the objects of one 2D plane.

    The background is smoothed on a grid of blocks a few pixels wide (it varies over tens
    of pixels) and read at each object's centre, so a megapixel plane takes milliseconds.
    """
    flat = plane.ravel()
    counts = np.bincount(flat)
    ids = np.flatnonzero(counts)
    ids = ids[ids > 0]
    if not ids.size:
        return ids, np.zeros(0)
    values = np.nan_to_num(image.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0).ravel()
    sums = np.bincount(flat, weights=values, minlength=counts.size)
    diameter = 2 * np.sqrt(np.median(counts[ids]) / np.pi)
    sigma = max(2.0 * diameter, 4.0)
    block = max(1, int(sigma // 3))
    height, width = plane.shape
    rows, cols = -(-height // block), -(-width // block)
    yy, xx = np.indices(plane.shape)
    cell = ((yy // block) * cols + xx // block).ravel()
    background = flat == 0
    area = np.bincount(cell, weights=background, minlength=rows * cols).reshape(rows, cols)
    total = np.bincount(cell, weights=np.where(background, values, 0.0), minlength=rows * cols)
    fallback = float(total.sum() / max(area.sum(), 1.0))  # the mean background
    scale = sigma / block
    weight = ndi.gaussian_filter(area, scale, mode="nearest")
    smooth = ndi.gaussian_filter(total.reshape(rows, cols), scale, mode="nearest")
    level = np.full(weight.shape, fallback)
    np.divide(smooth, weight, out=level, where=weight > 1e-3 * block**2)
    cy = np.bincount(flat, weights=yy.ravel(), minlength=counts.size)[ids] / counts[ids]
    cx = np.bincount(flat, weights=xx.ravel(), minlength=counts.size)[ids] / counts[ids]
    local = level[(cy // block).astype(int), (cx // block).astype(int)]
    return ids, sums[ids] / counts[ids] - local
