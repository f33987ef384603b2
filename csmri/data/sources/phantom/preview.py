"""The phantom's example figure: a PNG grid of slices through the left atrium with its label contours."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from csmri.data import layout
from csmri.data.sources.phantom.geometry import Array
from csmri.data.sources.phantom.patient import PhantomVolume


def _read_examples_from_root(root: Path, n: int) -> list[tuple[str, Array, Array]]:
    """Up to ``n`` (key, image, label) slices containing the LA, from different patients first."""
    import h5py

    meta = layout.read_meta(root)
    files = [root / split / f"{pid}.h5" for split, ids in meta["splits"].items() for pid in ids]
    candidates: list[list[tuple[str, Path, int]]] = []
    for path in sorted(files):
        with h5py.File(path, "r") as f:
            present = np.flatnonzero(f["label"][()].reshape(f["label"].shape[0], -1).any(axis=1))
            keys = layout.read_slice_keys(f)
        candidates.append([(keys[s], path, int(s)) for s in _middle_first(present)])
    chosen = _round_robin(candidates, n)
    examples = []
    for key, path, s in chosen:
        with h5py.File(path, "r") as f:
            examples.append((key, f["image"][s], f["label"][s]))
    return examples


def _examples_from_volumes(volumes: Sequence[PhantomVolume], n: int) -> list[tuple[str, Array, Array]]:
    candidates = []
    for volume in volumes:
        present = np.flatnonzero(volume.label.reshape(volume.label.shape[0], -1).any(axis=1))
        candidates.append(
            [(layout.slice_key(volume.patient_id, int(s)), volume, int(s)) for s in _middle_first(present)]
        )
    return [(key, volume.image[s], volume.label[s]) for key, volume, s in _round_robin(candidates, n)]


def _middle_first(indices: Array) -> list[int]:
    """Indices ordered by distance from their middle element (the most typical LA slice first)."""
    if len(indices) == 0:
        return []
    middle = indices[len(indices) // 2]
    return sorted(indices.tolist(), key=lambda i: (abs(i - middle), i))


def _round_robin(candidates: list[list], n: int) -> list:
    """Take one item per list in turn until ``n`` items are taken or all lists are exhausted."""
    chosen, depth = [], 0
    while len(chosen) < n and any(depth < len(c) for c in candidates):
        chosen += [c[depth] for c in candidates if depth < len(c)][: n - len(chosen)]
        depth += 1
    return chosen


def save_example_grid(root_or_volumes: str | Path | Sequence[PhantomVolume], path: str | Path, n: int = 8) -> Path:
    """Save a PNG grid of ``n`` slices containing the LA (magnitude, gray) with LA label contours in red.

    ``root_or_volumes`` is a dataset root (:mod:`csmri.data.layout`) or a sequence of
    :class:`PhantomVolume`. Slices come from different patients first (their middle LA slice). Rendered
    with matplotlib's Agg canvas (no pyplot state). Returns ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(root_or_volumes, (str, Path)):
        examples = _read_examples_from_root(Path(root_or_volumes), n)
    else:
        examples = _examples_from_volumes(list(root_or_volumes), n)
    if not examples:
        raise ValueError("no slice with a left-atrium label to show")
    n_cols = min(4, len(examples))
    n_rows = math.ceil(len(examples) / n_cols)
    figure = Figure(figsize=(2.6 * n_cols, 2.9 * n_rows), dpi=110)
    FigureCanvasAgg(figure)
    for i, (key, image, label) in enumerate(examples):
        axes = figure.add_subplot(n_rows, n_cols, i + 1)
        magnitude = np.abs(image)
        axes.imshow(
            magnitude,
            cmap="gray",
            vmin=0.0,
            vmax=max(float(np.percentile(magnitude, 99.8)), 1e-6),
            interpolation="nearest",
        )
        if label.any():
            axes.contour(label, levels=[0.5], colors="red", linewidths=0.7)
        axes.set_title(key, fontsize=8)
        axes.set_axis_off()
    figure.tight_layout(pad=0.4, h_pad=1.0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
