"""Qualitative figure like the paper's Figure 2, and the choice of its sample slices.

Grid: one row per sample slice (optionally followed by an error-map row), columns = ground truth, then
each method. Gray magnitude images share one window per sample row, ``[0, max(ground truth)]``. The
segmentation net's predicted contour is drawn in **yellow**, the ground-truth label contour in **red**.
Error rows show ``|recon - target|`` with one colour scale shared by every error panel of the figure.

The PNG has an exact pixel size (no tight bounding box): ``width = (1 + n_methods) · panel_px``,
``height = n_rows · panel_px + header_px`` with ``n_rows = n_samples · (2 if error_rows else 1)``;
see :func:`figure_size_px`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from csmri.eval.recons import GROUND_TRUTH

__all__ = ["figure_size_px", "save_figure", "pick_samples", "split_key"]

PRED_COLOUR = "yellow"
TARGET_COLOUR = "red"


def _np(x: Any) -> np.ndarray:
    """numpy view of an array-like or a (CPU/GPU, possibly grad-tracking) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _image(x: Any, name: str) -> np.ndarray:
    a = _np(x)
    if np.iscomplexobj(a):
        a = np.abs(a)
    a = np.squeeze(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) image, got shape {np.shape(_np(x))}")
    return a.astype(np.float64)


def figure_size_px(
    n_samples: int, n_methods: int, error_rows: bool = False, panel_px: int = 192, header_px: int = 28
) -> tuple[int, int]:
    """``(width, height)`` in pixels of the PNG written by :func:`save_figure`."""
    rows = n_samples * (2 if error_rows else 1)
    return (1 + n_methods) * panel_px, rows * panel_px + header_px


def _contours(ax: Any, labels: np.ndarray, colour: str, linewidth: float) -> None:
    """Outline every foreground class (label > 0) of ``labels`` ``(H, W)``."""
    for c in np.unique(labels):
        if c <= 0:
            continue
        mask = (labels == c).astype(np.float64)
        if 0 < mask.sum() < mask.size:
            ax.contour(mask, levels=[0.5], colors=colour, linewidths=linewidth)


def _annotation(metrics: Mapping[str, Any] | None) -> str:
    if not metrics:
        return ""
    parts = []
    if metrics.get("psnr") is not None and np.isfinite(float(metrics["psnr"])):
        parts.append(f"{float(metrics['psnr']):.2f} dB")
    if metrics.get("dice") is not None and np.isfinite(float(metrics["dice"])):
        parts.append(f"Dice {float(metrics['dice']):.3f}")
    return "  ".join(parts)


