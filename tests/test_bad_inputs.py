"""Bad-input corpus (issue 14): every raw reader and every CLI entry that reads a user's files.

Truncated and garbage files of every format :func:`csmri.data.scan_files.read_volume` reads, wrong dtypes (strings,
records, objects, complex where real or integer values are expected), NaN/Inf voxels, label maps whose shape differs
from the image, empty folders, unknown config keys and broken checkpoints, fed to ``read_volume`` itself and to
``csmri data prepare data=folder``, ``csmri reconstruct``, ``csmri export`` and ``csmri eval``.

Every CLI case must end in one line ``csmri ...: error: <message naming the file>`` (+ an optional ``  hint:`` line)
on stderr, exit status 2, no traceback, and leave nothing half-written where the output would have gone. The
commands run in-process through :func:`csmri.app.cli.main`. A format whose optional reader is not installed skips.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from csmri.app.cli import main as csmri_main
from csmri.data.scan_files import read_volume
from csmri.errors import BadInputError
from tests.data.sources.test_scan_files import (
    truncate,
    volume,
    write_dicom_series,
    write_h5,
    write_nifti,
    write_nrrd,
    write_png,
    write_tiff_stack,
)

ERROR_LINE = re.compile(r"^csmri( [a-z]+)*: error: ")


def cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``csmri <argv>`` in-process and check the shape of its failure; returns the error line."""
    try:
        status = csmri_main(list(argv))
    except SystemExit as exit_:  # the Hydra apps (csmri eval) end through SystemExit(2)
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err, err
    lines = err.rstrip("\n").splitlines()
    if lines and lines[-1].startswith("  hint: "):
        lines = lines[:-1]
    assert lines and ERROR_LINE.match(lines[-1]), err  # it ends with the error line (+ its hint)
    assert sum(bool(ERROR_LINE.match(line)) for line in err.splitlines()) == 1, err
    return lines[-1]


