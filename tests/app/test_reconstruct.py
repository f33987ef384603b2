"""`csmri reconstruct` and `csmri.load`: NIfTI/HDF5/NPZ/PNG in and out, data consistency, seeding, every stage,
and the one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import csmri
from csmri.app.cli import main as csmri_main
from csmri.app.reconstruct import main
from csmri.physics import fft2c, ifft2c
from tests.helpers import run_csmri


def _volume(shape=(64, 64, 3), seed=0, complex_=False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    blob = np.exp(-((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2) / (2 * (shape[0] / 5) ** 2))
    data = (blob[..., None] * 200 + rng.random(shape) * 20).astype(np.float32)
    if complex_:
        data = data * np.exp(1j * rng.random(shape) * 0.5).astype(np.complex64)
    return data


def _write_nifti(path: Path, data: np.ndarray) -> np.ndarray:
    import nibabel as nib

    affine = np.array([[0, 1.25, 0, -10], [-1.25, 0, 0, 20], [0, 0, 3, 5], [0, 0, 0, 1]], dtype=float)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return affine


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_nifti_volume_shape_affine_and_seed(stage1_ckpt, tmp_path):
    import nibabel as nib

    volume = _volume()
    affine = _write_nifti(tmp_path / "scan.nii.gz", volume)
    outs = {}
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        out = tmp_path / f"{name}.nii.gz"
        code = main(
            ["--ckpt", str(stage1_ckpt), "--input", str(tmp_path / "scan.nii.gz"), "--out", str(out)]
            + ["--seed", str(seed)]
        )
        assert code == 0
        image = nib.load(str(out))
        assert image.shape == volume.shape
        np.testing.assert_allclose(image.affine, affine)
        outs[name] = (np.asarray(image.dataobj), np.load(tmp_path / f"{name}_mask.npy"))
    mask = outs["a"][1]
    assert mask.shape == (3, 64, 64) and mask.dtype == np.float32
    assert mask[0, :, 0].sum() == 64 // 8  # the checkpoint's acceleration (8)
    np.testing.assert_array_equal(outs["a"][0], outs["b"][0])  # --seed reproduces output and mask
    np.testing.assert_array_equal(outs["a"][1], outs["b"][1])
    assert not np.array_equal(outs["a"][1], outs["c"][1])
    # intensities are scaled back to the input's units
    assert 0.5 < outs["a"][0].max() / volume.max() < 2


def test_image_input_is_data_consistent(stage1_ckpt, tmp_path):
    volume = np.moveaxis(_volume(complex_=True), -1, 0)  # NPZ: (S, H, W)
    np.savez(tmp_path / "scan.npz", image=volume)
    out = tmp_path / "rec.npz"
    args = ["--ckpt", str(stage1_ckpt), "--input", str(tmp_path / "scan.npz"), "--out", str(out)]
    assert main([*args, "--complex", "--acceleration", "4"]) == 0
    recon = np.load(out)["reconstruction"]
    mask = np.load(tmp_path / "rec_mask.npy")
    assert recon.shape == volume.shape and np.iscomplexobj(recon)
    assert mask[0, :, 0].sum() == 64 // 4  # --acceleration overrides the checkpoint's
    measured = fft2c(torch.from_numpy(volume)).numpy() * mask
    assert _relative(fft2c(torch.from_numpy(recon)).numpy() * mask, measured) < 1e-4


def test_hdf5_kspace_without_remasking(stage1_ckpt, tmp_path):
    image = torch.from_numpy(np.moveaxis(_volume(complex_=True), -1, 0))
    mask = np.zeros((64, 64), dtype=np.float32)
    mask[::3] = 1
    mask[28:36] = 1
    kspace = (fft2c(image) * torch.from_numpy(mask)).numpy()
    with h5py.File(tmp_path / "k.h5", "w") as f:
        f["kspace"], f["mask"] = kspace, mask
    out = tmp_path / "rec.h5"
    assert main(["--ckpt", str(stage1_ckpt), "--input", str(tmp_path / "k.h5"), "--out", str(out), "--complex"]) == 0
    with h5py.File(out) as f:
        recon = f["reconstruction"][()]
    assert recon.shape == kspace.shape
    np.testing.assert_array_equal(np.load(tmp_path / "rec_mask.npy"), np.broadcast_to(mask, kspace.shape))
    assert _relative(fft2c(torch.from_numpy(recon)).numpy() * mask, kspace) < 1e-4


def test_fastmri_convention_and_column_mask(stage1_ckpt, tmp_path):
    # fastMRI: kspace (S, readout, phase encode), centred with fftshift(ifft2(ifftshift(k), norm="ortho")), 1-D mask
    # over the columns; csmri.physics.ifft2c is the same transform, so only the axes differ
    rng = np.random.default_rng(1)
    kspace = (rng.standard_normal((2, 64, 48)) + 1j * rng.standard_normal((2, 64, 48))).astype(np.complex64)
    fastmri_image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(ifft2c(torch.from_numpy(kspace)).numpy(), fastmri_image, atol=1e-5)
    mask = np.zeros(48, dtype=np.float32)
    mask[::4] = 1
    mask[20:28] = 1
    kspace = kspace * mask
    with h5py.File(tmp_path / "file1000001.h5", "w") as f:
        f["kspace"], f["mask"] = kspace, mask
        f.attrs["acquisition"] = "CORPD_FBK"
    out = tmp_path / "rec.npz"
    args = ["--ckpt", str(stage1_ckpt), "--input", str(tmp_path / "file1000001.h5"), "--out", str(out)]
    assert main([*args, "--complex"]) == 0
    recon = np.load(out)["reconstruction"]
    assert recon.shape == (2, 64, 48)  # the input's orientation
    assert _relative(fft2c(torch.from_numpy(recon)).numpy() * mask, kspace) < 1e-4
    assert np.load(tmp_path / "rec_mask.npy").shape == (2, 64, 48)


def test_other_stages_and_png(stage2_ckpt, dagan_ckpt, tmp_path):
    np.save(tmp_path / "slice.npy", _volume()[..., 0])
    for name, ckpt in [("stage2", stage2_ckpt), ("dagan", dagan_ckpt)]:
        out = tmp_path / f"{name}.png"
        assert main(["--ckpt", str(ckpt), "--input", str(tmp_path / "slice.npy"), "--out", str(out)]) == 0
        from PIL import Image

        assert Image.open(out).size == (64, 64)
        assert np.load(tmp_path / f"{name}_mask.npy").shape == (64, 64)
    np.save(tmp_path / "vol.npy", np.moveaxis(_volume(shape=(64, 64, 5)), -1, 0))
    assert (
        main(["--ckpt", str(stage2_ckpt), "--input", str(tmp_path / "vol.npy"), "--out", str(tmp_path / "g.png")]) == 0
    )
    from PIL import Image

    assert Image.open(tmp_path / "g.png").size == (3 * 64, 2 * 64)  # 5 slices on a 3 x 2 grid


def _error(capsys, *args: str) -> str:
    """stderr of a failing ``csmri reconstruct``: one error line and a hint line, status 2."""
    assert csmri_main(["reconstruct", *args]) == 2
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("csmri reconstruct: error: "), err
    assert lines[1].startswith("  hint: "), err
    return err


def test_bad_inputs_give_one_line_errors(stage1_ckpt, dagan_ckpt, tmp_path, capsys):
    ck = ["--ckpt", str(stage1_ckpt)]
    out = tmp_path / "out" / "rec.npz"
    (tmp_path / "scan.txt").write_text("hello")
    assert "scan.txt: unsupported input format" in _error(
        capsys, *ck, "--input", str(tmp_path / "scan.txt"), "--out", str(out)
    )

    np.savez(tmp_path / "k.npz", kspace=np.ones((2, 64, 64), np.complex64))
    err = _error(capsys, *ck, "--input", str(tmp_path / "k.npz"), "--out", str(out))
    assert "k.npz: holds k-space but no 'mask'" in err and "--mask" in err

    np.savez(tmp_path / "km.npz", kspace=np.ones((2, 64, 64), np.complex64), mask=np.ones((32, 64)))
    assert "does not fit" in _error(capsys, *ck, "--input", str(tmp_path / "km.npz"), "--out", str(out))
    np.save(tmp_path / "img.npy", _volume()[..., 0])
    np.save(tmp_path / "m.npy", np.ones((3, 64, 64)))
    err = _error(
        capsys, *ck, "--input", str(tmp_path / "img.npy"), "--out", str(out), "--mask", str(tmp_path / "m.npy")
    )
    assert "m.npy: mask has 3 slices" in err

    bad = _volume()[..., 0]
    bad[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert "nan.npy: the image holds 1 NaN/Inf" in _error(
        capsys, *ck, "--input", str(tmp_path / "nan.npy"), "--out", str(out)
    )

    seg = tmp_path / "segnet.ckpt"
    torch.save({"csmri_module": "segmentation", "state_dict": {}, "hyper_parameters": {}}, seg)
    err = _error(capsys, "--ckpt", str(seg), "--input", str(tmp_path / "img.npy"), "--out", str(out))
    assert "segnet.ckpt is a segmentation checkpoint" in err

    np.save(tmp_path / "small.npy", _volume(shape=(32, 32, 1))[..., 0])
    err = _error(capsys, "--ckpt", str(dagan_ckpt), "--input", str(tmp_path / "small.npy"), "--out", str(out))
    assert "small.npy: slices of 32x32 do not fit" in err and "64x64" in err

    assert "unsupported output format" in _error(capsys, *ck, "--input", str(tmp_path / "img.npy"), "--out", "x.txt")
    assert not out.parent.exists() or not any(out.parent.iterdir())  # nothing half-written


def test_nothing_half_written(stage1_ckpt, tmp_path, monkeypatch):
    np.save(tmp_path / "img.npy", _volume()[..., 0])

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        main(["--ckpt", str(stage1_ckpt), "--input", str(tmp_path / "img.npy"), "--out", str(tmp_path / "r.npz")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.npy"]


@pytest.mark.slow
def test_cli_subprocess(stage1_ckpt, tmp_path):
    np.save(tmp_path / "img.npy", _volume()[..., 0])
    ok = run_csmri(
        "reconstruct", "--ckpt", str(stage1_ckpt), "--input", str(tmp_path / "img.npy"), "--out", str(tmp_path / "r.h5")
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "r.h5").is_file() and (tmp_path / "r_mask.npy").is_file()
    bad = run_csmri(
        "reconstruct",
        "--ckpt",
        str(stage1_ckpt),
        "--input",
        str(tmp_path / "nope.nii.gz"),
        "--out",
        str(tmp_path / "s.h5"),
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 1 and "Traceback" not in bad.stderr
    assert "nope.nii.gz: no such file" in bad.stderr


def test_python_api_any_batch_shape(stage1_ckpt):
    model = csmri.load(stage1_ckpt, device="cpu")
    assert model.kind == "reconstruction" and model.acquisition["acceleration"] == 8
    image = torch.from_numpy(np.moveaxis(_volume(complex_=True), -1, 0)).reshape(3, 1, 64, 64) * 0.01
    mask = torch.zeros(64, 64)
    mask[::4] = 1
    kspace = fft2c(image) * mask
    recon = model.reconstruct(kspace, mask)
    assert recon.shape == (3, 1, 64, 64) and recon.dtype == torch.complex64
    assert _relative((fft2c(recon) * mask).numpy(), kspace.numpy()) < 1e-4
    # the same as slice by slice, whatever the batching
    one = model.reconstruct(kspace[1, 0], mask)
    torch.testing.assert_close(one, recon[1, 0], atol=1e-5, rtol=1e-4)


def test_trainer_predict(stage1_ckpt, phantom_root):
    import lightning as L

    from csmri.data import MRIDataModule
    from csmri.eval.methods import load_module

    module = load_module(stage1_ckpt)
    dm = MRIDataModule(str(phantom_root), acceleration=8, eval_batch_size=4)
    out = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).predict(module, datamodule=dm)
    recon = torch.cat([o["reconstruction"] for o in out])
    keys = [k for o in out for k in o["key"]]
    assert recon.dtype == torch.complex64 and recon.shape == (len(dm.dataset("test")), 64, 64)
    batch = dm.sampler.simulate({"target": dm.dataset("test")[0]["target"][None], "key": [keys[0]]}, train=False)
    with torch.inference_mode():
        torch.testing.assert_close(module.reconstruct(batch)[0], recon[0], atol=1e-5, rtol=1e-4)
