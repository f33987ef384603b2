"""Reader-study scoring: un-blinded MOS, Wilcoxon p-values against scipy, bad inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from csmri.eval.reader_study.export import export_reader_study
from csmri.eval.reader_study.score import score_ratings, write_scores
from tests.eval.reader_study.helpers import KEYS, METHODS, study_images, write_ratings


def test_score_synthetic_ratings(tmp_path) -> None:
    out = export_reader_study(tmp_path / "s", study_images(), seed=1)
    kj = out / "key.json"
    slot = {k: i for i, k in enumerate(KEYS)}
    base = {"ground_truth": 4, "refinement": 3, "recnet": 2, "zero_filled": 2}

    def rate(r: int, m: str, k: str) -> tuple:
        noise = (slot[k] + r) % 2  # same per (reader, slice) for every method
        if m == "recnet":
            return (base[m] + noise, 3 + noise, 2)  # overall: systematically below refinement
        if m == "zero_filled":
            return (3 + noise, 3 + noise, "")  # identical to refinement; artefacts not rated
        return (base[m] + noise if m != "ground_truth" else 4, 3 + noise, 3)

    ratings = write_ratings(tmp_path / "ratings.csv", kj, rate)
    result = score_ratings(ratings, kj, reference="refinement")
    rows = {r["method"]: r for r in result["rows"]}
    assert [r["method"] for r in result["rows"]][0] == "ground_truth"
    assert result["readers"] == ["reader 0", "reader 1", "reader 2"]
    n = 3 * len(KEYS)
    assert rows["recnet"]["n_ratings"] == n and rows["zero_filled"]["artefacts_n"] == 0
    # un-blinded means match what was assigned to each method
    ref_overall = [3 + (slot[k] + r) % 2 for r in range(3) for k in KEYS]
    rec_overall = [2 + (slot[k] + r) % 2 for r in range(3) for k in KEYS]
    assert rows["refinement"]["overall_mean"] == pytest.approx(np.mean(ref_overall))
    assert rows["refinement"]["overall_std"] == pytest.approx(np.std(ref_overall))
    assert rows["recnet"]["overall_mean"] == pytest.approx(np.mean(rec_overall))
    assert rows["ground_truth"]["overall_mean"] == 4.0
    # systematically lower -> small p (matches scipy); identical -> p = 1; reference -> None
    assert rows["recnet"]["p_overall"] == pytest.approx(stats.wilcoxon(rec_overall, ref_overall).pvalue)
    assert rows["recnet"]["p_overall"] < 1e-3
    assert rows["zero_filled"]["p_overall"] == 1.0 and rows["zero_filled"]["p_scar"] == 1.0
    assert math.isnan(rows["zero_filled"]["p_artefacts"])  # no pairs
    assert rows["refinement"]["p_overall"] is None
    md, js = write_scores(result, tmp_path / "scores.md", tmp_path / "scores.json")
    text = md.read_text()
    assert "refinement (ref.)" in text and "<0.001" in text and "**3.50 ± 0.50**" in text
    assert json.loads(js.read_text())["rows"][1]["p_artefacts"] is None  # nan -> null (strict JSON)


def test_score_bad_inputs(tmp_path) -> None:
    out = export_reader_study(tmp_path / "s", study_images(), seed=1)
    kj = out / "key.json"
    good = write_ratings(tmp_path / "ok.csv", kj, lambda r, m, k: (3, 3, 3))
    with pytest.raises(ValueError, match="reference"):
        score_ratings(good, kj, reference="dagan")
    bad = tmp_path / "bad.csv"
    bad.write_text("reader,image,overall,scar,artefacts\nr,img_0001.png,5,3,3\n")
    with pytest.raises(ValueError, match="1-4"):
        score_ratings(bad, kj)
    bad.write_text("reader,image,overall,scar,artefacts\nr,img_9999.png,2,3,3\n")
    with pytest.raises(ValueError, match="not in"):
        score_ratings(bad, kj)
    bad.write_text("reader,image,overall,scar,artefacts\nr,img_0001.png,2,3,3\nr,img_0001.png,3,3,3\n")
    with pytest.raises(ValueError, match="conflicting"):
        score_ratings(bad, kj)
    # the same file twice (identical duplicates) is fine
    assert score_ratings([good, good], kj)["n_ratings"] == 3 * len(METHODS) * len(KEYS)


def test_score_rating_scale_ends_unpaired_ratings_and_method_order(tmp_path) -> None:
    images = study_images()
    # the key lists the methods in this order, the ground truth last: the table puts the ground truth first, the
    # others in the key's order (not the shuffled images' order)
    order = ["recnet", "zero_filled", "refinement", "ground_truth"]
    out = export_reader_study(tmp_path / "s", {m: images[m] for m in order}, seed=1)
    kj = out / "key.json"
    slot = {k: i for i, k in enumerate(KEYS)}

    def rate(r: int, m: str, k: str) -> tuple:
        if m == "refinement":  # the reference: scar unrated on the first two slices
            return (4, "" if slot[k] < 2 else 4, 4)
        if m == "recnet":  # the ends of the scale, alternating
            return (1 if (slot[k] + r) % 2 else 4, 1, 1)
        return (2, 2, 2)

    ratings = write_ratings(tmp_path / "ratings.csv", kj, rate)
    lines = ratings.read_text().splitlines()
    mine = tmp_path / "mine.csv"  # a fourth reader rates recnet's first slice only: no reference rating to pair
    mapping = json.loads(kj.read_text())["images"]
    recnet_first = [n for n, e in mapping.items() if e == {"method": "recnet", "key": KEYS[0]}]
    mine.write_text(lines[0] + "\n" + f"reader 9,{recnet_first[0]},1,1,1\n")
    result = score_ratings([ratings, mine], kj, reference="refinement")
    assert result["reference"] == "refinement" and result["criteria"] == ["overall", "scar", "artefacts"]
    assert [r["method"] for r in result["rows"]] == ["ground_truth", "recnet", "zero_filled", "refinement"]
    rows = {r["method"]: r for r in result["rows"]}
    assert rows["recnet"]["n_slices"] == len(KEYS) and rows["recnet"]["n_ratings"] == 3 * len(KEYS) + 1
    overall = [1 if (slot[k] + r) % 2 else 4 for r in range(3) for k in KEYS] + [1]
    assert rows["recnet"]["overall_mean"] == pytest.approx(np.mean(overall))  # ratings of 1 count
    # pairs by (reader, slice) where both are rated: reader 9 has no reference; scar only on slices 2..5
    assert rows["recnet"]["p_overall"] == pytest.approx(stats.wilcoxon(overall[:-1], [4] * (3 * len(KEYS))).pvalue)
    scar_pairs = 3 * (len(KEYS) - 2)
    assert rows["recnet"]["p_scar"] == pytest.approx(stats.wilcoxon([1] * scar_pairs, [4] * scar_pairs).pvalue)
    assert rows["refinement"]["scar_n"] == 3 * (len(KEYS) - 2)


def test_score_reads_excel_csv_and_names_the_bad_line_and_columns(tmp_path) -> None:
    out = export_reader_study(tmp_path / "s", study_images(), seed=1)
    kj = out / "key.json"
    good = write_ratings(tmp_path / "ok.csv", kj, lambda r, m, k: (3, 3, 3))
    excel = tmp_path / "excel.csv"  # spreadsheet programs save UTF-8 CSV with a byte-order mark
    excel.write_bytes(good.read_text().encode("utf-8-sig"))
    assert score_ratings(excel, kj)["n_ratings"] == 3 * len(METHODS) * len(KEYS)
    bad = tmp_path / "bad.csv"
    bad.write_text("reader,image,overall,scar,artefacts\nr,img_0001.png,2,3,3\nr,img_0002.png,2,x,3\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: rating 'x' is not a number 1-4"):
        score_ratings(bad, kj)
    bad.write_text("reader,image,overall,artefacts\nr,img_0001.png,2,3\n")
    with pytest.raises(ValueError, match=r"missing columns \['scar'\]; expected reader,image,overall,scar,artefacts"):
        score_ratings(bad, kj)
    key = json.loads(kj.read_text())
    for broken in ({**key, "format": "other"}, {k: v for k, v in key.items() if k != "images"}):
        (tmp_path / "key.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match="not a reader-study key"):
            score_ratings(good, tmp_path / "key.json")


def test_the_mos_table_written_out(tmp_path) -> None:
    nan = float("nan")

    def row(method, ref, means, stds, n, ps):
        out = {"method": method, "is_reference": ref, "n_ratings": n}
        for c, m, s, p in zip(("overall", "scar", "artefacts"), means, stds, ps, strict=True):
            out.update({f"{c}_mean": m, f"{c}_std": s, f"p_{c}": p})
        return out

    result = {
        "reference": "refinement",
        "readers": ["a", "b"],
        "rows": [  # the ground truth rated highest is never bold; a criterion nobody rated reads n/a
            row("ground_truth", False, (4.0, 4.0, nan), (0.0, 0.0, nan), 6, (0.5, 0.25, nan)),
            row("refinement", True, (3.5, 2.0, nan), (0.5, 0.0, nan), 6, (None, None, None)),
            row("recnet", False, (2.25, 3.0, nan), (0.433, 1.0, nan), 5, (0.0004, 0.0421, nan)),
        ],
    }
    md, _ = write_scores(result, tmp_path / "new" / "folder" / "scores.md", tmp_path / "scores.json")
    assert md.read_text() == (
        "| Method | Overall quality (MOS) | Scar visibility (MOS) | Artefacts (MOS) | n "
        "| p (overall quality) | p (scar visibility) | p (artefacts) |\n"
        "|:---|---:|---:|---:|---:|---:|---:|---:|\n"
        "| Ground truth | 4.00 ± 0.00 | 4.00 ± 0.00 | n/a | 6 | 0.500 | 0.250 | n/a |\n"
        "| refinement (ref.) | **3.50 ± 0.50** | 2.00 ± 0.00 | n/a | 6 | — | — | — |\n"
        "| recnet | 2.25 ± 0.43 | **3.00 ± 1.00** | n/a | 5 | <0.001 | 0.042 | n/a |\n"
        "\n"
        "MOS: mean ± std (population) of 1 (poor) – 4 (very good) ratings by 2 reader(s); artefacts: 4 = none. "
        "Best per criterion in bold (ground truth excluded). p: two-sided paired Wilcoxon signed-rank test against "
        "refinement, paired by reader and slice.\n"
    )
    md, _ = write_scores({**result, "reference": None}, tmp_path / "noref.md", tmp_path / "noref.json")
    assert md.read_text().endswith("(ground truth excluded).\n")
