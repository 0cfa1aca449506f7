"""Where the bundled model and Otsu + watershed disagree with the held-out labels, and why.

For every true nucleus of the held-out sets of ``eval_default_model.py`` (at x1), with all
defaults, each method either matches it (a prediction with IoU >= 0.5) or fails in one of
these ways, checked in this order:

- *missed*: no prediction covers any of it;
- *split*: two or more predictions each cover at least a tenth of it (what the evaluation
  counts as over-segmentation);
- *merged*: the best prediction also covers at least a tenth of another true nucleus;
- *too big* / *too small*: the best prediction is more than 1.5x / less than 0.6x its area;
- *shifted*: anything else.

Prints the counts per set and method (``--per-image``: per image first, numbered in the
files' sorted order: BBBC007 #0-#3 are 17P1_POS0013, 20P1_POS0008, 20P1_POS0011, A9_p9d),
then writes a picture of the nuclei that Otsu + watershed matches and the U-Net does not (the
cases behind the evaluation's gap), and one of the reverse: a row per nucleus, a crop of the
image (contrast stretched per crop) with the label's outline in green and the method's
outlines in red (U-Net, left) or blue (Otsu, right); the rows and their failures are
printed.  Look at them before trusting either number.

    python benchmarks/show_disagreements.py [--model M.keras] [--out FOLDER] [--most 24]
        [--per-image]
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from eval_default_model import held_out_sets, otsu_watershed  # noqa: E402

from napari_tiled_unet.core.options import DEFAULT_MIN_CONTRAST  # noqa: E402

CROP = 64  # px around a nucleus' centre
ZOOM = 3


def verdict(pred: np.ndarray, truth: np.ndarray, label: int) -> str:
    """How ``pred`` does on the true nucleus ``label`` (see the module docstring)."""
    mask = truth == label
    area = int(mask.sum())
    ids, counts = np.unique(pred[mask], return_counts=True)
    hits = [(int(i), int(c)) for i, c in zip(ids, counts) if i]
    if not hits:
        return "missed"
    best, overlap = max(hits, key=lambda hit: hit[1] / ((pred == hit[0]).sum() + area - hit[1]))
    best_area = int((pred == best).sum())
    if overlap / (best_area + area - overlap) >= 0.5:
        return "matched"
    if sum(c >= 0.1 * area for _, c in hits) >= 2:
        return "split"
    others, shared = np.unique(truth[(pred == best) & ~mask], return_counts=True)
    if any(o and s >= 0.1 * (truth == o).sum() for o, s in zip(others, shared)):
        return "merged"
    if best_area > 1.5 * area:
        return "too big"
    return "too small" if best_area < 0.6 * area else "shifted"


def crop(image: np.ndarray, centre: tuple[int, int]) -> tuple[slice, slice]:
    half = CROP // 2
    y = int(np.clip(centre[0] - half, 0, max(image.shape[0] - CROP, 0)))
    x = int(np.clip(centre[1] - half, 0, max(image.shape[1] - CROP, 0)))
    return slice(y, y + CROP), slice(x, x + CROP)


def panel(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, colour: tuple) -> np.ndarray:
    """One crop as RGB: the image grey, the labels' outlines green, the method's ``colour``."""
    from skimage.segmentation import find_boundaries

    low, high = np.percentile(image, (1, 99.8))
    grey = np.clip((image - low) / max(high - low, 1e-9), 0, 1)
    rgb = np.repeat(np.kron(grey, np.ones((ZOOM, ZOOM)))[..., None], 3, axis=2)
    for labels, c in ((truth, (0.1, 1.0, 0.1)), (pred, colour)):
        edges = np.kron(find_boundaries(labels, mode="inner"), np.ones((ZOOM, ZOOM))) > 0
        rgb[edges] = c
    out = np.zeros((CROP * ZOOM, CROP * ZOOM, 3))
    out[: rgb.shape[0], : rgb.shape[1]] = rgb
    return out


def sheet(cases: list, path: Path, title: str) -> None:
    """Write the crops of ``cases`` as one PNG: a row per nucleus, U-Net left, Otsu right.

    The rows are listed with their verdicts as they are written (the picture has no text).
    """
    from napari_tiled_unet.batch.png import write_png

    if not cases:
        print(f"{title}: none")
        return
    print(f"{title}: {len(cases)} nuclei in {path} (labels green, U-Net red, Otsu blue)")
    rows = []
    for k, (where, unet, otsu, u_panel, o_panel) in enumerate(cases):
        print(f"  row {k + 1:>2}: {where:<34} U-Net {unet:<10} Otsu {otsu}")
        gap = np.ones((u_panel.shape[0], 4, 3))
        rows += [
            np.concatenate([u_panel, gap, o_panel], axis=1),
            np.ones((4, 2 * u_panel.shape[1] + 4, 3)),
        ]
    write_png(path, (np.concatenate(rows[:-1]) * 255).astype(np.uint8))


def main() -> None:
    from napari_tiled_unet import load_model, segment
    from napari_tiled_unet.batch.models import bundled_models
    from napari_tiled_unet.core.postprocess import classes_to_instances, drop_faint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="default: the bundled model")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder of the PNG files")
    parser.add_argument("--most", type=int, default=24, help="nuclei per picture at most")
    parser.add_argument(
        "--per-image", action="store_true", help="the counts of every image before its set's"
    )
    args = parser.parse_args()
    model = load_model(args.model or bundled_models()[0])
    otsu_wins, unet_wins = [], []
    print(f"{'set':<20} {'method':<17}" + "".join(f"{k:>10}" for k in KINDS))
    for name, items in held_out_sets().items():
        tally: dict[str, collections.Counter] = {"U-Net": collections.Counter()}
        tally["Otsu + watershed"] = collections.Counter()
        for index, (image, truth) in enumerate(items):
            image = image.astype(np.float32)
            result = segment(model, image)
            unet = classes_to_instances(result.labels, min_size=20)
            unet = drop_faint(unet, image, DEFAULT_MIN_CONTRAST)
            otsu = otsu_watershed(image, diameter=result.rescale.object_size or 20.0)
            mine = {method: collections.Counter() for method in tally}
            for label in np.unique(truth)[1:]:
                u, o = verdict(unet, truth, label), verdict(otsu, truth, label)
                mine["U-Net"][u] += 1
                mine["Otsu + watershed"][o] += 1
                if (u == "matched") == (o == "matched"):
                    continue
                centre = tuple(int(v) for v in np.argwhere(truth == label).mean(axis=0))
                box = crop(image, centre)
                where = f"{name.split()[0]} #{index} label {label}"
                case = (
                    where,
                    u,
                    o,
                    panel(image[box], truth[box], unet[box], (1.0, 0.2, 0.2)),
                    panel(image[box], truth[box], otsu[box], (0.3, 0.5, 1.0)),
                )
                (otsu_wins if o == "matched" else unet_wins).append(case)
            for method, counts in mine.items():
                tally[method].update(counts)
                if args.per_image:
                    where = f"  {name.split()[0]} #{index}"
                    print(f"{where:<20} {method:<17}" + "".join(f"{counts[k]:>10}" for k in KINDS))
        for method, counts in tally.items():
            print(f"{name:<20} {method:<17}" + "".join(f"{counts[k]:>10}" for k in KINDS))
    args.out.mkdir(parents=True, exist_ok=True)
    sheet(
        otsu_wins[: args.most], args.out / "otsu_matches_unet_not.png", "Otsu matches, U-Net not"
    )
    sheet(
        unet_wins[: args.most], args.out / "unet_matches_otsu_not.png", "U-Net matches, Otsu not"
    )


KINDS = ("matched", "missed", "split", "merged", "too big", "too small", "shifted")

if __name__ == "__main__":
    main()
