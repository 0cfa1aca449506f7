"""The README (model card) of an exported bioimage.io package, from the model's metadata."""

from __future__ import annotations

from typing import Any

__all__ = ["PAPER", "PAPER_DOI", "readme_text"]

PAPER = (
    "Ronneberger, O., Fischer, P., Brox, T. (2015). U-Net: Convolutional Networks for "
    "Biomedical Image Segmentation. MICCAI 2015, LNCS 9351, 234-241."
)
PAPER_DOI = "10.1007/978-3-319-24574-4_28"


def _training_lines(training: dict[str, Any] | None) -> list[str]:
    if not training:
        return ["No training record is stored with this model."]
    config = training.get("config", {})
    lines = []
    shapes = training.get("train_shapes")
    if shapes:
        pixels = sum(int(s[0]) * int(s[1]) for s in shapes)
        lines.append(
            f"- Training images: {len(shapes)} ({pixels / 1e6:.2f} megapixels), "
            f"shapes (Y, X, C): {', '.join('x'.join(map(str, s)) for s in shapes[:8])}"
            + (" ..." if len(shapes) > 8 else "")
        )
    val = training.get("val_shapes")
    if val:
        lines.append(f"- Validation images: {len(val)}")
    if training.get("init"):
        lines.append(f"- Fine-tuned from: {training['init']}")
    if config:
        recipe = ", ".join(
            f"{key} {config[key]}"
            for key in (
                "epochs",
                "steps_per_epoch",
                "batch_size",
                "input_size",
                "optimizer",
                "learning_rate",
                "dropout",
                "w0",
                "sigma",
                "augment",
                "seed",
            )
            if key in config
        )
        lines.append(f"- Recipe: {recipe}")
        lines.append(
            "- Loss: the paper's weighted cross-entropy on the valid output "
            + ("with its weight map" if config.get("use_weight_map", True) else "")
        )
    for key in ("steps", "epochs_done", "date", "package_version"):
        if key in training:
            lines.append(f"- {key.replace('_', ' ').capitalize()}: {training[key]}")
    return lines


def _metric_lines(training: dict[str, Any] | None) -> list[str]:
    """Return the validation metrics of the kept epoch (the best by the monitored value)."""
    if not training or not training.get("history"):
        return [
            "No validation metrics are stored with this model. Validate it on annotated "
            "images of your own before use: segment them and compare with the annotation "
            "(foreground IoU, and F1 of matched objects at IoU 0.5)."
        ]
    history = training["history"]
    monitor = training.get("monitor")
    best = training.get("best")
    kept = next((h for h in history if monitor and h.get(monitor) == best), history[-1])
    keys = [k for k in kept if k not in ("epoch", "step")]
    lines = [
        f"Measured during training on the validation images (epoch {kept.get('epoch')}, "
        f"the one kept{f', by {monitor}' if monitor else ''}):",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
        "| " + " | ".join(f"{kept[k]:.4f}" for k in keys) + " |",
    ]
    return lines


def readme_text(meta: Any, *, name: str, geometry: dict[str, int]) -> str:
    """Markdown model card: what the model is, its geometry, training, metrics, citation.

    Parameters
    ----------
    meta : ModelMetadata
        The model's metadata (classes, normalisation, training record).
    name : str
        The package's name.
    geometry : dict
        ``min``, ``step`` and ``halo`` of the valid input sizes (px).
    """
    norm = meta.normalization or {}
    if norm.get("method") == "percentile":
        pre = (
            f"percentile normalisation: the {norm.get('low')} and {norm.get('high')} "
            f"percentiles of each {'plane' if norm.get('per', 'plane') == 'plane' else 'stack'} "
            "and channel map to 0 and 1 (not clipped)"
        )
    else:
        pre = "none (the network sees the raw values as float32)"
    lines = [
        f"# {name}",
        "",
        meta.description or "A U-Net for 2D image segmentation.",
        "",
        "## Model",
        "",
        "The original U-Net of Ronneberger et al. (2015), with valid (unpadded) convolutions: "
        f"depth {meta.depth}, {meta.base_filters} base filters, {meta.input_channels} input "
        f"channel(s), {meta.num_classes} classes ({', '.join(meta.class_names)}). The output "
        "holds the softmax probability of every class (it sums to 1 over the channels; no "
        "further postprocessing). Each class label is the channel with the highest "
        "probability.",
        "",
        f"- Input sizes: {geometry['min']} + n x {geometry['step']} px along Y and X "
        f"(n = 0, 1, 2, ...); the output is {geometry['halo']} px smaller on every side.",
        "- Large images: use the overlap-tile strategy of the paper: tiles on a "
        f"{geometry['step']} px grid, each with {geometry['halo']} px of context (mirrored "
        "at the image border); the stitched result then equals one pass over the whole image.",
        f"- Preprocessing: {pre}.",
        "",
        "## Training data",
        "",
        *_training_lines(meta.training),
        "",
        "## Validation",
        "",
        *_metric_lines(meta.training),
        "",
        "## Citation",
        "",
        f"{PAPER} doi:{PAPER_DOI}",
        "",
        "Exported with napari-tiled-unet.",
        "",
    ]
    return "\n".join(lines)