def tree(folder: Path) -> list[str]:
    """Everything under ``folder`` (hidden entries included), to show that nothing was left behind."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# -- the raw-file corpus ------------------------------------------------------------------------------
# name -> builder(folder) writing a bad scan entry named case9 into folder, returning (the entry to read, the path
# the error must name) and a fragment of the expected reason. Builders skip when their reader is not installed.

Bad = Callable[[Path], tuple[Path, Path]]


def _needs(module: str) -> None:
    pytest.importorskip(module)


def _file(name: str, write: Callable[[Path], object], damage: Callable[[Path], object] | None = None) -> Bad:
    def build(folder: Path) -> tuple[Path, Path]:
        path = folder / name
        write(path)
        if damage is not None:
            damage(path)
        return path, path

    return build


def _with(module: str, build: Bad) -> Bad:
    def guarded(folder: Path) -> tuple[Path, Path]:
        _needs(module)
        return build(folder)

    return guarded


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a scan\n" * 8)


IMAGE = volume((16, 16, 2))


def _dicom_file(path: Path) -> None:
    series = write_dicom_series(path.parent / f".{path.stem}_series", IMAGE)
    (series / "IM0000.dcm").rename(path)


def _dicom_without_pixels(path: Path) -> None:
    _dicom_file(path)
    import pydicom

    ds = pydicom.dcmread(str(path))
    del ds.PixelData
    ds.save_as(path)


def _broken_series(folder: Path) -> tuple[Path, Path]:
    series = write_dicom_series(folder / "case9", IMAGE)
    truncate(series / "IM0001.dcm", 0.3)
    return series, series / "IM0001.dcm"


def _text_folder(folder: Path) -> tuple[Path, Path]:
    (folder / "case9").mkdir()
    (folder / "case9" / "notes.dcm").write_text("not DICOM")
    return folder / "case9", folder / "case9" / "notes.dcm"


def _empty_folder(folder: Path) -> tuple[Path, Path]:
    (folder / "case9").mkdir()
    return folder / "case9", folder / "case9"


def _h5_strings(path: Path) -> None:
    write_h5(path, image=np.array([b"abc", b"def"]), header=np.bytes_("<xml/>"))


def _npy_strings(path: Path) -> None:
    np.save(path, np.full((16, 16), "a"))


def _npy_records(path: Path) -> None:
    np.save(path, np.zeros((16, 16), dtype=[("re", "f4"), ("im", "f4")]))


def _npy_objects(path: Path) -> None:
    np.save(path, np.array([IMAGE, "x"], dtype=object), allow_pickle=True)


CORPUS: dict[str, tuple[Bad, str]] = {
    "nifti-gz truncated": (
        _with("nibabel", _file("case9.nii.gz", lambda p: write_nifti(p, IMAGE), truncate)),
        "cannot read",
    ),
    "nifti truncated": (_with("nibabel", _file("case9.nii", lambda p: write_nifti(p, IMAGE), truncate)), "cannot read"),
    "nifti garbage": (_with("nibabel", _file("case9.nii.gz", _garbage)), "cannot read"),
    "nifti empty file": (_with("nibabel", _file("case9.nii", lambda p: p.write_bytes(b""))), "cannot read"),
    "nrrd truncated": (_with("nrrd", _file("case9.nrrd", lambda p: write_nrrd(p, IMAGE), truncate)), "cannot read"),
    "nrrd bad header": (
        _with("nrrd", _file("case9.nrrd", lambda p: p.write_text("NRRD0004\ntype: float\nsizes: 4 4\n\n"))),
        "cannot read",
    ),
    "dicom truncated": (_with("pydicom", _file("case9.dcm", _dicom_file, truncate)), "cannot read"),
    "dicom garbage": (_with("pydicom", _file("case9.dcm", _garbage)), "cannot read"),
    "dicom without pixels": (_with("pydicom", _file("case9.dcm", _dicom_without_pixels)), "cannot read"),
    "dicom series with a truncated file": (_with("pydicom", _broken_series), "cannot read DICOM"),
    "dicom folder of non-DICOM files": (_with("pydicom", _text_folder), "cannot read DICOM"),
    "empty series folder": (_empty_folder, "empty folder"),
    "png truncated": (
        _with("PIL", _file("case9.png", lambda p: write_png(p, (IMAGE[..., 0] % 255).astype(np.uint8)), truncate)),
        "cannot read",
    ),
    "png garbage": (_with("PIL", _file("case9.png", _garbage)), "cannot read"),
    "tiff truncated": (
        _with("PIL", _file("case9.tif", lambda p: write_tiff_stack(p, IMAGE), lambda p: truncate(p, 0.1))),
        "cannot read",
    ),
    "hdf5 truncated": (_file("case9.h5", lambda p: write_h5(p, image=IMAGE), truncate), "cannot read"),
    "hdf5 garbage": (_file("case9.h5", _garbage), "cannot read"),
    "hdf5 strings only": (_file("case9.h5", _h5_strings), "no numeric array"),
    "hdf5 empty array": (_file("case9.h5", lambda p: write_h5(p, image=np.zeros((0, 16)))), "empty array"),
    "npz truncated": (_file("case9.npz", lambda p: np.savez(p, image=IMAGE), truncate), "cannot read"),
    "npz no arrays": (_file("case9.npz", lambda p: np.savez(p)), "no numeric array"),
    "npz strings": (_file("case9.npz", lambda p: np.savez(p, image=np.full((16, 16), "a"))), "not numbers"),
    "npz objects": (
        _file("case9.npz", lambda p: np.savez(p, image=np.array([IMAGE, "x"], dtype=object))),
        "cannot read",
    ),
    "npy truncated": (_file("case9.npy", lambda p: np.save(p, IMAGE), truncate), "cannot read"),
    "npy garbage": (_file("case9.npy", _garbage), "cannot read"),
    "npy strings": (_file("case9.npy", _npy_strings), "not numbers"),
    "npy records": (_file("case9.npy", _npy_records), "not numbers"),
    "npy objects": (_file("case9.npy", _npy_objects), "cannot read"),
    "npy empty array": (_file("case9.npy", lambda p: np.save(p, np.zeros((0, 16), np.float32))), "empty array"),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_readers_name_the_file_in_one_line(tmp_path, name):
    build, reason = CORPUS[name]
    entry, named = build(tmp_path)
    with pytest.raises(BadInputError, match=re.escape(reason)) as info:
        read_volume(entry, ("image", "data"))
    assert info.value.path == named and str(info.value).startswith(f"{named}: ")
    assert "\n" not in str(info.value)


def test_unknown_file_type_and_missing_package(tmp_path, monkeypatch):
    from csmri.errors import MissingPackageError, user_error

    (tmp_path / "case9.xyz").write_text("?")
    with pytest.raises(BadInputError, match=r"case9\.xyz: unknown file type"):
        read_volume(tmp_path / "case9.xyz")
    _needs("nibabel")
    path = write_nifti(tmp_path / "case9.nii.gz", IMAGE)
    monkeypatch.setitem(sys.modules, "nibabel", None)  # as if it were not installed
    with pytest.raises(MissingPackageError) as info:
        read_volume(path)
    assert info.value.message.startswith(f"{path}: ") and "pip install 'csmri[io]'" in info.value.hint
    assert user_error(info.value) is info.value  # a user error: one line + hint from the csmri command


# -- csmri data prepare data=folder ---------------------------------------------------------------------


def _good_folder(root: Path, n: int = 3) -> Path:
    """``case0.npy`` .. without labels: readable by every installation."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(root / f"case{i}.npy", rng.uniform(0.1, 1.0, (16, 16, 2)).astype(np.float32))
    return root


