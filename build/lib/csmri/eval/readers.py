"""Blinded reader-study kit, standing in for the paper's expert mean opinion score (MOS).

Workflow::

    csmri eval ... hydra.run.dir=EVAL                  # writes EVAL/recons.npz (see below)
    csmri readers export --eval-dir EVAL --out STUDY [--seed 0]
    # hand STUDY/study/ (index.html + images/) to each reader; keep STUDY/key.json away from them
    csmri readers score r1.csv r2.csv --key STUDY/key.json [--reference refinement]

**``recons.npz``** (written by the eval runner with :func:`save_recons`, read by :func:`load_recons`):
one float32 ``(H, W)`` magnitude array per method and slice, named ``"<method>__<key>"`` where the
slice key ``"patient/slice"`` has its ``/`` replaced by ``~`` (``"recnet__p07~012"``). Reserved method
names: ``ground_truth`` (the fully-sampled magnitude; rated like a method, as in the paper's Table 1,
and used for the display window) and ``label`` (the ground-truth label map, integer; not rated, used
to keep only the slices containing the structure). Method names must not contain ``__``; keys must
not contain ``~``.

**Export** (:func:`export_reader_study`): every method's image of every slice becomes an 8-bit gray
PNG ``study/images/img_0001.png, ...`` in an order shuffled with ``numpy.random.default_rng(seed)``.
All images of one slice share one window ``[0, max(ground truth)]`` (without a ground truth: the
median over methods of the image maxima). ``key.json`` (anonymous name -> method and slice key, plus
the seed) is written next to, not inside, the ``study/`` folder. ``study/index.html`` is a single
self-contained page (inline CSS/JS, works from ``file://``) that shows one image at a time with 1-4
ratings (1 poor ... 4 very good) of overall quality, scar visibility and artefacts (4 = no artefacts),
navigation, progress and a "download ratings.csv" button; ratings live in the browser's localStorage,
so a reload loses nothing. CSV columns: ``reader,image,overall,scar,artefacts`` (empty = not rated).

**Scoring** (:func:`score_ratings`): un-blinds the ratings with ``key.json`` and reports per method
and criterion the MOS mean ± std (population std) and the number of ratings, and two-sided paired
Wilcoxon signed-rank p-values of each method against a reference method, pairs matched by
(reader, slice).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from csmri.metrics.stats import format_p, mean_std, paired_wilcoxon

__all__ = [
    "CRITERIA",
    "RECONS_FILE",
    "save_recons",
    "load_recons",
    "export_reader_study",
    "read_ratings",
    "score_ratings",
    "write_scores",
    "add_readers_parser",
    "run_readers",
    "readers_main",
]

CRITERIA = ("overall", "scar", "artefacts")
CRITERIA_TITLES = {"overall": "Overall quality", "scar": "Scar visibility", "artefacts": "Artefacts"}
RECONS_FILE = "recons.npz"
GROUND_TRUTH = "ground_truth"
LABEL = "label"
KEY_FORMAT = "csmri-reader-study-v1"


# --------------------------------------------------------------------------------------------------
# recons.npz
# --------------------------------------------------------------------------------------------------


def _array_name(method: str, key: str) -> str:
    if "__" in method:
        raise ValueError(f"method names must not contain '__': {method!r}")
    if "~" in key:
        raise ValueError(f"slice keys must not contain '~': {key!r}")
    return f"{method}__{key.replace('/', '~')}"


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


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
            a = _np(im)
            arrays[_array_name(method, key)] = np.squeeze(np.abs(a) if np.iscomplexobj(a) else a).astype(np.float32)
    for key, lab in (labels or {}).items():
        a = np.squeeze(_np(lab))
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


# --------------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------------


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
        arrays[str(method)] = {}
        for key, im in per_key.items():
            a = _np(im)
            arrays[str(method)][str(key)] = np.squeeze(np.abs(a) if np.iscomplexobj(a) else a)
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

    (out_dir / "study" / "index.html").write_text(_render_html(names, study_id, title), encoding="utf-8")
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


_HTML = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
  body { background: #111; color: #eee; font-family: system-ui, sans-serif; margin: 0; }
  header, main { max-width: 1100px; margin: 0 auto; padding: 0.5em 1em; }
  #view { display: flex; gap: 1.5em; align-items: flex-start; flex-wrap: wrap; }
  #img { width: min(75vh, 90vw); height: auto; background: #000; image-rendering: auto; }
  fieldset { border: 1px solid #555; margin: 0 0 0.8em 0; }
  legend { font-weight: bold; }
  label.r { display: inline-block; margin-right: 0.8em; cursor: pointer; }
  button { font-size: 1em; margin: 0.2em 0.2em 0.2em 0; padding: 0.3em 0.8em; }
  #progress { margin: 0.5em 0; }
  .warn { color: #f88; }
  .hint { color: #aaa; font-size: 0.9em; }
</style>
</head>
<body>
<header>
  <h1>__TITLE__</h1>
  <p>Rate each image from <b>1 (poor)</b> to <b>4 (very good)</b> on three criteria: overall image
  quality, visibility of the atrial scar, and artefacts (<b>4 = no artefacts</b>, 1 = severe).
  Images are shown in a fixed random order and carry no information about how they were made.
  Ratings are saved in this browser automatically; click <b>Download ratings.csv</b> when you are
  done (or at any time) and send the file back.</p>
  <p>Reader name or initials: <input id="reader" size="20" autocomplete="off">
  <span id="reader-warn" class="warn"></span></p>
  <p id="storage-warn" class="warn"></p>
</header>
<main>
  <div id="progress"></div>
  <div id="view">
    <img id="img" alt="image to rate">
    <form id="ratings" onsubmit="return false">
      <div id="name"></div>
      __FIELDSETS__
      <div>
        <button type="button" id="prev">&larr; Previous</button>
        <button type="button" id="next">Next &rarr;</button>
        <button type="button" id="next-unrated">Next unrated</button>
      </div>
      <div><button type="button" id="download">Download ratings.csv</button></div>
      <p class="hint">Keys: &larr;/&rarr; navigate; 1&ndash;4 rate the first criterion still unrated.</p>
    </form>
  </div>
</main>
<script>
"use strict";
var IMAGES = __IMAGES__;
var CRITERIA = __CRITERIA__;
var STORE = "csmri-reader-study:" + __STUDY_ID__;
var state = { reader: "", pos: 0, ratings: {} };
var storageOk = true;

function load() {
  try {
    var raw = window.localStorage.getItem(STORE);
    if (raw) {
      var s = JSON.parse(raw);
      state.reader = s.reader || "";
      state.pos = Math.min(Math.max(s.pos || 0, 0), IMAGES.length - 1);
      state.ratings = s.ratings || {};
    }
  } catch (e) {
    storageOk = false;
  }
}
function save() {
  try {
    window.localStorage.setItem(STORE, JSON.stringify(state));
  } catch (e) {
    storageOk = false;
  }
  document.getElementById("storage-warn").textContent = storageOk ? "" :
    "This browser does not allow saving ratings locally: download ratings.csv before closing the page.";
}
function complete(name) {
  var r = state.ratings[name];
  if (!r) return false;
  for (var i = 0; i < CRITERIA.length; i++) if (!r[CRITERIA[i]]) return false;
  return true;
}
function show() {
  var name = IMAGES[state.pos];
  document.getElementById("img").src = "images/" + name;
  document.getElementById("name").textContent = name;
  var r = state.ratings[name] || {};
  for (var i = 0; i < CRITERIA.length; i++) {
    var radios = document.getElementsByName(CRITERIA[i]);
    for (var j = 0; j < radios.length; j++) {
      radios[j].checked = String(r[CRITERIA[i]] || "") === radios[j].value;
    }
  }
  var done = 0;
  for (var k = 0; k < IMAGES.length; k++) if (complete(IMAGES[k])) done++;
  document.getElementById("progress").textContent =
    "Image " + (state.pos + 1) + " of " + IMAGES.length + " \u2014 " + done + " fully rated";
  document.getElementById("prev").disabled = state.pos === 0;
  document.getElementById("next").disabled = state.pos === IMAGES.length - 1;
}
function go(pos) {
  state.pos = Math.min(Math.max(pos, 0), IMAGES.length - 1);
  save();
  show();
}
function rate(criterion, value) {
  var name = IMAGES[state.pos];
  if (!state.ratings[name]) state.ratings[name] = {};
  state.ratings[name][criterion] = value;
  save();
  show();
}
function csvField(s) {
  s = String(s);
  return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}
function download() {
  var reader = state.reader.trim();
  if (!reader) {
    document.getElementById("reader-warn").textContent = "Please enter your name or initials first.";
    document.getElementById("reader").focus();
    return;
  }
  var lines = ["reader,image," + CRITERIA.join(",")];
  for (var k = 0; k < IMAGES.length; k++) {
    var r = state.ratings[IMAGES[k]];
    if (!r) continue;
    var row = [csvField(reader), IMAGES[k]];
    for (var i = 0; i < CRITERIA.length; i++) row.push(r[CRITERIA[i]] || "");
    lines.push(row.join(","));
  }
  var blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" });
  var a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "ratings.csv";
  document.body.appendChild(a);
  a.click();
  setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}
function init() {
  load();
  var readerInput = document.getElementById("reader");
  readerInput.value = state.reader;
  readerInput.addEventListener("input", function () {
    state.reader = readerInput.value;
    document.getElementById("reader-warn").textContent = "";
    save();
  });
  for (var i = 0; i < CRITERIA.length; i++) {
    (function (criterion) {
      var radios = document.getElementsByName(criterion);
      for (var j = 0; j < radios.length; j++) {
        radios[j].addEventListener("change", function (ev) { rate(criterion, Number(ev.target.value)); });
      }
    })(CRITERIA[i]);
  }
  document.getElementById("prev").addEventListener("click", function () { go(state.pos - 1); });
  document.getElementById("next").addEventListener("click", function () { go(state.pos + 1); });
  document.getElementById("next-unrated").addEventListener("click", function () {
    for (var k = 1; k <= IMAGES.length; k++) {
      var p = (state.pos + k) % IMAGES.length;
      if (!complete(IMAGES[p])) { go(p); return; }
    }
  });
  document.getElementById("download").addEventListener("click", download);
  document.addEventListener("keydown", function (ev) {
    if (ev.target === readerInput) return;
    if (ev.key === "ArrowLeft") go(state.pos - 1);
    else if (ev.key === "ArrowRight") go(state.pos + 1);
    else if (/^[1-4]$/.test(ev.key)) {
      var r = state.ratings[IMAGES[state.pos]] || {};
      for (var i = 0; i < CRITERIA.length; i++) {
        if (!r[CRITERIA[i]]) { rate(CRITERIA[i], Number(ev.key)); return; }
      }
    }
  });
  save();
  show();
}
init();
</script>
</body>
</html>
"""


