"""Per-slice results -> the paper's Table 1 (markdown + JSON) and a console summary.

Input: a list of per-slice **records**, one per (method, slice)::

    {"method": "recnet", "key": "patient_07/012", "psnr": 31.2, "ssim": 0.91, "nmse": 0.012,
     "hfen": 0.35, "dice": 0.83}

``dice`` is the foreground Dice of the frozen segmentation net on that method's reconstruction; it is
``None``/``nan`` for slices whose ground-truth label does not contain the structure. ``dice_gt`` maps
each structure slice key to the net's Dice on the fully-sampled image of that slice.

Per method :func:`summarise_methods` reports mean ± std (population std, ``ddof=0``) over its slices of PSNR,
SSIM, NMSE and HFEN; over its structure slices the mean ± std Dice and
``SIS = mean(dice) / mean(dice_gt)`` (the same slices in numerator and denominator); and two-sided
paired Wilcoxon signed-rank p-values against a reference method on PSNR and on Dice (pairs matched by
slice key). A "Ground truth" row comes first with SIS = 1 and Dice = mean ``dice_gt``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from csmri.eval.recons import GROUND_TRUTH
from csmri.metrics.stats import format_p, mean_std, paired_wilcoxon
from csmri.reporting import markdown_table, write_strict_json

__all__ = [
    "RECORD_FIELDS",
    "write_per_slice_csv",
    "read_per_slice_csv",
    "summarise_methods",
    "format_table",
    "write_table",
    "read_table_json",
]

RECORD_FIELDS = ("method", "key", "psnr", "ssim", "nmse", "hfen", "dice")
_METRICS = ("psnr", "ssim", "nmse", "hfen")
# table columns: (header, row field of the mean, row field of the std or None, decimals)
_COLUMNS = (
    ("PSNR (dB)", "psnr_mean", "psnr_std", 2),
    ("SSIM", "ssim_mean", "ssim_std", 3),
    ("SIS", "sis", None, 3),
    ("Dice", "dice_mean", "dice_std", 3),
)


def _num(value: Any) -> float:
    """A record value as float (``None`` -> nan); tensors/numpy scalars accepted."""
    if value is None or value == "":
        return math.nan
    return float(value)


# --------------------------------------------------------------------------------------------------
# per-slice CSV
# --------------------------------------------------------------------------------------------------


def write_per_slice_csv(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write ``records`` as CSV: columns ``method,key,psnr,ssim,nmse,hfen,dice`` then any extra keys.

    Floats are written with full precision (``repr``); ``None``/``nan`` become an empty cell.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(RECORD_FIELDS)
    for rec in records:
        fields += [k for k in rec if k not in fields]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for rec in records:
            row = {}
            for k in fields:
                v = rec.get(k)
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    row[k] = ""
                elif isinstance(v, str):
                    row[k] = v
                else:
                    row[k] = repr(float(v)) if not isinstance(v, (bool, int)) else v
            writer.writerow(row)
    return path


def read_per_slice_csv(path: str | Path) -> list[dict[str, Any]]:
    """Read a file of :func:`write_per_slice_csv`: metric columns as float (empty -> ``None``)."""
    out = []
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            rec: dict[str, Any] = {}
            for k, v in row.items():
                if k in ("method", "key"):
                    rec[k] = v
                elif v == "":
                    rec[k] = None
                else:
                    try:
                        rec[k] = float(v)
                    except ValueError:
                        rec[k] = v
            out.append(rec)
    return out


# --------------------------------------------------------------------------------------------------
# summary rows
# --------------------------------------------------------------------------------------------------


def _by_method(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """``{method: {key: record}}`` in order of first appearance; duplicates are an error."""
    grouped: dict[str, dict[str, Mapping[str, Any]]] = {}
    for i, rec in enumerate(records):
        missing = [f for f in RECORD_FIELDS if f not in rec]
        if missing:
            raise ValueError(f"record {i} lacks the fields {missing}; records need {list(RECORD_FIELDS)}")
        per_key = grouped.setdefault(str(rec["method"]), {})
        if rec["key"] in per_key:
            raise ValueError(f"duplicate record for method {rec['method']!r} and slice {rec['key']!r}")
        per_key[str(rec["key"])] = rec
    return grouped


def _paired_p(mine: Mapping[str, Mapping[str, Any]], ref: Mapping[str, Mapping[str, Any]], field: str) -> float:
    """Wilcoxon p of ``field`` between two methods, paired by slice key (keys in both)."""
    keys = [k for k in mine if k in ref]
    return paired_wilcoxon([_num(mine[k][field]) for k in keys], [_num(ref[k][field]) for k in keys])


def summarise_methods(
    records: Sequence[Mapping[str, Any]],
    dice_gt: Mapping[str, float],
    reference: str | None = None,
    methods_order: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One summary row per method (in ``methods_order``), preceded by a Ground-truth row.

    Args:
        records: per-slice records (see the module docstring).
        dice_gt: ``{key: Dice of the segmentation net on the ground-truth image}`` for the structure
            slices; every key with a method Dice must be present.
        reference: method the p-values are computed against (its own p-values are ``None``); ``None``
            for no tests.
        methods_order: row order; methods not listed follow in order of first appearance.
        labels: optional display names ``{method: label}`` (default: the method name).

    Row fields: ``method, label, kind ("ground_truth" | "method"), is_reference, n_slices,
    n_structure, {psnr,ssim,nmse,hfen}_{mean,std}, sis, dice_mean, dice_std, p_psnr, p_dice``.
    The Ground-truth row has ``sis = 1`` (``nan`` if no slice has a Dice, e.g. without a segmentation
    net), Dice = mean ± std of ``dice_gt`` over the structure slices that occur in the records, and
    ``None`` for PSNR/SSIM/NMSE/HFEN and the p-values.
    """
    grouped = _by_method(records)
    if not grouped:
        raise ValueError("summarise_methods: no records (empty test split?)")
    order = list(methods_order or [])
    unknown = [m for m in order if m not in grouped]
    if unknown:
        raise ValueError(f"methods_order names methods without records: {unknown}; have {list(grouped)}")
    order += [m for m in grouped if m not in order]
    if reference is not None and reference not in grouped:
        raise ValueError(f"reference method {reference!r} has no records; methods: {list(grouped)}")
    labels = dict(labels or {})

    rows: list[dict[str, Any]] = []
    structure_keys: set[str] = set()
    all_keys: set[str] = set()
    for method in order:
        per_key = grouped[method]
        all_keys.update(per_key)
        row: dict[str, Any] = {
            "method": method,
            "label": labels.get(method, method),
            "kind": "method",
            "is_reference": method == reference,
            "n_slices": len(per_key),
        }
        for m in _METRICS:
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std(_num(r[m]) for r in per_key.values())
        dice_keys = [k for k, r in per_key.items() if not math.isnan(_num(r["dice"]))]
        missing = [k for k in dice_keys if k not in dice_gt or math.isnan(_num(dice_gt[k]))]
        if missing:
            raise ValueError(f"no ground-truth Dice for {len(missing)} structure slice(s) of {method!r}: {missing[:3]}")
        structure_keys.update(dice_keys)
        dice = [_num(per_key[k]["dice"]) for k in dice_keys]
        gt = [_num(dice_gt[k]) for k in dice_keys]
        row["n_structure"] = len(dice_keys)
        row["dice_mean"], row["dice_std"] = mean_std(dice)
        gt_mean = mean_std(gt)[0]
        row["sis"] = row["dice_mean"] / gt_mean if dice_keys and gt_mean != 0 else math.nan
        if reference is None or method == reference:
            row["p_psnr"] = row["p_dice"] = None
        else:
            row["p_psnr"] = _paired_p(per_key, grouped[reference], "psnr")
            row["p_dice"] = _paired_p(per_key, grouped[reference], "dice")
        rows.append(row)

    gt_mean, gt_std = mean_std(_num(dice_gt[k]) for k in sorted(structure_keys))
    ground_truth: dict[str, Any] = {
        "method": GROUND_TRUTH,
        "label": labels.get(GROUND_TRUTH, "Ground truth"),
        "kind": "ground_truth",
        "is_reference": False,
        "n_slices": len(all_keys),
        "n_structure": len(structure_keys),
        **{f"{m}_{s}": None for m in _METRICS for s in ("mean", "std")},
        "sis": 1.0 if structure_keys else math.nan,  # undefined without Dice values (no segmentation net)
        "dice_mean": gt_mean,
        "dice_std": gt_std,
        "p_psnr": None,
        "p_dice": None,
    }
    return [ground_truth, *rows]


