"""FolderSource: naming rules, conversion, splits, named layouts, bad inputs, re-use, and the DataModule."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from csmri.config import data_source
from csmri.data import MRIDataModule, SliceDataset
from csmri.data.layout import split_counts
from csmri.data.sources.folder import FolderSource
from csmri.errors import BadInputError
from csmri.physics import fft2c
from tests.data.sources.test_scan_files import (
    blob_case,
    truncate,
    volume,
    write_dicom_series,
    write_h5,
    write_nifti,
    write_nrrd,
)


def nifti_folder(root: Path, n: int = 4, shape: tuple[int, int, int] = (32, 32, 6), labels: bool = True) -> Path:
    """``<case>.nii.gz`` + ``<case>_label.nii.gz`` blob cases ``case0..``."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, label = blob_case(shape, seed=i)
        write_nifti(root / f"case{i}.nii.gz", image)
        if labels:
            write_nifti(root / f"case{i}_label.nii.gz", label)
    return root


def prepare(root: Path, **options) -> tuple[Path, dict]:
    out = FolderSource(progress=False, **options).prepare(root)
    return out, json.loads((out / "meta.json").read_text())


def case_file(out: Path, meta: dict, case: str) -> h5py.File:
    split = next(s for s, names in meta["splits"].items() if case in names)
    return h5py.File(out / split / f"{case}.h5", "r")


# -- conversion ------------------------------------------------------------------------------------


def test_nifti_folder_layout_shapes_normalisation_and_alignment(tmp_path):
    root = nifti_folder(tmp_path / "raw", shape=(32, 48, 6))  # non-square: a transposition would show
    out, meta = prepare(root)
    assert out.parent == root / ".csmri_prepared" and out.name == FolderSource().options_hash()
    assert meta["format"] == "csmri-slices-v1" and meta["size"] == [32, 48] and meta["has_labels"] is True
    assert sorted(sum(meta["splits"].values(), [])) == [f"case{i}" for i in range(4)]
    assert {s: len(v) for s, v in meta["splits"].items()} == {"train": 2, "val": 1, "test": 1}
    summary = meta["summary"]
    assert summary["slices"] == {"train": 12, "val": 6, "test": 6}
    assert summary["slices_with_structure"] == {"train": 8, "val": 4, "test": 4}
    for i in range(4):
        image, label = blob_case((32, 48, 6), seed=i)
        with case_file(out, meta, f"case{i}") as f:
            stored, stored_label = f["image"][()], f["label"][()]
            assert stored.dtype == np.complex64 and stored.shape == (6, 32, 48)
            assert [k.decode() for k in f["keys"][()]] == [f"case{i}/{s:03d}" for s in range(6)]
        np.testing.assert_allclose(np.abs(stored).max(axis=(1, 2)), 1.0, rtol=1e-6)
        expected = np.moveaxis(image, -1, 0)
        np.testing.assert_allclose(stored.real, expected / expected.max(axis=(1, 2), keepdims=True), rtol=1e-5)
        np.testing.assert_array_equal(stored_label, np.moveaxis(label, -1, 0))
    item = SliceDataset(out, "test")[1]
    assert item["target"].shape == (32, 48) and item["target"].abs().max().item() == pytest.approx(1.0)


