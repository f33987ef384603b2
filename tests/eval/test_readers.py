"""Blinded reader-study kit: export, anonymity, un-blinding, scoring, CLI."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from csmri.eval.readers import (
    export_reader_study,
    load_recons,
    readers_main,
    save_recons,
    score_ratings,
    write_scores,
)

METHODS = ["ground_truth", "zero_filled", "recnet", "refinement"]
KEYS = [f"pat{p}/{s:03d}" for p in range(2) for s in range(3)]


def _images(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {m: {k: rng.random((16, 20)).astype(np.float32) * 2 for k in KEYS} for m in METHODS}


def _names(study: Path) -> list[str]:
    return sorted(p.name for p in (study / "study" / "images").iterdir())


def test_export_unblinding_and_anonymity(tmp_path) -> None:
    images = _images()
    out = export_reader_study(tmp_path / "s", images, seed=3)
    key = json.loads((out / "key.json").read_text())
    names = _names(out)
    assert len(names) == len(METHODS) * len(KEYS) == len(key["images"])
    assert all(re.fullmatch(r"img_\d{4}\.png", n) for n in names)
    assert key["seed"] == 3 and set(key["methods"]) == set(METHODS)
    assert not (out / "study" / "key.json").exists()  # the key is kept away from the readers' folder
    # un-blinding: every anonymous image is the stated method's slice, in the slice's shared window
    for name, entry in key["images"].items():
        with Image.open(out / "study" / "images" / name) as im:
            png = np.asarray(im)
        assert png.shape == (16, 20) and png.dtype == np.uint8
        vmax = images["ground_truth"][entry["key"]].max()
        expected = np.round(np.clip(images[entry["method"]][entry["key"]] / vmax, 0, 1) * 255)
        np.testing.assert_array_equal(png, expected.astype(np.uint8))
    # nothing the readers get names a method
    html = (out / "study" / "index.html").read_text()
    for m in [*METHODS, "ground truth", "zero-filled", "recon", "dagan", "dlmri"]:
        assert m not in html.lower()
        assert not any(m in n for n in names)


def test_html_self_contained_with_rating_fields(tmp_path) -> None:
    out = export_reader_study(tmp_path / "s", _images(), seed=0)
    html = (out / "study" / "index.html").read_text()
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", html)  # no external resources
    assert "<style>" in html and "<script>" in html
    for field in ("overall", "scar", "artefacts"):
        assert f'name="{field}"' in html
        for v in range(1, 5):
            assert f'name="{field}" value="{v}"' in html
    assert "localStorage" in html and "ratings.csv" in html and "reader,image," in html
    assert all(f'"{n}"' in html for n in _names(out))  # the page lists every image


def test_shuffle_deterministic(tmp_path) -> None:
    images = _images()
    a = json.loads((export_reader_study(tmp_path / "a", images, seed=7) / "key.json").read_text())["images"]
    b = json.loads((export_reader_study(tmp_path / "b", images, seed=7) / "key.json").read_text())["images"]
    c = json.loads((export_reader_study(tmp_path / "c", images, seed=8) / "key.json").read_text())["images"]
    assert a == b
    assert a != c
    order = [(v["method"], v["key"]) for _, v in sorted(a.items())]
    assert order != sorted(order)  # actually shuffled


def _write_ratings(path: Path, key_json: Path, rate) -> Path:
    """3 readers rate every image; ``rate(reader_idx, method, key) -> (overall, scar, artefacts)``."""
    key = json.loads(key_json.read_text())["images"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["reader", "image", "overall", "scar", "artefacts"])
        for r in range(3):
            for name, e in sorted(key.items()):
                w.writerow([f"reader {r}", name, *rate(r, e["method"], e["key"])])
    return path


def test_score_synthetic_ratings(tmp_path) -> None:
    out = export_reader_study(tmp_path / "s", _images(), seed=1)
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

    ratings = _write_ratings(tmp_path / "ratings.csv", kj, rate)
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
    out = export_reader_study(tmp_path / "s", _images(), seed=1)
    kj = out / "key.json"
    good = _write_ratings(tmp_path / "ok.csv", kj, lambda r, m, k: (3, 3, 3))
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


def test_cli_export_and_score(tmp_path, capsys) -> None:
    images = _images()
    labels = {k: np.zeros((16, 20), np.int64) for k in KEYS}
    for k in KEYS[:4]:
        labels[k][5:9, 5:9] = 1  # only 4 of 6 slices contain the structure
    eval_dir = tmp_path / "eval"
    save_recons(eval_dir / "recons.npz", images, labels)
    back, back_labels = load_recons(eval_dir / "recons.npz")
    assert set(back) == set(METHODS) and set(back_labels) == set(KEYS)
    np.testing.assert_array_equal(back["recnet"]["pat1/002"], images["recnet"]["pat1/002"])

    study = tmp_path / "study"
    assert readers_main(["export", "--eval-dir", str(eval_dir), "--out", str(study), "--seed", "5"]) == 0
    key = json.loads((study / "key.json").read_text())
    assert sorted(key["keys"]) == sorted(KEYS[:4]) and len(key["images"]) == 4 * len(METHODS)
    ratings = _write_ratings(tmp_path / "ratings.csv", study / "key.json", lambda r, m, k: (2, 2, 2))
    assert readers_main(["score", str(ratings), "--key", str(study / "key.json")]) == 0
    assert (study / "scores.md").is_file() and (study / "scores.json").is_file()
    assert "refinement (ref.)" in capsys.readouterr().out
    assert readers_main(["export", "--eval-dir", str(tmp_path / "missing"), "--out", str(study)]) == 2
    with pytest.raises(ValueError, match="'__'"):
        save_recons(tmp_path / "x.npz", {"a__b": {"k/1": np.zeros((2, 2))}})
