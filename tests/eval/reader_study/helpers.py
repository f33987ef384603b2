"""Shared inputs of the reader-study tests: random images of a few methods and slices, synthetic ratings."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

METHODS = ["ground_truth", "zero_filled", "recnet", "refinement"]
KEYS = [f"pat{p}/{s:03d}" for p in range(2) for s in range(3)]


def study_images(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {m: {k: rng.random((16, 20)).astype(np.float32) * 2 for k in KEYS} for m in METHODS}


def image_names(study: Path) -> list[str]:
    return sorted(p.name for p in (study / "study" / "images").iterdir())


def write_ratings(path: Path, key_json: Path, rate) -> Path:
    """3 readers rate every image; ``rate(reader_idx, method, key) -> (overall, scar, artefacts)``."""
    key = json.loads(key_json.read_text())["images"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["reader", "image", "overall", "scar", "artefacts"])
        for r in range(3):
            for name, e in sorted(key.items()):
                w.writerow([f"reader {r}", name, *rate(r, e["method"], e["key"])])
    return path