# --------------------------------------------------------------------------------------------------
# markdown / JSON / console
# --------------------------------------------------------------------------------------------------


def _best(rows: Sequence[Mapping[str, Any]], field: str) -> float | None:
    """Highest non-nan value of ``field`` over the method rows (Ground truth excluded)."""
    values = [
        float(r[field])
        for r in rows
        if r.get("kind") != "ground_truth" and r.get(field) is not None and not math.isnan(float(r[field]))
    ]
    return max(values) if values else None


def _cell(row: Mapping[str, Any], mean_field: str, std_field: str | None, decimals: int) -> str:
    """``"32.46 ± 2.26"``; Ground truth shows ∞ for PSNR and 1 for SSIM as in the paper."""
    if row.get("kind") == "ground_truth":
        if mean_field == "psnr_mean":
            return "∞"
        if mean_field == "ssim_mean":
            return "1"
        if mean_field == "sis" and row.get("sis") == 1.0:
            return "1"
    mean = row.get(mean_field)
    if mean is None or math.isnan(float(mean)):
        return "n/a"
    text = f"{float(mean):.{decimals}f}"
    std = row.get(std_field) if std_field else None
    if std is not None and not math.isnan(float(std)):
        text += f" ± {float(std):.{decimals}f}"
    return text


def format_table(
    rows: Sequence[Mapping[str, Any]], runs: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
) -> list[list[str]]:
    """Rows as strings (header first): Method | PSNR | SSIM | SIS | Dice | p (PSNR) | p (Dice).

    The best value per column (highest mean; Ground truth excluded) is wrapped in ``**bold**``;
    a method averaged over several training runs (``runs``, see :func:`write_table`) is marked
    "(mean of N runs)", the reference method "(ref.)".
    """
    header = ["Method", *(c[0] for c in _COLUMNS), "p (PSNR)", "p (Dice)"]
    best = {c[1]: _best(rows, c[1]) for c in _COLUMNS}
    table = [header]
    for row in rows:
        name = str(row.get("label", row["method"]))
        n_runs = len((runs or {}).get(row["method"], ()))
        name += (f" (mean of {n_runs} runs)" if n_runs > 1 else "") + (" (ref.)" if row.get("is_reference") else "")
        cells = [name]
        for _, mean_field, std_field, decimals in _COLUMNS:
            text = _cell(row, mean_field, std_field, decimals)
            value = row.get(mean_field)
            if (
                row.get("kind") != "ground_truth"
                and best[mean_field] is not None
                and value is not None
                and float(value) == best[mean_field]
            ):
                text = f"**{text}**"
            cells.append(text)
        cells += [format_p(row.get("p_psnr")), format_p(row.get("p_dice"))]
        table.append(cells)
    return table


