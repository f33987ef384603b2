"""Kept checkpoints: ``last.ckpt`` holds the full training state, ``best.ckpt`` only what inference and evaluation
read (no optimiser states, discriminator or replay buffer), and every reader of ``best.ckpt`` still loads it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import csmri
from csmri.app.reconstruct import main as reconstruct_main
from csmri.errors import ConfigError, InferenceError
from csmri.eval.methods import CheckpointMethod
from csmri.lit.checkpoints import INFERENCE_ONLY, inference_checkpoint, refuse_inference_only_resume

TRAINING_ONLY = ("discriminator.", "replay.")


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_best_is_inference_only_last_is_full(stage2_ckpt, stage1_ckpt):
    best_path = stage2_ckpt.parent / "best.ckpt"
    best, last = _load(best_path), _load(stage2_ckpt)
    assert "optimizer_states" not in best and "lr_schedulers" not in best
    assert not any(k.startswith(TRAINING_ONLY) for k in best["state_dict"])
    assert best[INFERENCE_ONLY] == ["discriminator.", "replay."]
    assert len(last["optimizer_states"]) == 2 and INFERENCE_ONLY not in last  # G and D: a run resumes from last
    assert any(k.startswith("discriminator.") for k in last["state_dict"]) and "replay.images" in last["state_dict"]
    assert set(best["state_dict"]) == {k for k in last["state_dict"] if not k.startswith(TRAINING_ONLY)}
    assert best_path.stat().st_size * 4 < stage2_ckpt.stat().st_size
    for key in ("csmri_module", "csmri_acquisition", "perceptual_backbone", "hyper_parameters", "epoch"):
        assert key in best
    # stage 1's best.ckpt (what model.net.recon_ckpt reads, as stage2_ckpt's run did): weights without optimiser state
    stage1 = _load(stage1_ckpt)
    assert "optimizer_states" not in stage1 and stage1[INFERENCE_ONLY] == []
    assert "optimizer_states" in _load(stage1_ckpt.parent / "last.ckpt")
    # applied again (csmri export --format checkpoint of a best.ckpt) it leaves out the same state
    assert inference_checkpoint(best)[INFERENCE_ONLY] == best[INFERENCE_ONLY]
    with pytest.raises(ConfigError, match="inference-only checkpoint"):
        refuse_inference_only_resume(best_path)


def test_best_loads_in_eval_reconstruct_and_lightning(stage2_ckpt, tmp_path):
    from csmri.lit.refinement import RefinementModule

    best_path = stage2_ckpt.parent / "best.ckpt"
    method = CheckpointMethod(str(best_path))  # how `csmri eval` loads a method
    assert method.provenance.startswith("best.ckpt, epoch 0 (best val/")  # the callback state is kept
    module = RefinementModule.load_from_checkpoint(best_path, map_location="cpu")  # strict, D freshly initialised
    best = _load(best_path)
    for key, value in best["state_dict"].items():
        assert torch.equal(module.state_dict()[key], value), key

    model = csmri.load(stage2_ckpt.parent.parent, device="cpu")  # the run folder: its best.ckpt
    assert model.path == best_path
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    np.save(tmp_path / "img.npy", image)
    args = ["--ckpt", str(stage2_ckpt.parent.parent), "--input", str(tmp_path / "img.npy")]
    assert reconstruct_main([*args, "--out", str(tmp_path / "r.npz")]) == 0
    assert np.load(tmp_path / "r.npz")["reconstruction"].shape == (64, 64)

    # V's U-Net takes multiples of 8: --pad pads 70x70 slices to 72x72 and crops the result back
    np.save(tmp_path / "s70.npy", np.random.default_rng(1).random((70, 70)).astype(np.float32))
    args = ["--ckpt", str(best_path), "--input", str(tmp_path / "s70.npy"), "--out", str(tmp_path / "s70.npz")]
    with pytest.raises(InferenceError, match="slices of 70x70 do not fit") as err:
        reconstruct_main(args)
    assert err.value.hint.endswith("or pass --pad")
    assert reconstruct_main([*args, "--pad"]) == 0
    assert np.load(tmp_path / "s70.npz")["reconstruction"].shape == (70, 70)
    assert np.load(tmp_path / "s70_mask.npy").shape == (72, 72)
