"""Figure 2 grid: PNG layout, contour colours, and the choice of sample slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from csmri.eval.figure import figure_size_px, pick_samples, save_figure

METHODS = ["zero_filled", "recnet", "refinement"]


def _disc(size: int, r: float, cx: float) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return ((x - cx) ** 2 + (y - size / 2) ** 2 < r**2).astype(np.int64)


def _samples(n: int = 2, size: int = 48) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        label = _disc(size, 8, size / 2)
        target = 0.3 + 0.7 * label + 0.05 * rng.random((size, size))
        recons = {m: target + 0.1 * j * rng.standard_normal((size, size)) for j, m in enumerate(METHODS)}
        recons["recnet"] = torch.from_numpy(recons["recnet"])  # tensors are accepted too
        pred = {m: _disc(size, 7, size / 2 + 3) for m in [*METHODS, "ground_truth"]}
        metrics = {m: {"psnr": 30.0 + j, "dice": 0.8} for j, m in enumerate(METHODS)}
        out.append(
            {
                "key": f"p{i}/010",
                "target": target,
                "target_label": label,
                "recons": recons,
                "pred_labels": pred,
                "metrics": metrics,
            }
        )
    return out


def _colour_pixels(png: np.ndarray) -> tuple[int, int]:
    r, g, b = (png[..., i].astype(int) for i in range(3))
    yellow = ((r > 200) & (g > 200) & (b < 90)).sum()
    red = ((r > 200) & (g < 80) & (b < 80)).sum()
    return int(yellow), int(red)


@pytest.mark.parametrize("error_rows", [False, True])
def test_figure_png_layout(tmp_path, error_rows: bool) -> None:
    path = save_figure(tmp_path / "figure.png", _samples(), METHODS, error_rows=error_rows)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        size = im.size
        pixels = np.asarray(im.convert("RGB"))
    rows = 4 if error_rows else 2
    assert size == figure_size_px(2, 3, error_rows) == (4 * 192, rows * 192 + 28)
    yellow, red = _colour_pixels(pixels)
    assert yellow > 100 and red > 100  # predicted (yellow) and ground-truth (red) contours are drawn


def test_figure_custom_panel_and_bad_inputs(tmp_path) -> None:
    path = save_figure(tmp_path / "f.png", _samples(1), ["recnet"], panel_px=100, header_px=20, dpi=50)
    with Image.open(path) as im:
        assert im.size == (200, 120)
    bad = _samples(1)
    del bad[0]["recons"]["recnet"]
    with pytest.raises(ValueError, match="no reconstruction"):
        save_figure(tmp_path / "g.png", bad, METHODS)
    with pytest.raises(ValueError, match="no samples"):
        save_figure(tmp_path / "h.png", [], METHODS)


def test_pick_samples_one_per_patient() -> None:
    keys = [f"{p}/{s:03d}" for p in ("pA", "pB", "pC") for s in range(10)]
    has = {k: False for k in keys}
    for s in (2, 3, 4, 5, 6):
        has[f"pA/{s:03d}"] = True  # middle of 2..6 is 4
    for s in (7, 8):
        has[f"pB/{s:03d}"] = True  # even count: lower middle
    assert pick_samples(keys, has) == ["pA/004", "pB/007"]  # pC has no structure slice
    flags = [has[k] for k in keys]
    assert pick_samples(keys, flags) == ["pA/004", "pB/007"]
    assert pick_samples(keys, has, per_patient=3) == ["pA/003", "pA/004", "pA/005", "pB/007", "pB/008"]
    # numeric slice order, not string order, and order of keys does not matter
    assert pick_samples(["q/10", "q/9", "q/100"], [True, True, True]) == ["q/10"]
    with pytest.raises(ValueError):
        pick_samples(keys, flags[:-1])
