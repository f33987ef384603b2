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