def _render_html(names: Sequence[str], study_id: str, title: str) -> str:
    """The self-contained rating page (no external resources; images referenced as images/<name>)."""
    scale = {1: "1 poor", 2: "2 fair", 3: "3 good", 4: "4 very good"}
    fieldsets = []
    for c in CRITERIA:
        radios = "".join(
            f'<label class="r"><input type="radio" name="{c}" value="{v}"> {text}</label>' for v, text in scale.items()
        )
        fieldsets.append(f"<fieldset><legend>{CRITERIA_TITLES[c]}</legend>{radios}</fieldset>")
    return (
        _HTML.replace("__TITLE__", html.escape(title))
        .replace("__FIELDSETS__", "\n      ".join(fieldsets))
        .replace("__IMAGES__", json.dumps(list(names)))
        .replace("__CRITERIA__", json.dumps(list(CRITERIA)))
        .replace("__STUDY_ID__", json.dumps(study_id))
    )


# --------------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------------


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
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
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
        lines.append("| " + " | ".join(cells) + " |")
    readers = result.get("readers", [])
    note = (
        f"MOS: mean ± std (population) of 1 (poor) – 4 (very good) ratings by {len(readers)} reader(s); "
        "artefacts: 4 = none. Best per criterion in bold (ground truth excluded)."
    )
    if result.get("reference"):
        note += (
            f" p: two-sided paired Wilcoxon signed-rank test against {result['reference']}, paired by reader and slice."
        )
    lines += ["", note, ""]
    md_path, json_path = Path(md_path), Path(json_path)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text("\n".join(lines))

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(clean(dict(result)), indent=2, allow_nan=False) + "\n")
    return md_path, json_path


