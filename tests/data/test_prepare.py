"""``csmri data prepare`` and the data configs of the bring-your-own-data sources."""

from __future__ import annotations

import argparse
import json

import pytest
from hydra.utils import instantiate

from csmri.app.cli import main as csmri_main
from csmri.app.data import add_prepare_parser, run_prepare
from csmri.config import data_source
from csmri.data import MRIDataModule
from csmri.data.sources.folder import FolderSource
from csmri.errors import BadInputError
from tests.data.sources.test_folder import nifti_folder
from tests.data.sources.test_scan_files import truncate
from tests.eval.hand_sis import hand_sis
from tests.helpers import compose_config, train_config

NAMED = ["folder", "la2018", "acdc", "fastmri_singlecoil"]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="csmri data")
    add_prepare_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["prepare", *argv])


@pytest.mark.parametrize("name", NAMED)
def test_data_configs_compose_and_instantiate(name, tmp_path):
    cfg = compose_config("train", ["experiment=stage1", f"data={name}", f"data.root={tmp_path}"], tmp_path)
    dm = instantiate(cfg.data)
    assert isinstance(dm, MRIDataModule) and isinstance(dm.source, FolderSource)
    assert dm.source.options() == data_source(name).options()  # the Python presets are the config files
    assert dm.layout_dir == tmp_path / ".csmri_prepared" / dm.source.options_hash()


def test_named_presets():
    assert data_source("la2018").naming == "case_dirs" and data_source("la2018").size == [512, 512]
    acdc = data_source("acdc")
    assert acdc.structure == [3] and acdc.label_suffix == "_gt" and acdc.patient_regex == r"^(patient\d+)_"
    fastmri = data_source("fastmri_singlecoil", size=[64, 64])
    assert (fastmri.domain, fastmri.axis, fastmri.transpose, fastmri.labels) == ("kspace", 0, True, "none")
    assert fastmri.size == [64, 64]


def test_prepare_command_writes_reuses_and_forces(tmp_path, capsys):
    root = nifti_folder(tmp_path / "raw", n=3)
    out = tmp_path / "prepared"
    args = parse("data=folder", f"data.root={root}", "--out", str(out), "data.source.progress=false")
    assert run_prepare(args) == 0
    printed = capsys.readouterr().out
    assert "train         1" in printed and f"prepared dataset: {out}" in printed and "data=h5" in printed
    meta = json.loads((out / "meta.json").read_text())
    assert meta["summary"]["slices"]["train"] == 6
    stamp = (out / "meta.json").stat().st_mtime_ns
    assert run_prepare(args) == 0 and (out / "meta.json").stat().st_mtime_ns == stamp
    assert run_prepare(parse(*args.overrides, "--out", str(out), "--force")) == 0
    assert (out / "meta.json").stat().st_mtime_ns != stamp
    # training composes the same source, so it finds the layout prepared without --out
    assert run_prepare(parse("data=folder", f"data.root={root}", "data.source.progress=false")) == 0
    cfg = compose_config("train", ["data=folder", f"data.root={root}"], tmp_path)
    assert (instantiate(cfg.data).layout_dir / "meta.json").is_file()


