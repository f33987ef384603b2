"""`csmri reconstruct` over a folder of scans (bad and odd-sized ones reported and skipped), --pad, and
`csmri.load` of a run folder and of NumPy arrays."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import csmri
from csmri.app.reconstruct import main
from csmri.errors import InferenceError
from csmri.physics import fft2c
from tests.data.sources.test_scan_files import write_dicom_series
from tests.helpers import run_csmri


def _image(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    blob = np.exp(-((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (2 * (h / 5) ** 2))
    return (blob * 200 + np.random.default_rng(seed).random((h, w)) * 20).astype(np.float32)


def _fastmri_file(path: Path) -> None:
    """A fastMRI single-coil-style file: k-space (S, readout, phase encode) and a 1-D mask over its columns."""
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(np.stack([_image(64, 48, s) for s in range(2)]))))
    mask = np.zeros(48, dtype=np.float32)
    mask[::4], mask[20:28] = 1, 1
    with h5py.File(path, "w") as f:
        f["kspace"], f["mask"] = (kspace * mask).astype(np.complex64), mask


@pytest.fixture()
def scans(tmp_path: Path) -> Path:
    """good.h5 (fastMRI k-space), good.npy (an image), series/ (a DICOM series), broken.h5 (not HDF5),
    odd.npy (71 phase-encode lines), notes.txt (not a scan)."""
    folder = tmp_path / "scans"
    folder.mkdir()
    _fastmri_file(folder / "good.h5")
    np.save(folder / "good.npy", _image())
    write_dicom_series(folder / "series", np.stack([_image(seed=s) for s in range(2)], axis=-1))
    (folder / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n but truncated")
    np.save(folder / "odd.npy", _image(71, 64))
    (folder / "notes.txt").write_text("not a scan")
    return folder


def test_folder_reports_bad_scans_and_goes_on(stage1_ckpt, scans, tmp_path):
    out = tmp_path / "recon"
    run = run_csmri("reconstruct", "--ckpt", str(stage1_ckpt), "--input", str(scans), "--out", str(out))
    assert run.returncode == 1, run.stderr  # some scans failed; the others are written
    assert run.stderr.strip() == "csmri reconstruct: 2 scans failed (listed above)" and "Traceback" not in run.stderr
    lines = run.stdout.strip().splitlines()
    status = {line.split()[1].rstrip(":"): line.split()[0] for line in lines[:-1]}
    assert status == {
        "broken.h5": "failed",
        "good.h5": "ok",
        "good.npy": "ok",
        "odd.npy": "failed",
        "series": "ok",
        "notes.txt": "skipped",
    }
    odd = next(line for line in lines if line.startswith("failed  odd.npy"))
    assert "odd number of phase-encode lines (71)" in odd and "crop or pad the slices to an even size" in odd
    assert "--acceleration" not in odd
    assert "broken.h5: cannot read HDF5 file" in next(line for line in lines if "broken.h5" in line)
    assert lines[-1] == f"reconstructed 3 of 5 scans into {out}; 2 failed"

    # outputs: the input's format where it is an output format, else .h5; a taken name gets the input's extension
    assert sorted(p.name for p in out.iterdir()) == [
        "good.h5",
        "good_mask.npy",
        "good_npy.h5",
        "good_npy_mask.npy",
        "series.h5",
        "series_mask.npy",
    ]
    with h5py.File(out / "good.h5") as f:
        assert f["reconstruction"].shape == (2, 64, 48)  # fastMRI's orientation kept
    with h5py.File(out / "good_npy.h5") as f:
        image = f["reconstruction"][()]
    # the same as the Python API gives for that image and the mask written beside it, in the image's units
    mask = np.load(out / "good_npy_mask.npy")
    peak = _image().max()
    kspace = fft2c(torch.from_numpy(_image() / peak).to(torch.complex64)).numpy() * mask
    expected = np.abs(csmri.load(stage1_ckpt, device="cpu").reconstruct(kspace, mask, normalise=False)) * peak
    assert image.shape == (64, 64) and mask.shape == (64, 64) and 0 < mask.mean() < 0.5
    np.testing.assert_allclose(image, expected, rtol=1e-4, atol=1e-3 * peak)
    with h5py.File(out / "series.h5") as f:
        assert f["reconstruction"].shape == (64, 64, 2)  # slices last, as the series was read


def test_all_good_exits_0_and_out_must_be_a_folder(stage1_ckpt, scans, tmp_path, capsys):
    for name in ("broken.h5", "odd.npy", "good.h5", "notes.txt"):
        (scans / name).unlink()
    shutil.rmtree(scans / "series")
    (scans / "second.npy").write_bytes((scans / "good.npy").read_bytes())
    assert (
        main(["--ckpt", str(stage1_ckpt), "--input", str(scans), "--out", str(tmp_path / "o"), "--format", "npz"]) == 0
    )
    assert capsys.readouterr().out.strip().endswith(f"reconstructed 2 of 2 scans into {tmp_path / 'o'}")
    assert sorted(p.name for p in (tmp_path / "o").glob("*.npz")) == ["good.npz", "second.npz"]
    with pytest.raises(InferenceError, match="names a file but --input"):
        main(["--ckpt", str(stage1_ckpt), "--input", str(scans), "--out", str(tmp_path / "x.h5")])
    with pytest.raises(InferenceError, match="is the input folder"):
        main(["--ckpt", str(stage1_ckpt), "--input", str(scans), "--out", str(scans)])


def test_pad_reconstructs_odd_sizes_and_crops_back(stage1_ckpt, tmp_path):
    image = _image(71, 63)
    np.save(tmp_path / "odd.npy", image)
    out = tmp_path / "odd.npz"
    args = ["--ckpt", str(stage1_ckpt), "--input", str(tmp_path / "odd.npy"), "--out", str(out)]
    with pytest.raises(InferenceError, match="odd number of phase-encode lines") as err:
        main(args)
    assert "--pad" in err.value.hint and "crop or pad" in err.value.hint
    assert main([*args, "--pad", "--complex"]) == 0
    recon = np.load(out)["reconstruction"]
    assert recon.shape == (71, 63) and recon.dtype == np.complex64
    assert np.load(tmp_path / "odd_mask.npy").shape == (72, 64)  # the mask of the padded grid
    # the padded image reconstructed with the padded mask, cropped back to the input's (centred) region
    mask = np.load(tmp_path / "odd_mask.npy")
    padded = np.pad(image / image.max(), ((0, 1), (0, 1))).astype(np.complex64)
    kspace = fft2c(torch.from_numpy(padded)).numpy() * mask
    expected = csmri.load(stage1_ckpt, device="cpu").reconstruct(kspace, mask, normalise=False)[:71, :63]
    np.testing.assert_allclose(recon, expected * image.max(), rtol=1e-4, atol=1e-3 * image.max())


def test_load_run_folder_and_numpy(stage1_ckpt, tmp_path):
    run = stage1_ckpt.parent.parent
    model = csmri.load(run, device="cpu")
    assert model.path == stage1_ckpt  # best.ckpt of the run
    only_last = tmp_path / "run"
    (only_last / "checkpoints").mkdir(parents=True)
    shutil.copy(stage1_ckpt.parent / "last.ckpt", only_last / "checkpoints" / "last.ckpt")
    assert csmri.load(only_last, device="cpu").path == only_last / "checkpoints" / "last.ckpt"
    (only_last / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(InferenceError, match="is a folder without checkpoints/best.ckpt or checkpoints/last.ckpt"):
        csmri.load(only_last, device="cpu")

    image = np.stack([_image(seed=s) for s in range(2)]).astype(np.complex64) / 200
    mask = np.zeros((64, 64), dtype=np.float32)
    mask[::4] = 1
    kspace = fft2c(torch.from_numpy(image)).numpy() * mask
    recon = model.reconstruct(kspace, mask)
    assert isinstance(recon, np.ndarray) and recon.dtype == np.complex64 and recon.shape == (2, 64, 64)
    np.testing.assert_allclose(recon, model.reconstruct(torch.from_numpy(kspace), torch.from_numpy(mask)).numpy())
    assert isinstance(model.reconstruct(torch.from_numpy(kspace), mask), torch.Tensor)  # a tensor in, a tensor out
    with pytest.raises(InferenceError, match="kspace must be a complex tensor or array"):
        model.reconstruct(np.abs(kspace), mask)