def _prepare(capsys, root: Path, *extra: str) -> str:
    return cli_error(
        capsys, "data", "prepare", "data=folder", f"data.root={root}", "data.source.progress=false", *extra
    )


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_prepare_names_the_bad_raw_file_and_writes_nothing(tmp_path, capsys, name):
    raw = _good_folder(tmp_path / "raw")
    build, reason = CORPUS[name]
    _, named = build(raw)
    before = tree(raw)
    line = _prepare(capsys, raw)
    assert str(named) in line and reason in line
    assert tree(raw) == before  # no .csmri_prepared/, no staging folder


def _nan(root: Path) -> Path:
    bad = np.load(root / "case1.npy")
    bad[3, 4, 1] = np.nan
    np.save(root / "case1.npy", bad)
    return root / "case1.npy"


def _inf(root: Path) -> Path:
    bad = np.load(root / "case2.npy")
    bad[0, 0, 0] = -np.inf
    np.save(root / "case2.npy", bad)
    return root / "case2.npy"


def _labels(root: Path, bad_label: np.ndarray) -> Path:
    for i in range(3):
        np.save(root / f"case{i}_label.npy", np.ones((16, 16, 2), np.uint8))
    np.save(root / "case1_label.npy", bad_label)
    return root / "case1_label.npy"


PREPARE_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "nan voxel": (_nan, "NaN/Inf"),
    "inf voxel": (_inf, "NaN/Inf"),
    "label shape mismatch": (lambda r: _labels(r, np.ones((16, 16, 3), np.uint8)), "label shape (16, 16, 3) differs"),
    "complex label": (lambda r: _labels(r, np.ones((16, 16, 2), np.complex64)), "non-integer"),
    "fractional label": (lambda r: _labels(r, np.full((16, 16, 2), 0.5, np.float32)), "non-integer"),
    "string label": (lambda r: _labels(r, np.full((16, 16, 2), "1")), "not numbers"),
    "nan label": (lambda r: _labels(r, np.full((16, 16, 2), np.nan, np.float32)), "NaN/Inf"),
    "label without image": (
        lambda r: (np.save(r / "case7_label.npy", np.ones((16, 16, 2), np.uint8)), r / "case7_label.npy")[1],
        "without an image",
    ),
}


@pytest.mark.parametrize("name", sorted(PREPARE_CASES))
def test_prepare_rejects_bad_values_and_labels(tmp_path, capsys, name):
    raw = _good_folder(tmp_path / "raw")
    damage, reason = PREPARE_CASES[name]
    named = damage(raw)
    before = tree(raw)
    line = _prepare(capsys, raw)
    assert str(named) in line and reason in line
    assert tree(raw) == before


