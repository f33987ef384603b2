"""A tiny stage-2 run and its resume, as a user runs them (a subprocess, W&B offline, no ImageNet VGG on disk):
the console carries none of the known third-party noise, the VGG stand-in is one line, and the W&B run is named,
tagged and grouped, with the kept checkpoints as artifacts; read back from the offline run's own files."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest

from csmri.app.loggers import wandb_group, wandb_run_name, wandb_tags
from csmri.run_info import git_state
from tests.helpers import TINY_STAGE2, compose_config, run_csmri

NOISE = (
    "litlogger",  # Lightning's advertisement
    "anonymous setting",  # W&B's deprecation of what Lightning passes
    "LeafSpec",  # torch's _pytree deprecation inside Lightning
    "module(s) in eval mode",  # the frozen stage-1 net and VGG
    "weights_only",  # torch.load notices on resume
    "!!!!!!!!",  # the old multi-line VGG banner
    "Traceback",
)


def _stage2(phantom_root: Path, stage1_ckpt: Path, run_dir: Path, *extra: str) -> list[str]:
    tiny = [o for o in TINY_STAGE2 if not o.startswith("model.net.perceptual.weights")]
    return [
        "train", "experiment=stage2", f"data.root={phantom_root}", f"model.net.recon_ckpt={stage1_ckpt}", *tiny,
        "model.net.perceptual.weights=imagenet", "data.batch_size=3", "trainer.max_epochs=1",
        "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "seed=3", "tags=[mine]",
        "logger.wandb.log_model=true", f"hydra.run.dir={run_dir}", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(phantom_root, stage1_ckpt, tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """A stage-2 run with W&B offline and a run resumed from its last.ckpt; TORCH_HOME is empty and CSMRI_OFFLINE=1,
    so the ImageNet VGG falls back to its seeded stand-in."""
    tmp = tmp_path_factory.mktemp("quiet")
    env = {"WANDB_MODE": "offline", "TORCH_HOME": str(tmp / "torch"), "COLUMNS": "200"}
    first = tmp / "first"
    result = run_csmri(*_stage2(phantom_root, stage1_ckpt, first), **env)
    assert result.returncode == 0, result.stderr[-3000:]
    second = tmp / "second"
    resume = run_csmri(
        *_stage2(phantom_root, stage1_ckpt, second, "trainer.max_epochs=2", f"ckpt_path={first}/checkpoints/last.ckpt"),
        **env,
    )
    assert resume.returncode == 0, resume.stderr[-3000:]
    return {"first": (first, result), "resumed": (second, resume)}


@pytest.mark.slow
def test_a_tiny_run_and_its_resume_print_no_known_noise(runs):
    for name, (_, result) in runs.items():
        output = result.stdout + result.stderr
        for noise in NOISE:
            assert noise not in output, f"{name}: {noise!r} printed"
        vgg = [line for line in output.splitlines() if "NO IMAGENET VGG19" in line]
        assert len(vgg) == 1, f"{name}: the VGG stand-in should be reported once: {vgg}"
        assert "vgg19-random" in vgg[0] and "CSMRI_OFFLINE=1" in vgg[0]


def _wandb_records(run_dir: Path):
    """The protobuf records of the (single) offline W&B run under ``run_dir``: W&B's transaction log, a LevelDB-style
    log of 32 KiB blocks after a 7-byte header, each record ``<crc u32, length u16, type u8>`` + bytes (type 1 full,
    2 first, 3 middle, 4 last fragment)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, position, block, pending = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk, position = data[position + 7 : position + 7 + length], position + 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


@pytest.mark.slow
def test_the_wandb_run_is_named_tagged_grouped_and_has_the_checkpoints(runs):
    run_dir, _ = runs["first"]
    records = list(_wandb_records(run_dir))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.display_name.startswith("stage2-features=[8,16,32]-") and run.display_name.endswith("-s3")
    assert "recon_ckpt" not in run.display_name and "log_model" not in run.display_name  # paths, logging: left out
    assert run.run_group == "stage2"
    commit = git_state()["commit"][:10]
    assert list(run.tags)[:2] == ["stage2", f"commit:{commit}"] and list(run.tags)[-1] == "mine"
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert {a.type for a in artifacts} == {"model"}
    assert sorted(json.loads(a.metadata)["original_filename"] for a in artifacts) == ["best.ckpt", "last.ckpt"]


def test_run_name_group_and_tags_from_the_config(tmp_path, monkeypatch):
    cfg = compose_config("train", ["experiment=stage2", "seed=3", "tags=[a,b]"], tmp_path)
    overrides = ["experiment=stage2", "loss.alpha_target=0.05", "data.root=/x/y", "seed=3", "trainer.devices=2",
                 "model.net.recon_ckpt=/a/b.ckpt", "+trainer.limit_train_batches=2"]  # fmt: skip
    assert wandb_run_name(cfg, overrides) == "stage2-alpha_target=0.05-limit_train_batches=2-s3"
    assert wandb_run_name(cfg, [f"model.net.nf={'9' * 300}"]).endswith("-s3")
    assert len(wandb_run_name(cfg, [f"model.net.nf={'9' * 300}"])) == 128
    assert wandb_group(cfg) == "stage2"
    monkeypatch.setenv("CSMRI_PIPELINE", "reproduce-quick")
    monkeypatch.setenv("CSMRI_PROFILE", "quick")
    assert wandb_group(cfg) == "reproduce-quick"
    tags = wandb_tags(cfg, ["a", "b"])
    assert tags[:3] == ["stage2", "profile:quick", f"commit:{git_state()['commit'][:10]}"] and tags[-2:] == ["a", "b"]
    assert ("dirty" in tags) == bool(git_state()["dirty"])