def _footnote(
    rows: Sequence[Mapping[str, Any]],
    provenance: Mapping[str, str] | None = None,
    split: str = "test",
    segmenter: str = "the segmentation net",
    runs: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    sis_members: Mapping[str, Sequence[float]] | None = None,
) -> str:
    gt = next((r for r in rows if r.get("kind") == "ground_truth"), None)
    ref = next((r for r in rows if r.get("is_reference")), None)
    n = f" over {gt['n_slices']} {split} slices ({gt['n_structure']} containing the structure)" if gt else ""
    text = (
        f"Mean ± std (population){n}. PSNR/SSIM on magnitude images, data range = ground-truth max. "
        f"Dice: foreground Dice of {segmenter} on the slices containing the structure; "
        "SIS = mean Dice on the reconstructions / mean Dice on the ground-truth images of the same slices. "
        "Best value per column in bold (Ground truth excluded)."
    )
    if ref is not None:
        text += (
            f" p: two-sided paired Wilcoxon signed-rank test against {ref.get('label', ref['method'])} "
            "(paired by slice); significance at p < 0.01 as in the paper."
        )
    labels = {r["method"]: r.get("label", r["method"]) for r in rows}
    if provenance:
        text += " Methods as evaluated: " + "; ".join(f"{labels.get(m, m)}: {p}" for m, p in provenance.items()) + "."
    for method, run_rows in (runs or {}).items():
        listed = "; ".join(f"{r['method'].split(':', 1)[-1]} {_run_cells(r)}" for r in run_rows)
        text += f" {labels.get(method, method)} per training run (PSNR / SSIM / SIS): {listed}."
    if sis_members:
        count = len(next(iter(sis_members.values())))
        listed = "; ".join(
            f"{labels.get(m, m)} " + " / ".join("n/a" if math.isnan(v) else f"{v:.3f}" for v in values)
            for m, values in sis_members.items()
        )
        text += f" SIS as each of the {count} nets alone scores it: {listed}."
    return text


