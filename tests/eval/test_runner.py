"""`csmri eval` end to end on the tiny phantom: identical masks, table, figure, recons, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from csmri.eval.runner import evaluate
from csmri.eval.tables import read_per_slice_csv
from tests.helpers import compose_config


def _eval_config(phantom_root, out, *extra):
    return compose_config("eval", [f"data.root={phantom_root}", "data.acceleration=4", "batch_size=4", *extra], out)


def test_eval_zero_filled_and_recnet(phantom_root, stage1_ckpt, tmp_path):
    cfg = _eval_config(
        phantom_root, tmp_path, "methods=[zero_filled,recnet]", f"recnet.ckpt={stage1_ckpt}", "reference=recnet"
    )
    rows = evaluate(cfg)
    names = [r["method"] for r in rows]
    assert names[1:] == ["zero_filled", "recnet"]
    for name in ("per_slice.csv", "table.md", "table.json", "figure.png", "recons.npz", "run_info.json"):
        assert (tmp_path / name).is_file(), name
    records = read_per_slice_csv(tmp_path / "per_slice.csv")
    assert len(records) == 2 * 6  # 1 test patient x 6 slices x 2 methods
    assert {r["key"] for r in records if r["method"] == "recnet"} == {
        r["key"] for r in records if r["method"] == "zero_filled"
    }
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["sis"].startswith("skipped")
    # the footnote says which weights were evaluated and how they were chosen (stage 1: best val/loss, epoch 0)
    footnote = (tmp_path / "table.md").read_text()
    assert "RecNet: best.ckpt, epoch 0 (best val/loss on the validation split)" in footnote
    assert info["checkpoints"]["recnet"].startswith("best.ckpt, epoch 0")


def test_eval_footnote_states_dlmri_settings(phantom_root, tmp_path):
    cfg = _eval_config(
        phantom_root,
        tmp_path,
        "methods=[zero_filled,dlmri]",
        "dlmri.outer_iters=1",
        "dlmri.ksvd_iters=1",
        "dlmri.stride=3",
        "dlmri.workers=1",
        "dlmri.progress=false",
        "dlmri.error_threshold_scale=2",
    )
    evaluate(cfg)
    footnote = (tmp_path / "table.md").read_text()
    # the released schedule is 0.046 x 4, then 0.0322 (1.15 * 0.02 * [2, 2, 2, 2, 1.4]); doubled here
    assert (
        "DLMRI: 1 iterations of 6×6 patches at stride 3, 36 atoms, 1 K-SVD iterations, error thresholds 2 × the "
        "released schedule (0.092, 0.092, 0.092, 0.092, 0.0644, the last repeating), hard data consistency"
    ) in footnote


def test_methods_see_identical_inputs(phantom_root, stage1_ckpt, tmp_path):
    """Evaluating with another batch size gives the same zero-filled PSNR per slice: same masks."""
    a = _eval_config(phantom_root, tmp_path / "a", "methods=[zero_filled]", "batch_size=1")
    b = _eval_config(phantom_root, tmp_path / "b", "methods=[zero_filled]", "batch_size=5")
    evaluate(a), evaluate(b)
    ra = {r["key"]: r["psnr"] for r in read_per_slice_csv(tmp_path / "a" / "per_slice.csv")}
    rb = {r["key"]: r["psnr"] for r in read_per_slice_csv(tmp_path / "b" / "per_slice.csv")}
    assert ra == pytest.approx(rb, abs=1e-9)


def test_eval_errors(phantom_root, tmp_path):
    with pytest.raises(ValueError, match="recnet.ckpt"):
        evaluate(_eval_config(phantom_root, tmp_path, "methods=[recnet]"))
    with pytest.raises(ValueError, match="unknown method"):
        evaluate(_eval_config(phantom_root, tmp_path, "methods=[magic]"))


def test_eval_logs_table_to_wandb_offline(phantom_root, stage1_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    evaluate(_eval_config(phantom_root, tmp_path, "methods=[zero_filled]", "reference=zero_filled"))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))  # the run file with the logged table


def _perturbed_copy(ckpt, path, scale):
    """A copy of a checkpoint in ``path/checkpoints/best.ckpt`` with every floating-point weight of its network
    multiplied by ``scale``: another "training run" whose reconstructions differ."""
    import torch

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    checkpoint["state_dict"] = {
        k: v * scale if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()
    }
    (path / "checkpoints").mkdir(parents=True)
    torch.save(checkpoint, path / "checkpoints" / "best.ckpt")
    return path / "checkpoints" / "best.ckpt"


def _noisy_copy(ckpt, path, scale: float = 0.5, seed: int = 0):
    """A copy of ``ckpt`` whose convolution kernels carry noise of ``scale`` times their std: a second segmentation
    net that disagrees with the first on some pixels."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    generator = torch.Generator().manual_seed(seed)
    for value in state["state_dict"].values():
        if value.is_floating_point() and value.dim() == 4:
            value += scale * value.std() * torch.randn(value.shape, generator=generator)
    torch.save(state, path)
    return path


