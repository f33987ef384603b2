"""SliceDataset on a damaged prepared dataset (csmri/data/dataset.py, csmri/data/layout.py): a one-line DataError
naming the file or folder."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from csmri.errors import DataError


def _copy(phantom_root, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(phantom_root, root)
    return root, next((root / "train").glob("*.h5"))


@pytest.mark.parametrize("damage", ["truncated", "dtype", "label_shape", "meta_json", "empty_folder"])
def test_bad_prepared_datasets_are_one_line_errors(phantom_root, tmp_path, damage):
    from csmri.data import SliceDataset

    root, victim = _copy(phantom_root, tmp_path)
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:300])
    elif damage == "dtype":
        with h5py.File(victim, "r+") as f:
            image = np.abs(f["image"][()]).astype(np.float32)
            del f["image"]
            f["image"] = image
    elif damage == "label_shape":
        with h5py.File(victim, "r+") as f:
            del f["label"]
            f["label"] = np.zeros((1, 4, 4), np.uint8)
    elif damage == "meta_json":
        (root / "meta.json").write_text("{not json")
    else:
        root = tmp_path / "empty"
        root.mkdir()
    with pytest.raises(DataError) as info:
        SliceDataset(root, "train")
    message = str(info.value)
    assert "\n" not in info.value.message
    assert (victim.name if damage in {"truncated", "dtype", "label_shape"} else str(root)) in message