def _run_cells(row: Mapping[str, Any]) -> str:
    """``24.29 / 0.605 / 0.797``: a training run's PSNR / SSIM / SIS."""
    return " / ".join(
        _cell(row, field, None, decimals) for field, decimals in (("psnr_mean", 2), ("ssim_mean", 3), ("sis", 3))
    )


def write_table(
    rows: Sequence[Mapping[str, Any]],
    md_path: str | Path,
    json_path: str | Path,
    provenance: Mapping[str, str] | None = None,
    split: str = "test",
    segmenter: str = "the segmentation net",
    runs: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    sis_members: Mapping[str, Sequence[float]] | None = None,
) -> tuple[Path, Path]:
    """Write the markdown table (see :func:`format_table`) and the full-precision JSON.

    ``provenance`` (method -> which checkpoint, how it was chosen, its perceptual backbone) goes into the footnote
    and the JSON; so do ``runs`` (method -> the summary rows of each of its training runs, named ``<method>:<run>``,
    for a method whose row is the mean over several runs) and ``sis_members`` (method -> its SIS as each net of an
    ensemble scores it alone: how much the instrument, not the method, moves the SIS column).

    JSON layout: ``{"reference": method | null, "columns": [...], "rows": [row, ...], "provenance": {...},
    "runs": {method: [row, ...]}, "sis_members": {method: [SIS_1, ...]}}``; non-finite numbers (nan, inf) are written
    as ``null`` so the file is strict JSON.
    """
    md_path, json_path = Path(md_path), Path(json_path)
    table = format_table(rows, runs)
    align = ["left"] + ["right"] * (len(table[0]) - 1)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(
        markdown_table(table[0], table[1:], align)
        + "\n\n"
        + _footnote(rows, provenance, split, segmenter, runs, sis_members)
        + "\n"
    )
    ref = next((r["method"] for r in rows if r.get("is_reference")), None)
    payload = {
        "reference": ref,
        "columns": table[0],
        "rows": [dict(r) for r in rows],
        "provenance": dict(provenance or {}),
        "runs": {method: [dict(r) for r in run_rows] for method, run_rows in (runs or {}).items()},
        "sis_members": {method: list(values) for method, values in (sis_members or {}).items()},
    }
    return md_path, write_strict_json(json_path, payload)


def read_table_json(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``table.json`` written by :func:`write_table`."""
    return json.loads(Path(path).read_text())["rows"]