def test_prepare_empty_missing_and_foreign_folders(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"{empty}: no scans found" in _prepare(capsys, empty)
    (empty / "notes.txt").write_text("no scans here")
    assert f"{empty}: no scans found" in _prepare(capsys, empty)
    assert tree(empty) == ["notes.txt"]
    assert f"{tmp_path / 'nowhere'}: no such folder" in _prepare(capsys, tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()

    raw = _good_folder(tmp_path / "raw")
    (tmp_path / "a_file").write_text("keep")
    assert f"{tmp_path / 'a_file'} is a file" in _prepare(capsys, raw, "--out", str(tmp_path / "a_file"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    assert f"{tmp_path / 'busy'} exists and is not a csmri dataset" in _prepare(
        capsys, raw, "--out", str(tmp_path / "busy")
    )
    assert tree(tmp_path / "busy") == ["mine.txt"] and (tmp_path / "a_file").read_text() == "keep"
    # a failure with --out in folders that do not exist yet leaves none of them behind
    np.save(raw / "case1.npy", np.full((16, 16), "x"))
    assert "case1.npy" in _prepare(capsys, raw, "--out", str(tmp_path / "new" / "deeper" / "prepared"))
    assert not (tmp_path / "new").exists() and not (raw / ".csmri_prepared").exists()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.source.nameing=x", "unknown config key `data.source.nameing`"),
        ("+data.source.nameing=x", "unknown option `data.source.nameing` of the folder source (did you mean"),
        ("data.source.naming=alphabetical", "data.source.naming must be one of"),
        ("data.source.size=[15,16]", "data.source.size must be an even int"),
        ("data.source.patient_regex='('", "data.source.patient_regex '(' is not a regex"),
        ("data.source.size=[16,", "cannot parse the override `data.source.size=[16,`"),
        ("data=foldr", "foldr"),
        ("--outdir=x", "unknown option '--outdir=x'"),
    ],
)
def test_prepare_unknown_keys_and_bad_options(tmp_path, capsys, override, expected):
    raw = _good_folder(tmp_path / "raw")
    assert expected in _prepare(capsys, raw, override)
    assert tree(raw) == ["case0.npy", "case1.npy", "case2.npy"]


# -- csmri reconstruct ----------------------------------------------------------------------------------


def _reconstruct(capsys, ckpt: Path, input_: Path, out: Path, *extra: str) -> str:
    return cli_error(capsys, "reconstruct", "--ckpt", str(ckpt), "--input", str(input_), "--out", str(out), *extra)


def test_reconstruct_names_every_bad_input_file(stage1_ckpt, tmp_path, capsys):
    out = tmp_path / "out" / "recon.npz"
    for name in sorted(CORPUS):
        build, reason = CORPUS[name]
        folder = tmp_path / re.sub(r"\W+", "_", name)
        folder.mkdir()
        try:
            entry, named = build(folder)
        except pytest.skip.Exception:
            continue
        line = _reconstruct(capsys, stage1_ckpt, entry, out)
        assert line.startswith(f"csmri reconstruct: error: {named}: "), (name, line)
        assert reason in line, (name, line)
    assert not (tmp_path / "out").exists()


def _kspace_file(path: Path, kspace: np.ndarray, mask: np.ndarray) -> Path:
    np.savez(path, kspace=kspace, mask=mask)
    return path


def test_reconstruct_bad_values_dtypes_and_masks(stage1_ckpt, tmp_path, capsys):
    out = tmp_path / "out" / "recon.nii.gz"
    image = np.moveaxis(IMAGE, -1, 0).copy()  # (S, H, W) for .npy
    kspace = np.ones((2, 16, 16), np.complex64)
    mask = np.ones((16, 16), np.float32)
    nan_image = image.copy()
    nan_image[1, 2, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan_image)
    inf_kspace = kspace.copy()
    inf_kspace[0, 0, 0] = np.inf
    cases = {
        tmp_path / "nan.npy": "holds 1 NaN/Inf values",
        _kspace_file(tmp_path / "inf.npz", inf_kspace, mask): "'kspace' holds 1 NaN/Inf values",
        _kspace_file(tmp_path / "real.npz", kspace.real, mask): "'kspace' is not complex",
        _kspace_file(tmp_path / "strmask.npz", kspace, np.full((16, 16), "1")): "holds values of type <U1",
        _kspace_file(tmp_path / "cmask.npz", kspace, mask.astype(np.complex64)): "does not fit",
        _kspace_file(tmp_path / "shape.npz", kspace, np.ones((8, 16))): "does not fit",
        _kspace_file(tmp_path / "multicoil.npz", np.ones((2, 4, 16, 16), np.complex64), mask): "multi-coil",
    }
    for path, reason in cases.items():
        line = _reconstruct(capsys, stage1_ckpt, path, out)
        assert str(path) in line and reason in line, line
    np.save(tmp_path / "img.npy", image)
    np.save(tmp_path / "m.npy", np.full((16, 16), np.nan))
    line = _reconstruct(capsys, stage1_ckpt, tmp_path / "img.npy", out, "--mask", str(tmp_path / "m.npy"))
    assert f"{tmp_path / 'm.npy'}: the mask holds" in line
    assert f"{tmp_path}/missing.nii.gz: no such file" in _reconstruct(
        capsys, stage1_ckpt, tmp_path / "missing.nii.gz", out
    )
    (tmp_path / "out").mkdir()
    line = _reconstruct(capsys, stage1_ckpt, tmp_path / "img.npy", tmp_path / "out")
    assert f"{tmp_path / 'out'}: is a folder" in line
    assert tree(tmp_path / "out") == []


# -- bad checkpoints: csmri reconstruct, csmri export, csmri eval -------------------------------------------


def _bad_checkpoints(folder: Path, good: Path) -> dict[Path, str]:
    """Checkpoint files that cannot be used -> a fragment of the expected reason."""
    folder.mkdir(exist_ok=True)
    _garbage(folder / "garbage.ckpt")
    (folder / "empty.ckpt").write_bytes(b"")
    truncated = folder / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:4096])
    checkpoint = torch.load(good, map_location="cpu", weights_only=True)
    torch.save({"csmri_module": checkpoint["csmri_module"], "state_dict": {}}, folder / "stripped.ckpt")
    checkpoint["state_dict"] = {k: v[..., :1] if v.ndim else v for k, v in checkpoint["state_dict"].items()}
    torch.save(checkpoint, folder / "other_shapes.ckpt")
    return {
        folder / "garbage.ckpt": "cannot read",
        folder / "empty.ckpt": "cannot read",
        truncated: "cannot read",
        folder / "stripped.ckpt": "cannot load",
        folder / "other_shapes.ckpt": "size mismatch",
        folder / "missing.ckpt": "does not exist",
    }