# --------------------------------------------------------------------------------------------------
# command line: csmri readers export | score
# --------------------------------------------------------------------------------------------------


def add_readers_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``readers`` (with ``export`` and ``score``) to an argparse sub-parser collection.

    The parsed namespace has ``readers_command`` in ``{"export", "score"}`` and ``func=run_readers``.
    """
    parser = subparsers.add_parser(
        "readers",
        help="blinded reader study: export images, score ratings",
        description="Blinded reader-study kit (the paper's MOS).",
    )
    commands = parser.add_subparsers(dest="readers_command", required=True)
    export = commands.add_parser("export", help="write shuffled anonymous images + rating page + key.json")
    export.add_argument("--eval-dir", required=True, help=f"output dir of `csmri eval` (holds {RECONS_FILE})")
    export.add_argument("--out", required=True, help="study dir: study/ for the readers, key.json kept back")
    export.add_argument("--seed", type=int, default=0, help="shuffle seed (recorded in key.json)")
    export.add_argument("--methods", nargs="+", help="subset of methods (default: all in the file)")
    export.add_argument(
        "--all-slices",
        action="store_true",
        help="also export slices without the structure (default: only those whose label has it)",
    )
    export.add_argument("--max-slices", type=int, help="random subset of this many slices (seeded)")
    score = commands.add_parser("score", help="un-blind ratings.csv files and report MOS per method")
    score.add_argument("ratings", nargs="+", help="ratings.csv file(s) downloaded from the rating page")
    score.add_argument("--key", required=True, help="key.json written by `csmri readers export`")
    score.add_argument(
        "--reference",
        default="refinement",
        help="method for the p-values ('none': no tests; default: refinement)",
    )
    score.add_argument("--out", help="directory for scores.md / scores.json (default: next to key.json)")
    parser.set_defaults(func=run_readers)
    return parser


def _export(args: argparse.Namespace) -> int:
    recons = Path(args.eval_dir) / RECONS_FILE
    if not recons.is_file():
        raise FileNotFoundError(f"{recons} not found: run `csmri eval` first (it writes {RECONS_FILE})")
    images, labels = load_recons(recons)
    if args.methods:
        unknown = [m for m in args.methods if m not in images]
        if unknown:
            raise ValueError(f"methods {unknown} are not in {recons}; it has {sorted(images)}")
        images = {m: images[m] for m in args.methods}
    keys = sorted({k for per_key in images.values() for k in per_key})
    if not args.all_slices:
        if labels:
            keys = [k for k in keys if k in labels and np.any(labels[k] > 0)]
        else:
            print(f"note: {recons} has no label maps; exporting all {len(keys)} slices")
    if args.max_slices is not None and len(keys) > args.max_slices:
        pick = np.random.default_rng([args.seed, 1]).choice(len(keys), size=args.max_slices, replace=False)
        keys = [keys[i] for i in sorted(pick)]
    if not keys:
        raise ValueError("no slices to export (none contains the structure? try --all-slices)")
    wanted = set(keys)
    images = {m: {k: v for k, v in per_key.items() if k in wanted} for m, per_key in images.items()}
    out = export_reader_study(args.out, images, seed=args.seed)
    n = sum(len(v) for v in images.values())
    print(f"wrote {n} images of {len(keys)} slices x {len(images)} methods to {out / 'study'}")
    print(f"un-blinding key: {out / 'key.json'} (keep it away from the readers)")
    return 0


def _score(args: argparse.Namespace) -> int:
    reference = None if str(args.reference).lower() == "none" else args.reference
    result = score_ratings(args.ratings, args.key, reference=reference)
    out = Path(args.out) if args.out else Path(args.key).parent
    md, js = write_scores(result, out / "scores.md", out / "scores.json")
    print(md.read_text())
    print(f"wrote {md} and {js}")
    return 0


def run_readers(args: argparse.Namespace) -> int:
    """Run a parsed ``csmri readers ...`` command; errors in the inputs print a message and return 2."""
    try:
        if args.readers_command == "export":
            return _export(args)
        if args.readers_command == "score":
            return _score(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        import sys

        print(f"csmri readers {args.readers_command}: error: {err}", file=sys.stderr)
        return 2
    raise ValueError(f"unknown readers command {args.readers_command!r}")


def readers_main(argv: Sequence[str]) -> int:
    """``csmri readers <argv>`` as a stand-alone entry point (parses and runs)."""
    parser = argparse.ArgumentParser(prog="csmri")
    add_readers_parser(parser.add_subparsers(dest="command", required=True))
    return run_readers(parser.parse_args(["readers", *argv]))
