"""Blinded reader-study export: anonymity, un-blinding key, self-contained page, deterministic shuffle."""

from __future__ import annotations

import json
import re

import numpy as np
from PIL import Image

from csmri.eval.reader_study.export import export_reader_study
from tests.eval.reader_study.helpers import KEYS, METHODS, image_names, study_images


def _png(out, name) -> np.ndarray:
    with Image.open(out / "study" / "images" / name) as im:
        return np.asarray(im)


def test_export_unblinding_and_anonymity(tmp_path) -> None:
    images = study_images()
    out = export_reader_study(tmp_path / "s", images, seed=3)
    key = json.loads((out / "key.json").read_text())
    names = image_names(out)
    assert len(names) == len(METHODS) * len(KEYS) == len(key["images"])
    assert all(re.fullmatch(r"img_\d{4}\.png", n) for n in names)
    assert key["seed"] == 3 and set(key["methods"]) == set(METHODS)
    assert not (out / "study" / "key.json").exists()  # the key is kept away from the readers' folder
    # un-blinding: every anonymous image is the stated method's slice, in the slice's shared window
    for name, entry in key["images"].items():
        png = _png(out, name)
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
    out = export_reader_study(tmp_path / "s", study_images(), seed=0)
    html = (out / "study" / "index.html").read_text()
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", html)  # no external resources
    assert "<style>" in html and "<script>" in html
    for field in ("overall", "scar", "artefacts"):
        assert f'name="{field}"' in html
        for v in range(1, 5):
            assert f'name="{field}" value="{v}"' in html
    assert "localStorage" in html and "ratings.csv" in html and "reader,image," in html
    assert all(f'"{n}"' in html for n in image_names(out))  # the page lists every image
    assert not re.search(r"__[A-Z_]+__", html)  # every placeholder of page.html filled in
    assert '["overall", "scar", "artefacts"]' in html  # the criteria the page's CSV writes, in the CSV's order


def test_shuffle_deterministic(tmp_path) -> None:
    images = study_images()
    a = json.loads((export_reader_study(tmp_path / "a", images, seed=7) / "key.json").read_text())["images"]
    b = json.loads((export_reader_study(tmp_path / "b", images, seed=7) / "key.json").read_text())["images"]
    c = json.loads((export_reader_study(tmp_path / "c", images, seed=8) / "key.json").read_text())["images"]
    assert a == b
    assert a != c
    order = [(v["method"], v["key"]) for _, v in sorted(a.items())]
    assert order != sorted(order)  # actually shuffled


def test_windows_without_a_ground_truth_and_at_their_edges(tmp_path) -> None:
    ramp = np.linspace(-0.2, 0.6, 20, dtype=np.float32)[None, :].repeat(4, axis=0)  # (4, 20), negatives included
    images = {
        # slice a: no ground truth, the window is the median of the methods' maxima: median(0.6, 1.2, 3.0) = 1.2
        "recnet": {"a": ramp, "b": ramp, "c": 2 * ramp},
        "dlmri": {"a": 2 * ramp, "b": ramp},
        "dagan": {"a": 5 * ramp, "b": ramp},
        # slice b: the ground truth is all zero, an empty window: [0, 1] instead; slice c: [0, max(ground truth)]
        "ground_truth": {"b": np.zeros((4, 20), np.float32), "c": ramp},
    }
    out = export_reader_study(tmp_path / "s", images, seed=0, window_method="ground_truth")
    key = json.loads((out / "key.json").read_text())
    n = sum(len(v) for v in images.values())
    assert sorted(key["images"]) == [f"img_{i:04d}.png" for i in range(1, n + 1)]
    assert re.fullmatch(r"[0-9a-f]{16}", key["study_id"]) and key["study_id"] in (out / "study/index.html").read_text()
    assert "<title>Blinded reader study</title>" in (out / "study" / "index.html").read_text()
    for name, entry in key["images"].items():
        image = images[entry["method"]][entry["key"]].astype(np.float64)
        vmax = {"a": float((2 * ramp).max()), "b": 1.0, "c": float(ramp.max())}[entry["key"]]  # 1.2, 1, 0.6
        expected = np.round(np.clip(image / vmax, 0, 1) * 255).astype(np.uint8)  # negatives black, not wrapped
        np.testing.assert_array_equal(_png(out, name), expected, err_msg=f"{entry}")


def test_a_second_export_into_the_same_folder_replaces_the_first(tmp_path) -> None:
    export_reader_study(tmp_path / "s", study_images(), seed=0)
    out = export_reader_study(tmp_path / "s", {m: study_images()[m] for m in METHODS[:2]}, seed=0)
    assert image_names(out) == sorted(json.loads((out / "key.json").read_text())["images"])
    assert len(image_names(out)) == 2 * len(KEYS)
