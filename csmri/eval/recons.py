"""``recons.npz``: the reconstructions of an evaluation, written by ``csmri eval`` for the reader study.

One float32 ``(H, W)`` magnitude array per method and slice, named ``"<method>__<key>"`` where the
slice key ``"patient/slice"`` has its ``/`` replaced by ``~`` (``"recnet__p07~012"``). Reserved method
names: :data:`GROUND_TRUTH` (the fully-sampled magnitude; rated like a method, as in the paper's
Table 1, and used for the display window) and :data:`LABEL` (the ground-truth label map, integer; not
rated, used to keep only the slices containing the structure). Method names must not contain ``__``;
keys must not contain ``~``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GROUND_TRUTH", "LABEL", "RECONS_FILE", "save_recons", "load_recons", "as_magnitude"]

GROUND_TRUTH = "ground_truth"
"""Method name of the fully-sampled image, in recons.npz, the tables, the figure and the reader study."""
LABEL = "label"
"""Reserved name of the ground-truth label maps in recons.npz."""
RECONS_FILE = "recons.npz"


def _array_name(method: str, key: str) -> str:
    if "__" in method:
        raise ValueError(f"method names must not contain '__': {method!r}")
    if "~" in key:
        raise ValueError(f"slice keys must not contain '~': {key!r}")
    return f"{method}__{key.replace('/', '~')}"


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_magnitude(image: Any) -> np.ndarray:
    """A numpy or torch image as a squeezed numpy array; complex values become their magnitude."""
    a = _to_numpy(image)
    return np.squeeze(np.abs(a) if np.iscomplexobj(a) else a)


def save_recons(
    path: str | Path,
    images: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``{method: {key: (H, W) magnitude}}`` (+ optional ``{key: (H, W) label}``) as ``recons.npz``.

    Magnitudes are stored float32 (complex inputs as their magnitude), labels as uint8/int16.
    """
    arrays: dict[str, np.ndarray] = {}
    for method, per_key in images.items():
        if method == LABEL:
            raise ValueError(f"{LABEL!r} is reserved for label maps; pass them as labels=")
        for key, im in per_key.items():
            arrays[_array_name(method, key)] = as_magnitude(im).astype(np.float32)
    for key, lab in (labels or {}).items():
        a = np.squeeze(_to_numpy(lab))
        arrays[_array_name(LABEL, key)] = a.astype(np.uint8 if a.min() >= 0 and a.max() < 256 else np.int16)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def load_recons(path: str | Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Read ``recons.npz`` -> ``({method: {key: (H, W) float32}}, {key: (H, W) label})``."""
    images: dict[str, dict[str, np.ndarray]] = {}
    labels: dict[str, np.ndarray] = {}
    with np.load(Path(path)) as data:
        for name in data.files:
            method, sep, enc = name.partition("__")
            if not sep or not method or not enc:
                raise ValueError(f"{path}: array {name!r} is not named '<method>__<key with / as ~>'")
            key = enc.replace("~", "/")
            if method == LABEL:
                labels[key] = data[name]
            else:
                images.setdefault(method, {})[key] = data[name]
    if not images:
        raise ValueError(f"{path}: no reconstructions in the file")
    return images, labels