def test_a_method_trained_several_times_is_the_mean_of_its_runs(phantom_root, stage1_ckpt, segnet_ckpt, tmp_path):
    """recnet.ckpt=[A,B]: each slice's metrics averaged over the runs; each run as evaluated on its own. Scored by an
    ensemble of two nets, each net's own SIS averages that net's per-slice Dice over the runs, then divides by its
    Dice on the ground truth (recomputed by hand from each run evaluated alone)."""
    from tests.eval.hand_sis import hand_sis

    other = _perturbed_copy(stage1_ckpt, tmp_path / "seed1", 0.9)
    net_b = _noisy_copy(segnet_ckpt, tmp_path / "segnet_b.ckpt")
    nets = f"segnet.ckpt=[{segnet_ckpt},{net_b}]"
    alone, member_dice = {}, {}
    for name, ckpt in (("a", stage1_ckpt), ("b", other)):
        evaluate(_eval_config(phantom_root, tmp_path / name, "methods=[recnet]", f"recnet.ckpt={ckpt}", nets))
        alone[name] = {r["key"]: r for r in read_per_slice_csv(tmp_path / name / "per_slice.csv")}
        member_dice[name] = [hand_sis(tmp_path / name, net, phantom_root)["recnet"] for net in (segnet_ckpt, net_b)]
    assert alone["a"] != alone["b"]

    out = tmp_path / "both"
    rows = evaluate(
        _eval_config(phantom_root, out, "methods=[zero_filled,recnet]", f"recnet.ckpt=[{stage1_ckpt},{other}]", nets)
    )
    records = read_per_slice_csv(out / "per_slice.csv")
    runs = {stage1_ckpt.parent.parent.name: alone["a"], "seed1": alone["b"]}
    for run, expected in runs.items():  # each run's records, as that checkpoint alone scored them
        mine = {r["key"]: r for r in records if r["method"] == f"recnet:{run}"}
        assert mine.keys() == expected.keys()
        for key, record in mine.items():
            assert record["psnr"] == pytest.approx(expected[key]["psnr"], abs=1e-6)
    mean = {r["key"]: r for r in records if r["method"] == "recnet"}
    for key, record in mean.items():
        for metric in ("psnr", "ssim", "nmse", "hfen"):
            assert record[metric] == pytest.approx((alone["a"][key][metric] + alone["b"][key][metric]) / 2, abs=1e-6)
    recnet = next(r for r in rows if r["method"] == "recnet")
    assert recnet["psnr_mean"] == pytest.approx(sum(r["psnr"] for r in mean.values()) / len(mean))

    table = json.loads((out / "table.json").read_text())
    per_run = {r["method"]: r["psnr_mean"] for r in table["runs"]["recnet"]}
    assert per_run == pytest.approx(
        {f"recnet:{run}": sum(r["psnr"] for r in expected.values()) / len(expected) for run, expected in runs.items()}
    )
    footnote = (out / "table.md").read_text()
    assert "RecNet: each slice's metrics averaged over 2 training runs" in footnote
    assert "RecNet per training run (PSNR / SSIM / SIS): " in footnote and "seed1 " in footnote
    assert "| RecNet (mean of 2 runs) (ref.) |" in footnote

    expected_sis = []
    for a, b in zip(member_dice["a"], member_dice["b"], strict=True):  # net by net
        assert a["per_slice"] != pytest.approx(b["per_slice"], abs=1e-6)  # the two runs differ on some slice
        dice = np.mean([(a["per_slice"][key] + b["per_slice"][key]) / 2 for key in a["per_slice"]])
        expected_sis.append(dice / a["dice_gt"])
    assert table["sis_members"]["recnet"] == pytest.approx(expected_sis, abs=1e-9)
    with pytest.raises(ValueError, match="twice"):
        evaluate(_eval_config(phantom_root, tmp_path / "c", "methods=[recnet]", f"recnet.ckpt=[{other},{other}]"))


@pytest.fixture(scope="module")
def segnet_ckpt(phantom_root, tmp_path_factory):
    """best.ckpt of a short segmentation run (tiny U-Net) on the phantom: far from perfect, but it finds the
    structure on fully-sampled images more often than on zero-filled ones."""
    from tests.helpers import train_best_checkpoint

    return train_best_checkpoint(
        tmp_path_factory.mktemp("segnet"),
        [
            "experiment=segnet",
            f"data.root={phantom_root}",
            "trainer.max_epochs=6",
            "data.batch_size=2",
            "model.optimizer.lr=1e-2",
            "model.net.channels=[8,16,32]",
            "trainer.enable_progress_bar=false",
        ],
    )


