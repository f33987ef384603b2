"""``csmri readers export | score`` end to end, from a recons.npz."""

from __future__ import annotations

import json

import numpy as np
import pytest

from csmri.app.readers import main as readers_main
from csmri.eval.recons import load_recons, save_recons
from tests.eval.reader_study.helpers import KEYS, METHODS, study_images, write_ratings


def test_cli_export_and_score(tmp_path, capsys) -> None:
    images = study_images()
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
    ratings = write_ratings(tmp_path / "ratings.csv", study / "key.json", lambda r, m, k: (2, 2, 2))
    assert readers_main(["score", str(ratings), "--key", str(study / "key.json")]) == 0
    assert (study / "scores.md").is_file() and (study / "scores.json").is_file()
    assert "refinement (ref.)" in capsys.readouterr().out
    assert readers_main(["export", "--eval-dir", str(tmp_path / "missing"), "--out", str(study)]) == 2
    with pytest.raises(ValueError, match="'__'"):
        save_recons(tmp_path / "x.npz", {"a__b": {"k/1": np.zeros((2, 2))}})
