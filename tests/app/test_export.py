"""`csmri export`: ONNX (onnxruntime) and TorchScript files of RecNet, the stage-2 model and DAGAN match PyTorch."""

from __future__ import annotations

import warnings

import pytest
import torch

from csmri.app.cli import main as csmri_main
from csmri.app.export import INPUT_NAMES, OUTPUT_NAMES, example_inputs, export, main, reference, run_onnx
from csmri.inference import TrainedReconstructor

pytest.importorskip("onnxruntime")


def _load_torchscript(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_export_matches_pytorch(stage, fmt, stage1_ckpt, request, tmp_path):
    ckpt = stage1_ckpt if stage == "stage1" else request.getfixturevalue("stage2_ckpt")
    out = tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    error = export(ckpt, fmt, out)  # size: the training size recorded in the checkpoint (64 x 64)
    assert error < 1e-4 and out.is_file()
    model = TrainedReconstructor(ckpt, device="cpu")
    inputs = example_inputs(64, 64, model.acquisition, batch=4, seed=5)
    inputs = (inputs[0] * 30, inputs[1] * 30, inputs[2])  # any intensity scale
    expected = reference(model, *inputs)
    actual = run_onnx(out, *inputs) if fmt == "onnx" else _load_torchscript(out)(*inputs)
    assert actual.shape == (4, 2, 64, 64)
    assert float((actual - expected).abs().max()) < 1e-4 * 30


def test_onnx_interface_and_other_size(stage1_ckpt, tmp_path):
    import onnx

    out = tmp_path / "r.onnx"
    assert main(["--ckpt", str(stage1_ckpt), "--format", "onnx", "--out", str(out), "--size", "48", "32"]) == 0
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == INPUT_NAMES and [o.name for o in graph.output] == OUTPUT_NAMES
    dims = [d.dim_value or d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 48, 32]


def test_export_dagan(dagan_ckpt, tmp_path):
    assert export(dagan_ckpt, "onnx", tmp_path / "dagan.onnx") < 1e-4


def test_export_errors(dagan_ckpt, tmp_path, capsys):
    seg = tmp_path / "seg.ckpt"
    torch.save({"csmri_module": "segmentation", "state_dict": {}, "hyper_parameters": {}}, seg)
    assert csmri_main(["export", "--ckpt", str(seg), "--format", "onnx", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "seg.ckpt is a segmentation checkpoint" in capsys.readouterr().err
    args = ["--ckpt", str(dagan_ckpt), "--format", "torchscript", "--out", str(tmp_path / "d.pt"), "--size", "32", "32"]
    assert csmri_main(["export", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()  # the error, then its hint
    assert len(lines) == 2 and lines[0].startswith("csmri export: error: ") and "do not fit" in lines[0]
    assert lines[1].startswith("  hint: ")
    assert not any(p.suffix in (".onnx", ".pt") for p in tmp_path.iterdir())


def test_inference_only_checkpoint_reconstructs_as_the_training_one(stage2_ckpt, phantom_root, stage1_ckpt, tmp_path):
    from csmri.app.train import train
    from csmri.errors import CheckpointError, ConfigError
    from csmri.eval.methods import load_module
    from tests.helpers import TINY_STAGE2, compose_config

    out = tmp_path / "stage2_inference.ckpt"
    assert main(["--ckpt", str(stage2_ckpt), "--format", "checkpoint", "--out", str(out)]) == 0
    full = torch.load(stage2_ckpt, map_location="cpu", weights_only=True)
    slim = torch.load(out, map_location="cpu", weights_only=True)
    assert "optimizer_states" in full and "optimizer_states" not in slim
    assert slim["csmri_inference_only"] == ["discriminator.", "replay."]  # the frozen VGG is not in the state
    kept = {k for k in full["state_dict"] if not k.startswith(("discriminator.", "replay."))}
    assert set(slim["state_dict"]) == kept and any(k.startswith("refinement.refiner.") for k in kept)
    assert float(slim["state_dict"]["refinement.gate"]) == pytest.approx(0.3)
    assert out.stat().st_size < stage2_ckpt.stat().st_size / 2
    for key in ("csmri_module", "csmri_acquisition", "perceptual_backbone", "hyper_parameters", "epoch", "callbacks"):
        assert slim[key] == full[key]

    # the same reconstruction, bit for bit, through csmri.load's path on other inputs than export's check
    inputs = example_inputs(64, 64, full["csmri_acquisition"], batch=3, seed=7)
    expected = reference(TrainedReconstructor(stage2_ckpt, device="cpu"), *inputs)
    assert torch.equal(reference(TrainedReconstructor(out, device="cpu"), *inputs), expected)
    assert load_module(out).checkpoint_provenance.endswith("(end of training)")

    damaged = dict(slim, state_dict={k: v for k, v in slim["state_dict"].items() if k != "refinement.gate"})
    torch.save(damaged, tmp_path / "damaged.ckpt")
    with pytest.raises(CheckpointError, match="missing refinement.gate"):
        load_module(tmp_path / "damaged.ckpt")

    overrides = ["experiment=stage2", f"data.root={phantom_root}", f"model.net.recon_ckpt={stage1_ckpt}", *TINY_STAGE2]
    with pytest.raises(ConfigError, match="inference-only checkpoint"):
        train(compose_config("train", [*overrides, f"+ckpt_path={out}"], tmp_path / "resume"))
