"""Tests of the dataset contract (csmri.data.layout); expected values are written out by hand."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from hydra.utils import get_class

from csmri.data import layout


def test_meta_round_trip(tmp_path):
    splits = {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
    meta = layout.build_meta("folder", (32, 48), splits=splits, label_names={"1": "x"}, seed=3)
    layout.write_meta(tmp_path, meta)
    on_disk = json.loads((tmp_path / "meta.json").read_text())
    assert list(on_disk) == ["format", "source", "size", "splits", "label_names", "seed"]
    assert on_disk["format"] == "csmri-slices-v1" and on_disk["size"] == [32, 48]
    assert layout.has_layout(tmp_path) and layout.read_meta(tmp_path) == on_disk
    with pytest.raises(ValueError, match="splits"):
        layout.build_meta("folder", (32, 32), splits={"train": [], "val": []})


def test_read_meta_rejects_other_formats_and_names_real_fixes(tmp_path):
    with pytest.raises(FileNotFoundError, match="csmri data prepare") as missing:
        layout.read_meta(tmp_path)
    assert "generate_if_missing" not in str(missing.value)
    (tmp_path / "meta.json").write_text(json.dumps({"format": "other", "splits": {}}))
    with pytest.raises(ValueError, match="unsupported dataset format 'other'"):
        layout.read_meta(tmp_path)


def test_case_file_round_trip_and_slice_keys(tmp_path):
    image = (np.arange(2 * 4 * 6).reshape(2, 4, 6) * (1 + 1j)).astype(np.complex64)
    label = np.zeros((2, 4, 6), np.uint8)
    label[1, 2, 3] = 1
    path = tmp_path / "p.h5"
    layout.write_case_file(path, "p", image, label, indices=[7, 12], attrs={"patient": "P"})
    with h5py.File(path, "r") as f:  # read back without the layout's reader
        assert f["image"].dtype == np.complex64 and f["label"].dtype == np.uint8
        assert f["image"].chunks == (1, 4, 6)
        assert [k.decode() for k in f["keys"][()]] == ["p/007", "p/012"]
        assert f.attrs["patient_id"] == "p" and f.attrs["patient"] == "P"
        np.testing.assert_array_equal(f["image"][()], image)
    with layout.open_case_file(path) as f:
        assert layout.read_slice_keys(f) == ["p/007", "p/012"]
        np.testing.assert_array_equal(f["label"][()], label)
    assert layout.slice_key("phantom_007", 3) == "phantom_007/003"


def test_split_counts_and_indices():
    assert layout.split_counts(37) == (24, 6, 7)  # the paper's patient split
    assert layout.split_counts(3) == (1, 1, 1)
    assert layout.split_counts(20, [8, 1, 1]) == (16, 2, 2)
    with pytest.raises(ValueError):
        layout.split_counts(2)
    parts = layout.split_indices(37, seed=0)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [24, 6, 7]
    assert sorted(i for ids in parts.values() for i in ids) == list(range(37))


def test_normalise_max_magnitude_per_slice():
    image = np.array([[[3 + 4j, 1]], [[0, 0]]], np.complex64)  # slice peaks 5 and 0
    out = layout.normalise_max_magnitude(image)
    np.testing.assert_allclose(out, [[[0.6 + 0.8j, 0.2]], [[0, 0]]])


@pytest.mark.parametrize(
    "target",
    [
        "csmri.data.MRIDataModule",
        "csmri.data.folder.FolderSource",
        "csmri.data.sources.PhantomSource",
        "csmri.data.MaskSampler",
    ],
)
def test_targets_of_saved_run_configs_still_resolve(target):
    assert get_class(target).__name__ == target.rsplit(".", 1)[1]