def test_sis_with_an_ensemble_of_segmentation_nets_equals_the_hand_computation(
    phantom_root, stage1_ckpt, segnet_ckpt, tmp_path
):
    """`segnet.ckpt=[A, B]`: SIS is scored by the ensemble (argmax of the nets' mean probabilities), not by one of its
    members. B is A with its weights perturbed, so the two nets disagree on some pixels."""
    from tests.eval.hand_sis import hand_sis

    other = _noisy_copy(segnet_ckpt, tmp_path / "segnet_b.ckpt")
    out = tmp_path / "eval"
    cfg = _eval_config(
        phantom_root,
        out,
        "methods=[zero_filled,recnet]",
        f"recnet.ckpt={stage1_ckpt}",
        f"segnet.ckpt=[{segnet_ckpt},{other}]",
    )
    evaluate(cfg)
    ensemble = hand_sis(out, [segnet_ckpt, other], phantom_root)
    alone = hand_sis(out, segnet_ckpt, phantom_root)
    rows = {r["method"]: r for r in json.loads((out / "table.json").read_text())["rows"]}
    assert rows["ground_truth"]["dice_mean"] == pytest.approx(ensemble["zero_filled"]["dice_gt"], abs=1e-9)
    for method in ("zero_filled", "recnet"):
        assert rows[method]["sis"] == pytest.approx(ensemble[method]["sis"], abs=1e-9), method
    # the ensemble is not its first member: their per-slice Dice differ somewhere
    assert any(
        ensemble[m]["per_slice"][k] != pytest.approx(alone[m]["per_slice"][k], abs=1e-6)
        for m in ("zero_filled", "recnet")
        for k in alone[m]["per_slice"]
    )
    # each member's own SIS, as it scores the same reconstructions alone, in the JSON and the footnote
    second = hand_sis(out, other, phantom_root)
    members = json.loads((out / "table.json").read_text())["sis_members"]
    assert set(members) == {"zero_filled", "recnet"}
    for method in members:
        assert members[method] == pytest.approx([alone[method]["sis"], second[method]["sis"]], abs=1e-9), method
    assert members["recnet"][0] != pytest.approx(members["recnet"][1], abs=1e-6)  # the two nets disagree
    expected = " / ".join(f"{v:.3f}" for v in members["recnet"])
    assert "SIS as each of the 2 nets alone scores it: " in (out / "table.md").read_text()
    assert f"RecNet {expected}" in (out / "table.md").read_text()


def test_sis_end_to_end_equals_the_hand_computation(phantom_root, stage1_ckpt, segnet_ckpt, tmp_path):
    """`csmri eval` with a segmentation net: each method's SIS, Dice and the ground-truth normaliser in table.json and
    per_slice.csv equal their recomputation from the saved reconstructions, the labels and the net (see
    tests/eval/hand_sis.py)."""
    from tests.eval.hand_sis import hand_sis

    cfg = _eval_config(
        phantom_root,
        tmp_path,
        "methods=[zero_filled,recnet]",
        f"recnet.ckpt={stage1_ckpt}",
        f"segnet.ckpt={segnet_ckpt}",
    )
    evaluate(cfg)
    expected = hand_sis(tmp_path, segnet_ckpt, phantom_root)
    assert expected.keys() == {"zero_filled", "recnet"}
    rows = {r["method"]: r for r in json.loads((tmp_path / "table.json").read_text())["rows"]}
    records = read_per_slice_csv(tmp_path / "per_slice.csv")
    dice_gt = expected["zero_filled"]["dice_gt"]
    assert 0.5 < dice_gt < 1  # the net finds the structure, imperfectly: the normaliser matters
    assert rows["ground_truth"]["dice_mean"] == pytest.approx(dice_gt, abs=1e-9)
    for method, hand in expected.items():
        assert rows[method]["sis"] == pytest.approx(hand["sis"], abs=1e-9), method
        assert rows[method]["dice_mean"] == pytest.approx(hand["dice"], abs=1e-9), method
        mine = {r["key"]: r["dice"] for r in records if r["method"] == method and r["dice"] is not None}
        assert mine == pytest.approx(hand["per_slice"], abs=1e-9), method
    # zero-filling loses detail the net relies on: its SIS is visibly below 1 (a normaliser from the zero-filled
    # images themselves would make it exactly 1)
    assert expected["zero_filled"]["sis"] < 0.95


def test_eval_reference_defaults_to_last_and_must_be_a_method(tmp_path):
    import torch

    from csmri.errors import CheckpointError, ConfigError
    from csmri.eval.runner import build_methods, reference_method

    cfg = compose_config("eval", ["methods=[zero_filled,recnet]"], tmp_path)
    with pytest.raises(ConfigError, match="recnet.ckpt"):
        build_methods(cfg, torch.device("cpu"))
    cfg = compose_config("eval", ["methods=[recnet]", f"recnet.ckpt={tmp_path}/missing.ckpt"], tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        build_methods(cfg, torch.device("cpu"))

    cfg = compose_config("eval", ["methods=[zero_filled,recnet]"], tmp_path)
    assert reference_method(cfg) == "recnet"
    cfg = compose_config("eval", ["methods=[zero_filled,recnet]", "reference=refinement"], tmp_path)
    with pytest.raises(ConfigError, match="not among methods"):
        reference_method(cfg)
