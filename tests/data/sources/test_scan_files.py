"""Format readers: round trips through every supported format, axis conventions and unreadable files.

The ``write_*`` helpers at the top are shared with the other bring-your-own-data tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from csmri.data.scan_files import is_scan_entry, read_volume, split_extension
from csmri.errors import BadInputError


def volume(shape: tuple[int, ...] = (16, 12, 5), seed: int = 0) -> np.ndarray:
    """A positive float32 test volume whose voxels are all distinct (so any reordering shows)."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(int(np.prod(shape))).reshape(shape) + 1).astype(np.float32)


def blob_case(shape: tuple[int, int, int] = (32, 32, 6), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image, label): a noisy background with a bright box where the label is 1 (slices 1..S-2)."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.05, 0.3, shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    r, c = 8 + seed % 5, 10 + seed % 3
    label[r : r + 10, c : c + 8, 1:-1] = 1
    image[label > 0] += 1.0
    return image, label


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def write_nrrd(path: Path, data: np.ndarray) -> Path:
    import nrrd

    nrrd.write(str(path), data)
    return path


def write_h5(path: Path, **arrays: np.ndarray) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        for name, data in arrays.items():
            f.create_dataset(name, data=data)
    return path


def write_png(path: Path, data: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(data).save(path)
    return path


def write_tiff_stack(path: Path, data: np.ndarray) -> Path:
    """A multi-page TIFF of the (H, W, S) float32 ``data``."""
    from PIL import Image

    pages = [Image.fromarray(np.ascontiguousarray(data[..., s])) for s in range(data.shape[-1])]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return path


def write_dicom_series(folder: Path, data: np.ndarray, slope: float = 1.0, order: list[int] | None = None) -> Path:
    """One uint16 DICOM file per slice of ``data`` (rows, cols, slices); files named in ``order``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    n = data.shape[-1]
    order = list(range(n)) if order is None else order
    for file_index, s in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "MR", series, generate_uid()
        ds.Rows, ds.Columns = data.shape[0], data.shape[1]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * s]
        ds.InstanceNumber = n - s  # deliberately disagrees with the position order
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0
        ds.PixelData = np.ascontiguousarray(data[..., s].astype(np.uint16)).tobytes()
        ds.save_as(folder / f"IM{file_index:04d}.dcm", enforce_file_format=True)
    return folder


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


def test_split_extension_and_scan_entries(tmp_path):
    assert split_extension("case.nii.gz") == ("case", ".nii.gz")
    assert split_extension("Case_label.NRRD") == ("Case_label", ".nrrd")
    assert split_extension("notes.txt") == ("notes.txt", "")
    (tmp_path / "a.npy").write_bytes(b"")
    (tmp_path / "b.txt").write_text("x")
    (tmp_path / "series").mkdir()
    (tmp_path / ".hidden").mkdir()
    assert [p.name for p in sorted(tmp_path.iterdir()) if is_scan_entry(p)] == ["a.npy", "series"]


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii"])
def test_nifti_keeps_voxel_order_dtype_and_affine(tmp_path, name):
    data = volume()
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    result = read_volume(write_nifti(tmp_path / name, data, affine))
    np.testing.assert_array_equal(result.data, data)
    np.testing.assert_allclose(result.affine, affine)
    complex_data = (data + 1j * data[::-1]).astype(np.complex64)
    result = read_volume(write_nifti(tmp_path / ("c" + name), complex_data))
    assert result.data.dtype == np.complex64
    np.testing.assert_array_equal(result.data, complex_data)


def test_nrrd_reads_x_y_z_order(tmp_path):
    data = volume()
    result = read_volume(write_nrrd(tmp_path / "v.nrrd", data))
    np.testing.assert_array_equal(result.data, data)
    assert result.affine is None


def test_hdf5_keys_and_single_dataset_fallback(tmp_path):
    data = volume()
    path = write_h5(tmp_path / "v.h5", volume=data, other=data[:1])
    np.testing.assert_array_equal(read_volume(path, ["volume"]).data, data)
    with pytest.raises(BadInputError, match=r"v\.h5.*cannot choose"):
        read_volume(path, ["image"])
    single = write_h5(tmp_path / "s.h5", anything=data)
    np.testing.assert_array_equal(read_volume(single, ["image"]).data, data)


def test_hdf5_fastmri_test_file_is_refused(tmp_path):
    kspace = np.ones((2, 8, 8), np.complex64)
    path = write_h5(tmp_path / "file_test.h5", kspace=kspace, mask=np.ones(8, bool))
    with pytest.raises(BadInputError, match=r"file_test\.h5.*undersampled"):
        read_volume(path, ["kspace"])


def test_numpy_formats(tmp_path):
    data = volume()
    np.save(tmp_path / "v.npy", data)
    np.testing.assert_array_equal(read_volume(tmp_path / "v.npy").data, data)
    np.savez(tmp_path / "v.npz", image=data, extra=data[0])
    np.testing.assert_array_equal(read_volume(tmp_path / "v.npz", ["image"]).data, data)
    np.savez(tmp_path / "one.npz", data)
    np.testing.assert_array_equal(read_volume(tmp_path / "one.npz", ["image"]).data, data)


def test_dicom_series_sorted_by_position_with_rescale(tmp_path):
    data = volume((10, 12, 4))
    folder = write_dicom_series(tmp_path / "case", data, slope=2.0, order=[2, 0, 3, 1])
    result = read_volume(folder)
    assert result.data.shape == (10, 12, 4)  # (rows, columns, slices)
    np.testing.assert_allclose(result.data, 2.0 * data)
    single = read_volume(folder / "IM0000.dcm")
    np.testing.assert_allclose(single.data, 2.0 * data[..., 2])


def test_dicom_mixed_series_and_broken_file(tmp_path):
    data = volume((8, 8, 2))
    folder = write_dicom_series(tmp_path / "mixed", data)
    write_dicom_series(tmp_path / "other", data)
    (tmp_path / "other" / "IM0000.dcm").rename(folder / "IM0099.dcm")
    with pytest.raises(BadInputError, match="mixed.*2 DICOM series"):
        read_volume(folder)
    broken = write_dicom_series(tmp_path / "broken", data)
    (broken / "IM0001.dcm").write_bytes(b"not a dicom file")
    with pytest.raises(BadInputError, match=r"IM0001\.dcm"):
        read_volume(broken)


def test_png_tiff_and_stacks(tmp_path):
    eight = (volume((6, 10, 1))[..., 0] % 250).astype(np.uint8)
    np.testing.assert_array_equal(read_volume(write_png(tmp_path / "a.png", eight)).data, eight)
    sixteen = (volume((6, 10, 1))[..., 0] * 50).astype(np.uint16)
    np.testing.assert_array_equal(read_volume(write_png(tmp_path / "b.png", sixteen)).data, sixteen)
    stack = volume((6, 10, 3))
    result = read_volume(write_tiff_stack(tmp_path / "s.tif", stack))
    np.testing.assert_array_equal(result.data, stack)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for s in (10, 2, 1):  # natural order: 1, 2, 10
        write_png(folder / f"slice{s}.png", np.full((4, 6), s, np.uint8))
    assert read_volume(folder).data[0, 0].tolist() == [1, 2, 10]


TRUNCATABLE = {
    "v.nii.gz": lambda p: write_nifti(p, volume((32, 32, 8))),
    "v.nii": lambda p: write_nifti(p, volume((32, 32, 8))),
    "v.nrrd": lambda p: write_nrrd(p, volume((32, 32, 8))),
    "v.h5": lambda p: write_h5(p, image=volume((32, 32, 8))),
    "v.npy": lambda p: np.save(p, volume((32, 32, 8))),
    "v.npz": lambda p: np.savez(p, image=volume((32, 32, 8))),
    "v.png": lambda p: write_png(p, (volume((32, 32, 1))[..., 0] % 255).astype(np.uint8)),
}


@pytest.mark.parametrize("name", sorted(TRUNCATABLE))
def test_truncated_file_error_names_the_file(tmp_path, name):
    path = tmp_path / name
    TRUNCATABLE[name](path)
    truncate(path)
    with pytest.raises(BadInputError) as info:
        read_volume(path)
    assert info.value.path == path and str(path) in str(info.value)


def test_unknown_missing_and_empty_inputs(tmp_path):
    (tmp_path / "x.xyz").write_text("?")
    with pytest.raises(BadInputError, match=r"x\.xyz.*unknown file type"):
        read_volume(tmp_path / "x.xyz")
    with pytest.raises(BadInputError, match="no such file"):
        read_volume(tmp_path / "gone.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="empty folder"):
        read_volume(tmp_path / "empty")
    np.save(tmp_path / "e.npy", np.zeros((0, 4)))
    with pytest.raises(BadInputError, match="empty array"):
        read_volume(tmp_path / "e.npy")


def test_missing_optional_package_says_how_to_install(tmp_path, monkeypatch):
    path = write_nifti(tmp_path / "v.nii.gz", volume())
    monkeypatch.setitem(sys.modules, "nibabel", None)  # makes `import nibabel` fail
    with pytest.raises(ImportError, match=r"nibabel.*csmri\[io\]"):
        read_volume(path)
    png = write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(ImportError, match=r"'pillow'.*csmri\[io\]"):
        read_volume(png)


def test_read_kspace_and_check_finite(tmp_path):
    import h5py

    from csmri.data.scan_files import check_finite, read_kspace

    kspace = np.ones((2, 8, 8), np.complex64)
    with h5py.File(tmp_path / "k.h5", "w") as f:
        f["kspace"], f["mask"], f["ismrmrd_header"] = kspace, np.ones(8, np.float32), "xml"
    with h5py.File(tmp_path / "image.h5", "w") as f:
        f["image"] = np.ones((2, 8, 8), np.float32)
    np.savez(tmp_path / "k.npz", kspace=kspace)
    arrays = read_kspace(tmp_path / "k.h5")
    assert sorted(arrays) == ["kspace", "mask"] and arrays["kspace"].shape == (2, 8, 8)
    assert sorted(read_kspace(tmp_path / "k.npz")) == ["kspace"]
    assert read_kspace(tmp_path / "image.h5") is None and read_kspace(tmp_path / "x.npy") is None
    with pytest.raises(BadInputError, match=r"k\.h5: cannot read HDF5 file"):
        read_kspace(truncate(tmp_path / "k.h5", 0.3))

    bad = np.ones((4, 4), np.float32)
    bad[1, 2] = np.inf
    with pytest.raises(BadInputError, match="scan.npy: the image holds 1 NaN/Inf values"):
        check_finite(bad, "scan.npy", "the image")
    with pytest.raises(BadInputError, match="not numbers"):
        check_finite(np.array(["a"]), "scan.npy")
    check_finite(np.arange(4), "scan.npy")  # integers are finite
