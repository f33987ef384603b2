"""The preparation summary stored in ``meta.json`` and printed after preparing: counts, sizes, intensities, skips."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csmri.data.layout import SPLITS
from csmri.data.sources.folder.convert import Slices
from csmri.data.sources.folder.discovery import Case

__all__ = ["CaseRecord", "format_summary", "summarise_preparation"]


@dataclass
class CaseRecord:
    """What the summary needs of a converted case (no arrays)."""

    slices: int
    with_structure: int
    native_size: tuple[int, int]
    dropped_empty: int
    stats: dict[str, float]
    label_values: set[int]

    @classmethod
    def of(cls, result: Slices) -> CaseRecord:
        present = result.label.reshape(result.label.shape[0], -1).any(axis=1)
        return cls(
            result.image.shape[0],
            int(present.sum()),
            result.native_size,
            result.dropped_empty,
            result.stats,
            result.label_values,
        )


def summarise_preparation(
    records: Mapping[str, CaseRecord],
    splits: Mapping[str, list[str]],
    cases: Sequence[Case],
    skipped: list[dict[str, str]],
    ignored: list[Path],
    size: Sequence[int],
    labels_used: bool,
) -> dict[str, Any]:
    """The preparation summary stored in ``meta.json`` (and printed by :func:`format_summary`)."""
    patient_of = {c.name: c.patient for c in cases}
    values = {k: [r.stats[k] for r in records.values()] for k in ("min", "max", "mean", "p01", "p99")}
    native = Counter("x".join(map(str, r.native_size)) for r in records.values())
    return {
        "cases": {s: len(splits[s]) for s in SPLITS},
        "patients": {s: len({patient_of[n] for n in splits[s]}) for s in SPLITS},
        "slices": {s: sum(records[n].slices for n in splits[s]) for s in SPLITS},
        "slices_with_structure": {s: sum(records[n].with_structure for n in splits[s]) for s in SPLITS},
        "has_labels": labels_used and any(r.label_values for r in records.values()),
        "size": [int(size[0]), int(size[1])],
        "native_sizes": dict(native),
        "dropped_empty_slices": sum(r.dropped_empty for r in records.values()),
        "raw_intensity": {
            "min": min(values["min"]),
            "max": max(values["max"]),
            "mean": float(np.mean(values["mean"])),
            "median_p01": float(np.median(values["p01"])),
            "median_p99": float(np.median(values["p99"])),
        },
        "skipped": skipped,
        "ignored_files": [str(p) for p in ignored],
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """A few human-readable lines of a preparation summary."""
    splits = SPLITS
    lines = [
        "split     cases  patients  slices  with structure",
        *(
            f"{s:<8} {summary['cases'][s]:>6} {summary['patients'][s]:>9} {summary['slices'][s]:>7} "
            f"{summary['slices_with_structure'][s]:>15}"
            for s in splits
        ),
        f"slice size {summary['size'][0]}x{summary['size'][1]} (native: "
        + ", ".join(f"{k}: {v}" for k, v in summary["native_sizes"].items())
        + ")",
        "labels: " + ("yes" if summary["has_labels"] else "none (SIS cannot be computed on this dataset)"),
        "raw intensity: min {min:.4g}, max {max:.4g}, mean {mean:.4g}, median 1st/99th percentile "
        "{median_p01:.4g}/{median_p99:.4g}".format(**summary["raw_intensity"]),
        f"dropped all-zero slices: {summary['dropped_empty_slices']}",
        f"skipped inputs: {len(summary['skipped'])}",
        *(f"  {s['path']}: {s['reason']}" for s in summary["skipped"]),
    ]
    if summary["ignored_files"]:
        lines.append(f"ignored files of unknown type: {len(summary['ignored_files'])}")
    return "\n".join(lines)