def test_reconstruct_and_export_name_a_bad_checkpoint(stage1_ckpt, tmp_path, capsys):
    image = tmp_path / "img.npy"
    np.save(image, np.moveaxis(IMAGE, -1, 0))
    out = tmp_path / "out"
    for ckpt, reason in _bad_checkpoints(tmp_path / "ckpts", stage1_ckpt).items():
        line = _reconstruct(capsys, ckpt, image, out / "recon.h5")
        assert str(ckpt) in line and reason in line, line
        line = cli_error(capsys, "export", "--ckpt", str(ckpt), "--format", "onnx", "--out", str(out / "model.onnx"))
        assert line.startswith("csmri export: error: ") and str(ckpt) in line and reason in line, line
    assert not out.exists()
    out.mkdir()
    line = cli_error(capsys, "export", "--ckpt", str(stage1_ckpt), "--format", "torchscript", "--out", str(out))
    assert f"{out}: is a folder" in line and tree(out) == []


@pytest.fixture
def hydra_app(monkeypatch):
    """A Hydra app run in-process sets ``sys.argv`` and ``$CSMRI_HYDRA_APP``: both are restored afterwards."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setenv("CSMRI_HYDRA_APP", "")


def test_eval_names_a_bad_checkpoint_and_writes_no_results(stage1_ckpt, phantom_root, tmp_path, capsys, hydra_app):
    import json

    quiet = ["hydra/job_logging=none", "hydra/hydra_logging=none", "device=cpu", f"data.root={phantom_root}"]
    cases = _bad_checkpoints(tmp_path / "ckpts", stage1_ckpt)
    for i, (ckpt, reason) in enumerate(cases.items()):
        run = tmp_path / f"run{i}"
        line = cli_error(
            capsys, "eval", *quiet, "methods=[zero_filled,recnet]", f"recnet.ckpt={ckpt}", f"hydra.run.dir={run}"
        )
        assert str(ckpt) in line and reason in line, line
        assert {p.name for p in run.iterdir()} <= {".hydra", "run_info.json"}  # no table, no per-slice results
        info = json.loads((run / "run_info.json").read_text())
        assert info["status"] == "failed" and str(ckpt) in info["error"]


@pytest.mark.parametrize(
    ("app", "override", "expected"),
    [
        ("eval", "recnet.ckpts=x.ckpt", "unknown config key `recnet.ckpts`"),
        ("eval", "methods=[zero_filled,", "cannot parse the override `methods=[zero_filled,`"),
        ("train", "trainer.max_epoch=3", "unknown config key `trainer.max_epoch`"),
        ("train", "model.optimizer.lrr=1", "unknown config key `model.optimizer.lrr`"),
        ("train", "loss.alpha_targt=0.2", "unknown config key `loss.alpha_targt`"),
        ("train", "data=foldr", "Could not find 'data/foldr'"),
    ],
)
def test_hydra_apps_report_bad_overrides_before_starting(tmp_path, capsys, hydra_app, app, override, expected):
    line = cli_error(capsys, app, override, f"hydra.run.dir={tmp_path / 'run'}")
    assert line.startswith("csmri: error: ") and expected in line
    assert not (tmp_path / "run").exists()  # no run folder, no run record for a run that never started
