"""Export a blinded reader study: shuffled anonymous 8-bit PNGs, the rating page and the key.

Every method's image of every slice becomes an 8-bit gray PNG ``study/images/img_0001.png, ...`` in
an order shuffled with ``numpy.random.default_rng(seed)``. All images of one slice share one window
``[0, max(ground truth)]`` (without a ground truth: the median over methods of the image maxima).
``key.json`` (anonymous name -> method and slice key, plus the seed) is written next to, not inside,
the ``study/`` folder. ``study/index.html`` is the page ``page.html`` of this package filled in (see
:func:`render_page`): a single self-contained page (inline CSS/JS, works from ``file://``) that shows
one image at a time with 1-4 ratings (1 poor ... 4 very good) of overall quality, scar visibility and
artefacts (4 = no artefacts), navigation, progress and a "download ratings.csv" button; ratings live
in the browser's localStorage, so a reload loses nothing. CSV columns: ``reader,image,overall,scar,artefacts``.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from csmri.eval.reader_study.protocol import CRITERIA, CRITERIA_TITLES, KEY_FORMAT, RATING_SCALE
from csmri.eval.recons import GROUND_TRUTH, LABEL, as_magnitude

__all__ = ["export_reader_study", "render_page", "select_slices"]

PAGE_TEMPLATE = "page.html"
"""Package data of :mod:`csmri.eval.reader_study`; placeholders ``__TITLE__``, ``__FIELDSETS__``,
``__IMAGES__``, ``__CRITERIA__`` and ``__STUDY_ID__``."""


def _slice_windows(images: Mapping[str, Mapping[str, np.ndarray]], window_method: str) -> dict[str, float]:
    """Display maximum per slice key (the black level is 0)."""
    keys = {k for per_key in images.values() for k in per_key}
    windows = {}
    for key in keys:
        if key in images.get(window_method, {}):
            vmax = float(np.max(images[window_method][key]))
        else:
            vmax = float(np.median([np.max(per_key[key]) for per_key in images.values() if key in per_key]))
        windows[key] = vmax if vmax > 0 and math.isfinite(vmax) else 1.0
    return windows


def _write_png(path: Path, image: np.ndarray, vmax: float) -> bytes:
    """Write ``image`` windowed to ``[0, vmax]`` as an 8-bit gray PNG; return the pixel bytes."""
    from PIL import Image

    a = np.asarray(image, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"reader-study images must be 2-D (H, W), got shape {a.shape}")
    u8 = np.round(np.clip(np.nan_to_num(a / vmax), 0.0, 1.0) * 255.0).astype(np.uint8)
    Image.fromarray(u8, mode="L").save(path, format="PNG")
    return u8.tobytes()


def export_reader_study(
    out_dir: str | Path,
    images: Mapping[str, Mapping[str, Any]],
    seed: int,
    window_method: str = GROUND_TRUTH,
    title: str = "Blinded reader study",
) -> Path:
    """Write the blinded study to ``out_dir`` and return ``out_dir``.

    ``images`` is ``{method: {slice key: (H, W) magnitude}}`` (numpy or torch; complex -> magnitude).
    Layout: ``out_dir/study/index.html``, ``out_dir/study/images/img_0001.png ...`` (give the
    ``study`` folder to the readers) and ``out_dir/key.json`` (the un-blinding key, with the seed).
    The same ``images`` and ``seed`` give the same anonymous names.
    """
    out_dir = Path(out_dir)
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for method, per_key in images.items():
        if method == LABEL:
            raise ValueError(f"{LABEL!r} is a reserved name (label maps), not a method")
        arrays[str(method)] = {str(key): as_magnitude(im) for key, im in per_key.items()}
    items = [(m, k) for m in sorted(arrays) for k in sorted(arrays[m])]
    if not items:
        raise ValueError("export_reader_study: no images to export")
    order = np.random.default_rng(seed).permutation(len(items))
    width = max(4, len(str(len(items))))
    windows = _slice_windows(arrays, window_method)

    image_dir = out_dir / "study" / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    for stale in image_dir.glob("img_*.png"):
        stale.unlink()
    digest = hashlib.sha256(f"{seed}:{len(items)}".encode())
    mapping: dict[str, dict[str, str]] = {}
    names: list[str] = []
    for i, j in enumerate(order, start=1):
        method, key = items[int(j)]
        name = f"img_{i:0{width}d}.png"
        digest.update(_write_png(image_dir / name, arrays[method][key], windows[key]))
        mapping[name] = {"method": method, "key": key}
        names.append(name)
    study_id = digest.hexdigest()[:16]

    (out_dir / "study" / "index.html").write_text(render_page(names, study_id, title), encoding="utf-8")
    key = {
        "format": KEY_FORMAT,
        "study_id": study_id,
        "seed": int(seed),
        "window": f"per slice [0, max({window_method})], else median of the methods' maxima",
        "methods": list(arrays),
        "keys": sorted({k for _, k in items}),
        "images": mapping,
    }
    (out_dir / "key.json").write_text(json.dumps(key, indent=2) + "\n")
    return out_dir


def render_page(names: Sequence[str], study_id: str, title: str) -> str:
    """The self-contained rating page (no external resources; images referenced as ``images/<name>``).

    ``study_id`` keys the browser's localStorage, so two studies opened in one browser keep apart.
    """
    template = files("csmri.eval.reader_study").joinpath(PAGE_TEMPLATE).read_text(encoding="utf-8")
    fieldsets = []
    for c in CRITERIA:
        radios = "".join(
            f'<label class="r"><input type="radio" name="{c}" value="{v}"> {text}</label>'
            for v, text in RATING_SCALE.items()
        )
        fieldsets.append(f"<fieldset><legend>{CRITERIA_TITLES[c]}</legend>{radios}</fieldset>")
    return (
        template.replace("__TITLE__", html.escape(title))
        .replace("__FIELDSETS__", "\n      ".join(fieldsets))
        .replace("__IMAGES__", json.dumps(list(names)))
        .replace("__CRITERIA__", json.dumps(list(CRITERIA)))
        .replace("__STUDY_ID__", json.dumps(study_id))
    )


def select_slices(
    images: Mapping[str, Mapping[str, np.ndarray]],
    labels: Mapping[str, np.ndarray],
    methods: Sequence[str] | None = None,
    all_slices: bool = False,
    max_slices: int | None = None,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """The images (``{method: {slice key: image}}``, as :func:`csmri.eval.recons.load_recons`) a reader study shows.

    ``methods``: a subset of the methods (default: all). Unless ``all_slices``, only the slices whose label map
    (``labels``, by slice key) has the structure (any value > 0); without label maps, every slice. ``max_slices``:
    a random subset of that many slices, drawn with ``numpy.random.default_rng([seed, 1])``. A method that is not
    in ``images``, or no slice left, is a ``ValueError``.
    """
    if methods:
        unknown = [m for m in methods if m not in images]
        if unknown:
            raise ValueError(f"methods {unknown} are not among the reconstructions; there are {sorted(images)}")
        images = {m: images[m] for m in methods}
    keys = sorted({k for per_key in images.values() for k in per_key})
    if not all_slices and labels:
        keys = [k for k in keys if k in labels and np.any(labels[k] > 0)]
    if max_slices is not None and len(keys) > max_slices:
        pick = np.random.default_rng([seed, 1]).choice(len(keys), size=max_slices, replace=False)
        keys = [keys[i] for i in sorted(pick)]
    if not keys:
        raise ValueError("no slices to export (none contains the structure? try --all-slices)")
    wanted = set(keys)
    return {m: {k: v for k, v in per_key.items() if k in wanted} for m, per_key in images.items()}