def test_label_with_flipped_affine_is_reoriented_to_the_image(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    image, label = blob_case((32, 32, 6), seed=1)
    for i in range(3):
        write_nifti(root / f"c{i}.nii.gz", image)
        flip = np.diag([-1.0, 1.0, 1.0, 1.0])
        flip[0, 3] = 31.0  # voxel i of the label is voxel 31 - i of the image: same world position
        write_nifti(root / f"c{i}_label.nii.gz", label[::-1].copy(), flip)
    out, meta = prepare(root)
    with case_file(out, meta, "c0") as f:
        np.testing.assert_array_equal(f["label"][()], np.moveaxis(label, -1, 0))


def test_parallel_folders_axis_slice_range_transpose_and_resize(tmp_path):
    root = tmp_path / "raw"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(3):
        image, label = blob_case((32, 32, 8), seed=i)
        np.save(root / "images" / f"p{i}.npy", np.moveaxis(image, -1, 0))  # (S, H, W)
        np.save(root / "labels" / f"p{i}.npy", np.moveaxis(label, -1, 0))
    out, meta = prepare(root, naming="parallel", axis=0, slices=[2, -1], transpose=True, size=[16, 16], fit="resize")
    assert meta["size"] == [16, 16]
    _, label = blob_case((32, 32, 8), seed=0)
    with case_file(out, meta, "p0") as f:
        assert f["image"].shape == (5, 16, 16)
        assert [k.decode() for k in f["keys"][()]] == [f"p0/{s:03d}" for s in range(2, 7)]
        expected = label[::2, ::2, 2:7].transpose(2, 1, 0)  # nearest neighbour at half size, transposed
        np.testing.assert_array_equal(f["label"][()], expected)


def test_dicom_series_case_folders_with_npy_labels(tmp_path):
    root = tmp_path / "raw"
    for i in range(3):
        image, label = blob_case((16, 16, 4), seed=i)
        write_dicom_series(root / f"s{i}", (image * 1000).astype(np.uint16).astype(np.float32), order=[3, 1, 0, 2])
        np.save(root / f"s{i}_label.npy", label)
    out, meta = prepare(root)
    with case_file(out, meta, "s2") as f:
        np.testing.assert_array_equal(f["label"][()], np.moveaxis(blob_case((16, 16, 4), seed=2)[1], -1, 0))
        assert f["image"].shape == (4, 16, 16)


def test_empty_slices_dropped_and_counted_and_synthetic_phase(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    for i in range(3):
        data = volume((16, 16, 5), seed=i)
        data[..., 0] = 0
        write_h5(root / f"v{i}.h5", image=data)
    out, meta = prepare(root, synthetic_phase=True)
    assert meta["summary"]["dropped_empty_slices"] == 3 and meta["has_labels"] is False
    with case_file(out, meta, "v1") as f:
        assert [k.decode() for k in f["keys"][()]] == [f"v1/{s:03d}" for s in range(1, 5)]
        stored = f["image"][()]
    data = np.moveaxis(volume((16, 16, 5), seed=1), -1, 0)[1:]
    np.testing.assert_allclose(np.abs(stored), data / data.max(axis=(1, 2), keepdims=True), rtol=1e-5)
    assert np.abs(np.angle(stored)).max() > 0.05  # a real phase was added


def test_sizes_must_agree_or_be_set_and_be_even(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    for i, shape in enumerate([(16, 16, 3), (16, 16, 3), (20, 18, 3)]):
        np.save(root / f"c{i}.npy", volume(shape, seed=i))
    with pytest.raises(BadInputError, match=r"c2\.npy.*data.source.size"):
        prepare(root)
    _, meta = prepare(root, size=16)
    assert meta["summary"]["native_sizes"] == {"16x16": 2, "20x18": 1}
    odd = tmp_path / "odd"
    odd.mkdir()
    for i in range(3):
        np.save(odd / f"c{i}.npy", volume((15, 16, 3), seed=i))
    with pytest.raises(BadInputError, match=r"c0\.npy.*odd"):
        prepare(odd)
    with pytest.raises(ValueError, match="even"):
        FolderSource(size=[15, 16])


# -- splits ----------------------------------------------------------------------------------------


def _patients_folder(root: Path) -> Path:
    root.mkdir()
    for p in range(6):
        for t in range(2):
            np.save(root / f"pat{p}_t{t}.npy", volume((8, 8, 2), seed=p * 2 + t))
    return root


def test_split_by_patient_without_leakage_and_seeded(tmp_path):
    root = _patients_folder(tmp_path / "raw")
    out, meta = prepare(root, patient_regex=r"^(pat\d+)_", seed=3)
    patients = {s: {meta["patients"][c] for c in cases} for s, cases in meta["splits"].items()}
    assert patients["train"].isdisjoint(patients["val"]) and patients["train"].isdisjoint(patients["test"])
    assert patients["val"].isdisjoint(patients["test"])
    assert sum(len(p) for p in patients.values()) == 6 and meta["summary"]["patients"]["train"] == 4
    for cases in meta["splits"].values():  # both time points of a patient share its split
        assert all(c.replace("_t0", "_t1") in cases for c in cases if c.endswith("_t0"))
    _, again = prepare(root, patient_regex=r"^(pat\d+)_", seed=3, out=str(tmp_path / "again"))
    assert again["splits"] == meta["splits"]
    other = [prepare(root, patient_regex=r"^(pat\d+)_", seed=s)[1]["splits"] for s in range(4, 8)]
    assert any(o != meta["splits"] for o in other)


def test_explicit_split_lists_and_ratio_counts(tmp_path):
    root = _patients_folder(tmp_path / "raw")
    lists = {"train": ["pat0", "pat1", "pat2"], "val": ["pat3", "pat4"], "test": ["pat5"]}
    _, meta = prepare(root, patient_regex=r"^(pat\d+)_", splits=lists)
    assert meta["splits"]["test"] == ["pat5_t0", "pat5_t1"]
    for n in range(3, 60):
        assert split_counts(n, None) == split_counts(n)
        counts = split_counts(n, [8, 1, 1])
        assert sum(counts) == n and min(counts) >= 1
    assert split_counts(20, [8, 1, 1]) == (16, 2, 2)
    with pytest.raises(ValueError, match="pat0"):
        FolderSource(splits={"train": ["pat0"], "val": ["pat0"], "test": []})


# -- named layouts ---------------------------------------------------------------------------------


def test_la2018_layout(tmp_path):
    root = tmp_path / "Training Set"
    for i in range(3):
        image, label = blob_case((32, 32, 6), seed=i)
        (root / f"CASE{i:02d}").mkdir(parents=True)
        write_nrrd(root / f"CASE{i:02d}" / "lgemri.nrrd", (image * 100).astype(np.uint8))
        write_nrrd(root / f"CASE{i:02d}" / "laendo.nrrd", label * 255)
    out = data_source("la2018", size=[32, 32], progress=False).prepare(root)
    meta = json.loads((out / "meta.json").read_text())
    assert sorted(sum(meta["splits"].values(), [])) == ["CASE00", "CASE01", "CASE02"]
    assert meta["label_names"] == {"1": "left_atrium"}
    with case_file(out, meta, "CASE01") as f:
        np.testing.assert_array_equal(f["label"][()], np.moveaxis(blob_case((32, 32, 6), seed=1)[1], -1, 0))


def test_acdc_layout_structure_and_patient_grouping(tmp_path):
    root = tmp_path / "training"
    for p in range(1, 4):
        folder = root / f"patient{p:03d}"
        folder.mkdir(parents=True)
        write_nifti(folder / f"patient{p:03d}_4d.nii.gz", np.zeros((8, 8, 2, 3), np.float32))  # not used
        for frame in (1, 12):
            image, _ = blob_case((24, 20, 4), seed=p + frame)
            gt = np.zeros((24, 20, 4), np.uint8)
            gt[4:10, 4:10], gt[12:18, 4:10], gt[12:18, 12:18] = 1, 2, 3
            write_nifti(folder / f"patient{p:03d}_frame{frame:02d}.nii.gz", image)
            write_nifti(folder / f"patient{p:03d}_frame{frame:02d}_gt.nii.gz", gt)
    out = data_source("acdc", size=[24, 24], progress=False).prepare(root)
    meta = json.loads((out / "meta.json").read_text())
    assert len(sum(meta["splits"].values(), [])) == 6 and meta["label_names"] == {"1": "lv_cavity"}
    assert meta["patients"]["patient002_frame12"] == "patient002"
    for cases in meta["splits"].values():
        assert len({meta["patients"][c] for c in cases}) * 2 == len(cases)
    with case_file(out, meta, "patient001_frame01") as f:
        label = f["label"][()]
    assert label.shape == (4, 24, 24) and label.sum() == 4 * 36
    assert label[:, 12:18, 14:20].all()  # LV (3) only, centre-padded 20 -> 24 columns by 2


def test_fastmri_singlecoil_kspace_and_reconstruction_esc(tmp_path):
    root = tmp_path / "singlecoil_val"
    root.mkdir()
    rng = np.random.default_rng(0)
    images = []
    for i in range(3):
        image = (rng.standard_normal((3, 24, 16)) + 1j * rng.standard_normal((3, 24, 16))).astype(np.complex64)
        kspace = fft2c(torch.from_numpy(image)).numpy()  # (slices, readout, phase encode), centred
        write_h5(root / f"file{i}.h5", kspace=kspace, reconstruction_esc=np.abs(image[:, 4:20, :]))
        images.append(image)
    out = data_source("fastmri_singlecoil", size=[16, 16], progress=False).prepare(root)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["has_labels"] is False and meta["label_names"] == {} and meta["size"] == [16, 16]
    with case_file(out, meta, "file1") as f:
        stored, label = f["image"][()], f["label"][()]
    expected = images[1].transpose(0, 2, 1)[:, :, 4:20]  # phase encode on H, readout centre-cropped
    expected = expected / np.abs(expected).max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(stored, expected, atol=1e-5)
    assert not label.any()
    esc = data_source(
        "fastmri_singlecoil", key=["reconstruction_esc"], domain="image", size=[16, 16], progress=False
    ).prepare(root)
    with case_file(esc, meta, "file1") as f:
        np.testing.assert_allclose(f["image"][()], np.abs(expected), atol=1e-5)


# -- bad inputs ------------------------------------------------------------------------------------


def _corrupt(root: Path) -> Path:
    return truncate(root / "case1.nii.gz")


def _label_shape(root: Path) -> Path:
    return write_nifti(root / "case1_label.nii.gz", np.zeros((32, 30, 6), np.uint8))


def _nan(root: Path) -> Path:
    image, _ = blob_case(seed=1)
    image[3, 4, 2] = np.nan
    return write_nifti(root / "case1.nii.gz", image)


def _missing_label(root: Path) -> Path:
    path = root / "case1.nii.gz"
    (root / "case1_label.nii.gz").unlink()
    return path


def _orphan_label(root: Path) -> Path:
    return write_nifti(root / "case9_label.nii.gz", blob_case(seed=9)[1])


BAD = {
    "truncated": (_corrupt, {}, "cannot read"),
    "label shape": (_label_shape, {}, "label shape"),
    "nan": (_nan, {}, "NaN/Inf"),
    "missing label": (_missing_label, {}, "no label map"),
    "orphan label": (_orphan_label, {}, "without an image"),
    "unlisted case": (
        lambda r: r / "case1.nii.gz",
        {"splits": {"train": ["case0", "case4"], "val": ["case2"], "test": ["case3"]}},
        "missing from the split lists",
    ),
    "label value": (
        lambda r: write_nifti(r / "case1_label.nii.gz", blob_case(seed=1)[1] * 2),
        {"structure": 1},
        "do not occur",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_error_names_the_file_or_is_skipped_and_counted(tmp_path, name):
    make_bad, options, message = BAD[name]
    root = nifti_folder(tmp_path / "raw", n=5)
    bad = make_bad(root)
    with pytest.raises(BadInputError, match=message) as info:
        prepare(root, **options)
    assert info.value.path == bad and str(bad) in str(info.value)
    out, meta = prepare(root, skip_bad=True, **options)
    skipped = meta["summary"]["skipped"]
    assert [s["path"] for s in skipped] == [str(bad)] and message in skipped[0]["reason"]
    kept = sorted(sum(meta["splits"].values(), []))
    assert kept == [f"case{i}" for i in range(5) if i != 1 or name == "orphan label"]


def test_listed_case_without_scan_empty_folder_and_absent_structure(tmp_path):
    root = nifti_folder(tmp_path / "raw", n=3)
    lists = {"train": ["case0", "ghost"], "val": ["case1"], "test": ["case2"]}
    with pytest.raises(BadInputError, match="'ghost' of split list 'train' has no scan") as info:
        prepare(root, splits=lists)
    assert info.value.path == root
    _, meta = prepare(root, splits=lists, skip_bad=True)
    assert len(meta["summary"]["skipped"]) == 1 and meta["splits"]["train"] == ["case0"]
    with pytest.raises(BadInputError, match=r"value\(s\) \[7\].*values present: \[0, 1\]"):
        prepare(root, structure=[1, 7])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no scans here")
    with pytest.raises(BadInputError, match="no scans found") as info:
        prepare(empty, skip_bad=True)
    assert info.value.path == empty
    with pytest.raises(BadInputError, match="no such folder"):
        prepare(tmp_path / "nowhere")


# -- re-use ----------------------------------------------------------------------------------------


def test_prepared_once_reused_and_redone_when_inputs_or_options_change(tmp_path):
    root = nifti_folder(tmp_path / "raw", n=3)
    out, _ = prepare(root)
    stamp = (out / "meta.json").stat().st_mtime_ns
    assert prepare(root)[0] == out and (out / "meta.json").stat().st_mtime_ns == stamp
    other, _ = prepare(root, normalise="percentile")
    assert other != out and other.parent == out.parent
    image, _ = blob_case(seed=7)
    write_nifti(root / "case0.nii.gz", image)
    os.utime(root / "case0.nii.gz", ns=(stamp + 10**9, stamp + 10**9))
    assert prepare(root)[0] == out and (out / "meta.json").stat().st_mtime_ns != stamp
    # an explicit `out`, and a prepared layout as root, are used as they are
    target = tmp_path / "prepared"
    assert prepare(root, out=str(target))[0] == target
    assert FolderSource(progress=False).prepare(target) == target
    with pytest.raises(FileExistsError, match="other options"):
        prepare(root, out=str(target), seed=5)
    with pytest.raises(FileExistsError, match="prepared from"):
        prepare(nifti_folder(tmp_path / "raw2", n=3), out=str(target))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a csmri dataset"):
        prepare(root, out=str(tmp_path / "busy"))


# -- the DataModule, end to end --------------------------------------------------------------------


def test_datamodule_on_a_raw_nifti_folder_and_a_corrupt_file(tmp_path):
    root = nifti_folder(tmp_path / "raw", n=4, shape=(32, 32, 6))
    dm = MRIDataModule(str(root), source=FolderSource(progress=False), acceleration=4, batch_size=3)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.layout_dir == root / ".csmri_prepared" / FolderSource().options_hash()
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["target"].shape == batch["zero_filled"].shape == (3, 32, 32)
    assert batch["label"].dtype == torch.int64 and batch["mask"].shape == (3, 32, 32)
    assert all(key.split("/")[0] in dm.dataset("train").meta["splits"]["train"] for key in batch["key"])
    torch.testing.assert_close(batch["target"].abs().amax(dim=(1, 2)), torch.ones(3))

    truncate(root / "case2.nii.gz")
    dm = MRIDataModule(str(root), source=FolderSource(progress=False), acceleration=4)
    with pytest.raises(BadInputError, match=r"case2\.nii\.gz"):
        dm.prepare_data()


def test_nan_voxels_in_raw_scans_name_the_file(tmp_path):
    from csmri.errors import DataError

    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        volume = np.random.default_rng(i).random((16, 16, 2)).astype(np.float32)
        if i == 1:
            volume[3, 3, 0] = np.nan
        np.save(raw / f"case{i}.npy", volume)
    with pytest.raises(DataError, match="case1"):
        try:
            FolderSource(labels="none", progress=False).prepare(raw)
        except Exception as err:  # BadInputError is a user error csmri recognises
            from csmri.errors import user_error

            raise (user_error(err) or err) from err
    assert not (raw / ".csmri_prepared").exists() or not any((raw / ".csmri_prepared").rglob("meta.json"))