def test_prepare_command_errors(tmp_path, capsys):
    """User mistakes go through the `csmri` command's one handler: `csmri data prepare: error: ...`, status 2."""

    def error(*argv: str) -> str:
        assert csmri_main(["data", "prepare", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("csmri data prepare: error: ") and err.count("error:") == 1, err
        return err

    root = nifti_folder(tmp_path / "raw", n=3)
    truncate(root / "case2.nii.gz")
    assert str(root / "case2.nii.gz") in error("data=folder", f"data.root={root}", "data.source.progress=false")
    assert not (root / ".csmri_prepared").exists()  # nothing half-written in the user's folder
    assert "missing required value `data.root`" in error("data=folder")
    assert "no source" in error("data=h5", f"data.root={root}")
    typo = error("data=folder", f"data.root={root}", "data.source.nameing=x")
    assert "unknown config key `data.source.nameing`" in typo
    assert "did you mean `data.source.naming`" in error("data=folder", f"data.root={root}", "+data.source.nameing=x")
    with pytest.raises(BadInputError, match=r"case2\.nii\.gz"):  # called directly, the error itself propagates
        run_prepare(parse("data=folder", f"data.root={root}", "data.source.progress=false"))


def test_prepare_command_with_the_phantom_source(tmp_path):
    out = tmp_path / "phantom"
    args = parse(
        "data=phantom",
        "data.source.patients=3",
        "data.source.size=32",
        "data.source.slices=2",
        "--out",
        str(out),
    )
    assert run_prepare(args) == 0
    assert json.loads((out / "meta.json").read_text())["source"] == "phantom"


def test_train_acceptance_on_a_raw_folder_and_a_corrupt_file(tmp_path):
    """`csmri train experiment=stage1 data=folder data.root=DIR` on raw NIfTI files (fast_dev_run)."""
    from csmri.app.train import train

    root = nifti_folder(tmp_path / "raw", n=4)
    overrides = [
        "experiment=stage1",
        "data=folder",
        f"data.root={root}",
        "data.num_workers=0",
        "data.source.progress=false",
        "data.acceleration=4",
        "trainer.fast_dev_run=1",
    ]
    train(train_config(overrides, tmp_path / "run"))
    assert json.loads((tmp_path / "run" / "run_info.json").read_text())["status"] == "finished"
    truncate(root / "case3.nii.gz")
    with pytest.raises(BadInputError, match=r"case3\.nii\.gz"):
        train(train_config(overrides, tmp_path / "run2"))


def test_eval_reports_sis_on_a_raw_folder(tmp_path):
    """A segmentation net trained on a NIfTI folder gives `csmri eval` its SIS column, equal to the hand computation."""
    from csmri.app.train import train
    from csmri.eval.runner import evaluate
    from csmri.eval.tables import read_per_slice_csv

    root = nifti_folder(tmp_path / "raw", n=4)
    data = [
        "data=folder",
        f"data.root={root}",
        "data.num_workers=0",
        "data.source.progress=false",
        "data.acceleration=4",
    ]
    seg = [
        "experiment=segnet",
        *data,
        "trainer.max_epochs=6",
        "data.batch_size=2",
        "model.optimizer.lr=1e-2",
        "model.net.channels=[4,8]",
    ]
    train(train_config(seg, tmp_path / "segnet"))
    ckpt = tmp_path / "segnet" / "checkpoints" / "best.ckpt"
    cfg = compose_config(
        "eval", [*data, "methods=[zero_filled]", "reference=zero_filled", f"segnet.ckpt={ckpt}"], tmp_path / "eval"
    )
    evaluate(cfg)
    assert json.loads((tmp_path / "eval" / "run_info.json").read_text())["sis"] == "computed"
    rows = json.loads((tmp_path / "eval" / "table.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["ground_truth", "zero_filled"]
    # SIS and Dice as recomputed from the saved reconstructions, the folder's labels and the net (tests/eval/hand_sis);
    # the bright-box structure is easy: the net's Dice on the ground truth is high, the normaliser well defined
    hand = hand_sis(tmp_path / "eval", ckpt, instantiate(cfg.data).layout_dir)["zero_filled"]
    assert hand["dice_gt"] > 0.5 and hand["sis"] < 0.95  # not 1: the normaliser comes from the ground truth
    assert rows[0]["dice_mean"] == pytest.approx(hand["dice_gt"], abs=1e-9)
    assert rows[1]["sis"] == pytest.approx(hand["sis"], abs=1e-9)
    assert rows[1]["dice_mean"] == pytest.approx(hand["dice"], abs=1e-9)
    dice = {
        r["key"]: r["dice"] for r in read_per_slice_csv(tmp_path / "eval" / "per_slice.csv") if r["dice"] is not None
    }
    assert dice == pytest.approx(hand["per_slice"], abs=1e-9)

    # a list of checkpoints is an ensemble; one of two identical nets segments exactly like the net alone
    overrides = [*data, "methods=[zero_filled]", "reference=zero_filled", f"segnet.ckpt=[{ckpt},{ckpt}]"]
    evaluate(compose_config("eval", overrides, tmp_path / "eval2"))
    assert "ensemble of 2" in json.loads((tmp_path / "eval2" / "run_info.json").read_text())["sis"]
    assert "ensemble of 2 segmentation nets" in (tmp_path / "eval2" / "table.md").read_text()
    dice2 = {
        r["key"]: r["dice"] for r in read_per_slice_csv(tmp_path / "eval2" / "per_slice.csv") if r["dice"] is not None
    }
    assert dice2 == pytest.approx(dice, abs=1e-12)
