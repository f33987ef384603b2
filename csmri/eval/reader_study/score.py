"""Score a reader study: un-blind the readers' ratings.csv files with ``key.json`` and report the MOS.

Per method and criterion: the MOS mean ± std (population std) and the number of ratings, and
two-sided paired Wilcoxon signed-rank p-values of each method against a reference method, pairs
matched by (reader, slice). :func:`write_scores` writes them as a markdown table and strict JSON.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from csmri.eval.reader_study.protocol import CRITERIA, CRITERIA_TITLES, KEY_FORMAT
from csmri.eval.recons import GROUND_TRUTH
from csmri.metrics.stats import format_p, mean_std, paired_wilcoxon
from csmri.reporting import markdown_table, write_strict_json

__all__ = ["read_ratings", "score_ratings", "write_scores"]


def _rating(value: str, where: str) -> int | None:
    value = value.strip()
    if value == "":
        return None
    try:
        r = int(float(value))
    except ValueError:
        raise ValueError(f"{where}: rating {value!r} is not a number 1-4") from None
    if r != float(value) or not 1 <= r <= 4:
        raise ValueError(f"{where}: rating {value!r} is not an integer 1-4")
    return r


def read_ratings(paths: str | Path | Iterable[str | Path]) -> list[dict[str, Any]]:
    """Rows ``{"reader", "image", "overall", "scar", "artefacts"}`` (ratings int 1-4 or None) of one or
    more ratings.csv files. Identical repeated rows are dropped; conflicting ratings of the same
    (reader, image) are an error."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        with Path(path).open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("reader", "image", *CRITERIA) if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: missing columns {missing}; expected reader,image,{','.join(CRITERIA)}")
            for line, row in enumerate(reader, start=2):
                where = f"{path}:{line}"
                rec = {"reader": row["reader"].strip(), "image": row["image"].strip()}
                rec.update({c: _rating(row[c] or "", where) for c in CRITERIA})
                ident = (rec["reader"], rec["image"])
                if ident in seen and seen[ident] != rec:
                    raise ValueError(f"{where}: conflicting ratings of {rec['image']} by reader {rec['reader']!r}")
                seen[ident] = rec
    return list(seen.values())


def score_ratings(
    ratings_csv: str | Path | Iterable[str | Path],
    key_json: str | Path,
    reference: str | None = "refinement",
) -> dict[str, Any]:
    """Un-blind the ratings and score them per method.

    Returns ``{"reference", "criteria", "readers", "n_ratings", "rows"}`` where each row is
    ``{"method", "is_reference", "n_ratings", "n_slices", "<c>_mean", "<c>_std", "<c>_n", "p_<c>"}``
    for each criterion ``c`` in ``overall, scar, artefacts``: MOS mean ± population std over the
    ratings of that method, and the two-sided paired Wilcoxon p-value against ``reference`` (pairs
    matched by reader and slice; ``None`` for the reference itself or when ``reference`` is None).
    Rows: ground truth first (if rated), then the key's method order.
    """
    key = json.loads(Path(key_json).read_text())
    if key.get("format") != KEY_FORMAT or "images" not in key:
        raise ValueError(f"{key_json} is not a reader-study key written by `csmri readers export`")
    mapping: dict[str, dict[str, str]] = key["images"]
    methods = list(key.get("methods") or dict.fromkeys(v["method"] for v in mapping.values()))
    if GROUND_TRUTH in methods:
        methods = [GROUND_TRUTH, *(m for m in methods if m != GROUND_TRUTH)]
    if reference is not None and reference not in methods:
        raise ValueError(f"reference method {reference!r} is not in the study; methods: {methods}")

    ratings = read_ratings(ratings_csv)
    # {method: {(reader, slice key): {criterion: rating}}}
    table: dict[str, dict[tuple[str, str], dict[str, int | None]]] = {m: {} for m in methods}
    for r in ratings:
        if r["image"] not in mapping:
            raise ValueError(f"image {r['image']!r} (reader {r['reader']!r}) is not in {key_json}")
        entry = mapping[r["image"]]
        table.setdefault(entry["method"], {})[(r["reader"], entry["key"])] = {c: r[c] for c in CRITERIA}

    rows = []
    for method in methods:
        per = table[method]
        row: dict[str, Any] = {
            "method": method,
            "is_reference": method == reference,
            "n_ratings": sum(any(v[c] is not None for c in CRITERIA) for v in per.values()),
            "n_slices": len({k for _, k in per}),
        }
        for c in CRITERIA:
            values = [v[c] for v in per.values() if v[c] is not None]
            row[f"{c}_mean"], row[f"{c}_std"] = mean_std(values)
            row[f"{c}_n"] = len(values)
            if reference is None or method == reference:
                row[f"p_{c}"] = None
            else:
                ref = table[reference]
                pairs = [
                    (v[c], ref[ident][c])
                    for ident, v in per.items()
                    if ident in ref and v[c] is not None and ref[ident][c] is not None
                ]
                row[f"p_{c}"] = paired_wilcoxon([a for a, _ in pairs], [b for _, b in pairs])
        rows.append(row)
    return {
        "reference": reference,
        "criteria": list(CRITERIA),
        "readers": sorted({r["reader"] for r in ratings}),
        "n_ratings": len(ratings),
        "rows": rows,
    }


def write_scores(result: Mapping[str, Any], md_path: str | Path, json_path: str | Path) -> tuple[Path, Path]:
    """Markdown MOS table (best mean per criterion in bold, ground truth excluded) and strict JSON."""
    rows = result["rows"]
    header = [
        "Method",
        *(f"{CRITERIA_TITLES[c]} (MOS)" for c in CRITERIA),
        "n",
        *(f"p ({CRITERIA_TITLES[c].lower()})" for c in CRITERIA),
    ]
    best = {}
    for c in CRITERIA:
        vals = [r[f"{c}_mean"] for r in rows if r["method"] != GROUND_TRUTH and not math.isnan(r[f"{c}_mean"])]
        best[c] = max(vals) if vals else None
    body = []
    for r in rows:
        name = ("Ground truth" if r["method"] == GROUND_TRUTH else r["method"]) + (
            " (ref.)" if r["is_reference"] else ""
        )
        cells = [name]
        for c in CRITERIA:
            mean, std = r[f"{c}_mean"], r[f"{c}_std"]
            text = "n/a" if math.isnan(mean) else f"{mean:.2f} ± {std:.2f}"
            if r["method"] != GROUND_TRUTH and best[c] is not None and mean == best[c]:
                text = f"**{text}**"
            cells.append(text)
        cells.append(str(r["n_ratings"]))
        cells += [format_p(r[f"p_{c}"]) for c in CRITERIA]
        body.append(cells)
    readers = result.get("readers", [])
    note = (
        f"MOS: mean ± std (population) of 1 (poor) – 4 (very good) ratings by {len(readers)} reader(s); "
        "artefacts: 4 = none. Best per criterion in bold (ground truth excluded)."
    )
    if result.get("reference"):
        note += (
            f" p: two-sided paired Wilcoxon signed-rank test against {result['reference']}, paired by reader and slice."
        )
    md_path = Path(md_path)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown_table(header, body, ["left"] + ["right"] * (len(header) - 1)) + "\n\n" + note + "\n")
    return md_path, write_strict_json(json_path, dict(result))