def save_figure(
    path: str | Path,
    samples: Sequence[Mapping[str, Any]],
    methods: Sequence[str],
    error_rows: bool = False,
    labels: Mapping[str, str] | None = None,
    panel_px: int = 192,
    header_px: int = 28,
    dpi: int = 100,
    error_vmax: float | None = None,
    linewidth: float = 1.0,
) -> Path:
    """Write the Figure-2-style grid to ``path`` (PNG) and return the path.

    Each sample is ``{"key": str, "target": (H, W) magnitude, "target_label": (H, W) int,
    "recons": {method: (H, W) magnitude}, "pred_labels": {method | "ground_truth": (H, W) int}}``
    with an optional ``"metrics": {method | "ground_truth": {"psnr": dB, "dice": float}}`` shown in
    each panel. Arrays may be numpy or torch (complex images are shown as magnitude). ``methods``
    is the column order after the ground truth; ``labels`` optional column titles. Missing
    ``pred_labels`` entries just omit the yellow contour. ``error_vmax`` fixes the error colour
    scale (default: max error over the figure).
    """
    from matplotlib.figure import Figure  # a bare Figure renders with Agg; pyplot's global state is untouched

    if not samples:
        raise ValueError("save_figure: no samples (no test slice contains the structure?)")
    methods = list(methods)
    labels = dict(labels or {})
    columns = [GROUND_TRUTH, *methods]
    titles = [labels.get(GROUND_TRUTH, "Ground truth"), *(labels.get(m, m) for m in methods)]

    prepared = []
    for s in samples:
        key = str(s.get("key", ""))
        target = _image(s["target"], f"target of {key}")
        recons = s.get("recons", {})
        missing = [m for m in methods if m not in recons]
        if missing:
            raise ValueError(f"sample {key!r} has no reconstruction for {missing}; has {list(recons)}")
        images = {GROUND_TRUTH: target, **{m: _image(recons[m], f"{m} of {key}") for m in methods}}
        for m, im in images.items():
            if im.shape != target.shape:
                raise ValueError(f"sample {key!r}: {m} has shape {im.shape}, target {target.shape}")
        target_label = s.get("target_label")
        prepared.append(
            {
                "key": key,
                "images": images,
                "target_label": None if target_label is None else _np(target_label).squeeze(),
                "pred_labels": {m: _np(v).squeeze() for m, v in (s.get("pred_labels") or {}).items()},
                "metrics": s.get("metrics") or {},
                "errors": {m: np.abs(images[m] - target) for m in methods},
            }
        )
    if error_vmax is None and error_rows:
        error_vmax = max((float(e.max()) for p in prepared for e in p["errors"].values()), default=1.0)
        error_vmax = error_vmax if error_vmax > 0 else 1.0

    width, height = figure_size_px(len(prepared), len(methods), error_rows, panel_px, header_px)
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="black")
    fw, fh = panel_px / width, panel_px / height
    pad = 1.0 / width

    def panel(row: int, col: int) -> Any:
        bottom = (height - header_px - (row + 1) * panel_px) / height
        ax = fig.add_axes((col * fw + pad, bottom + pad, fw - 2 * pad, fh - 2 * pad))
        ax.set_axis_off()
        return ax

    for c, title in enumerate(titles):
        fig.text(
            (c + 0.5) * fw,
            1 - 0.5 * header_px / height,
            title,
            color="white",
            ha="center",
            va="center",
            fontsize=10,
        )

    row = 0
    for p in prepared:
        target = p["images"][GROUND_TRUTH]
        vmax = float(target.max()) or 1.0
        for c, method in enumerate(columns):
            ax = panel(row, c)
            ax.imshow(p["images"][method], cmap="gray", vmin=0.0, vmax=vmax, interpolation="nearest")
            if p["target_label"] is not None:
                _contours(ax, p["target_label"], TARGET_COLOUR, linewidth)
            if method in p["pred_labels"]:
                _contours(ax, p["pred_labels"][method], PRED_COLOUR, linewidth)
            h, w = target.shape
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            if c == 0:
                ax.text(0.02, 0.98, p["key"], transform=ax.transAxes, color="white", fontsize=7, va="top")
            note = _annotation(p["metrics"].get(method))
            if note:
                ax.text(
                    0.02,
                    0.02,
                    note,
                    transform=ax.transAxes,
                    color="white",
                    fontsize=7,
                    va="bottom",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "edgecolor": "none"},
                )
        row += 1
        if error_rows:
            ax = panel(row, 0)
            ax.text(
                0.5,
                0.5,
                f"|recon − GT|\nscale 0 – {error_vmax:.3g}",
                transform=ax.transAxes,
                color="white",
                ha="center",
                va="center",
                fontsize=8,
            )
            for c, method in enumerate(methods, start=1):
                ax = panel(row, c)
                ax.imshow(p["errors"][method], cmap="inferno", vmin=0.0, vmax=error_vmax, interpolation="nearest")
            row += 1

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor=fig.get_facecolor())
    return path


def split_key(key: str) -> tuple[str, str]:
    """``"patient/slice"`` -> ``("patient", "slice")``, split at the last ``/`` (no ``/``: ``(key, "")``)."""
    patient, sep, slice_id = key.rpartition("/")
    return (patient, slice_id) if sep else (key, "")


def _slice_order(slice_id: str) -> tuple[int, Any]:
    return (0, int(slice_id)) if slice_id.isdigit() else (1, slice_id)


def pick_samples(
    keys: Sequence[str], has_structure: Sequence[bool] | Mapping[str, bool], per_patient: int = 1
) -> list[str]:
    """Slices for the figure: per patient, the ``per_patient`` structure slices nearest its middle one.

    ``keys`` are ``"patient/slice"``; ``has_structure`` is aligned with ``keys`` or maps key -> bool.
    For each patient (in order of first appearance) its slices containing the structure are sorted by
    slice index (numeric when the slice id is a number); the middle one (lower middle for an even
    count) is taken, and for ``per_patient > 1`` its nearest neighbours in that list, returned in slice
    order. Patients without a structure slice are skipped.
    """
    if per_patient < 1:
        raise ValueError(f"per_patient must be >= 1, got {per_patient}")
    if isinstance(has_structure, Mapping):
        flags = [bool(has_structure[k]) for k in keys]
    else:
        flags = [bool(f) for f in has_structure]
        if len(flags) != len(keys):
            raise ValueError(f"has_structure has {len(flags)} entries for {len(keys)} keys")
    patients: dict[str, list[str]] = {}
    for key, flag in zip(keys, flags, strict=True):
        entries = patients.setdefault(split_key(key)[0], [])
        if flag:
            entries.append(key)
    chosen: list[str] = []
    for entries in patients.values():
        if not entries:
            continue
        entries = sorted(entries, key=lambda k: _slice_order(split_key(k)[1]))
        middle = (len(entries) - 1) // 2
        nearest = sorted(range(len(entries)), key=lambda i: (abs(i - middle), i))[:per_patient]
        chosen += [entries[i] for i in sorted(nearest)]
    return chosen
