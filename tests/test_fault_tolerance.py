"""A run killed with SIGKILL resumes from its last checkpoint and ends where an uninterrupted run ends."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import torch

from tests.helpers import CSMRI, SUBPROCESS_ENV, run_csmri


def _args(phantom_root, run_dir, *extra):
    stage2 = any(e.startswith("model.net.recon_ckpt=") for e in extra)
    return [
        "train",
        "experiment=stage2" if stage2 else "experiment=stage1",
        f"data.root={phantom_root}",
        *([] if stage2 else ["model.net.nf=4"]),
        "data.batch_size=2",
        "data.acceleration=4",
        "trainer.max_epochs=4",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        "callbacks.last_checkpoint.every_n_train_steps=2",
        *extra,
    ]


QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_same_final_step(phantom_root, tmp_path):
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        [*CSMRI, *_args(phantom_root, run)], env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if last.is_file() and torch.load(last, weights_only=True)["global_step"] >= 4:
            break
        time.sleep(0.2)
    assert process.poll() is None, "training finished before it could be killed"
    process.send_signal(signal.SIGKILL)  # no exception handler runs: only periodic checkpoints survive
    process.wait()
    killed_at = torch.load(last, weights_only=True)  # a complete, loadable file (written atomically)
    assert 4 <= killed_at["global_step"] < 4 * 6  # 12 training slices / batch 2 = 6 steps per epoch

    resumed = run_csmri(*_args(phantom_root, run, f"ckpt_path={last}"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == 4 * 6 and final["epoch"] == 3


def _state(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _all_checkpoints_load(run):
    files = sorted((run / "checkpoints").glob("*.ckpt"))
    for f in files:
        torch.load(f, weights_only=True)  # raises for a half-written file
    return len(files)


def _kill_when(process, ready, deadline_s=300):
    deadline = time.time() + deadline_s
    while time.time() < deadline and process.poll() is None and not ready():
        time.sleep(0.05)
    assert process.poll() is None, "training finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()


def _epoch_of(last):
    try:
        return torch.load(last, weights_only=True)["epoch"] if last.is_file() else -1
    except Exception:
        return -1


DETERMINISTIC = ["trainer.deterministic=true", "trainer.precision=32-true", "trainer.accelerator=cpu"]


@pytest.mark.slow(seconds=30)
@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_killed_runs_resume_bit_for_bit(stage, phantom_root, stage1_ckpt, tmp_path):
    """SIGKILL after an epoch's checkpoint and again inside a (slowed-down) checkpoint write: every checkpoint
    left on disk loads with weights_only=True, and resuming reaches exactly the weights (and, for stage 2,
    lambda, the normaliser constants and the replay buffer) of an uninterrupted run."""
    from tests.helpers import TINY_STAGE2

    extra = [*DETERMINISTIC, "trainer.max_epochs=3", "callbacks.last_checkpoint.every_n_train_steps=null"]
    if stage == "stage2":
        extra += [f"model.net.recon_ckpt={stage1_ckpt}", *TINY_STAGE2, "data.batch_size=4"]
    reference = tmp_path / "reference"
    result = run_csmri(*_args(phantom_root, reference, *extra))
    assert result.returncode == 0, result.stderr[-3000:]

    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    process = subprocess.Popen([*CSMRI, *_args(phantom_root, run, *extra)], env=SUBPROCESS_ENV, **QUIET)
    _kill_when(process, lambda: _epoch_of(last) >= 0)  # after the first epoch's checkpoint
    assert _all_checkpoints_load(run) >= 1

    # second kill: inside the write of the next checkpoint (slowed down half-way through the file)
    slowed = {**SUBPROCESS_ENV, "CSMRI_TEST_SAVE_DELAY_S": "30"}
    args = _args(phantom_root, run, *extra, f"ckpt_path={last}")
    process = subprocess.Popen([*CSMRI, *args], env=slowed, **QUIET)
    _kill_when(process, lambda: any((run / "checkpoints").glob(".*.tmp-*")))
    assert _all_checkpoints_load(run) >= 1

    result = run_csmri(*_args(phantom_root, run, *extra, f"ckpt_path={last}"))
    assert result.returncode == 0, result.stderr[-3000:]
    expected, actual = _state(reference / "checkpoints" / "last.ckpt"), _state(last)
    assert expected.keys() == actual.keys()
    different = [k for k in expected if not torch.equal(expected[k], actual[k])]
    assert not different, different[:5]


@pytest.mark.slow
def test_a_copied_run_folder_resumes_as_in_place(phantom_root, tmp_path):
    """Continuing a copy of a finished run (or a moved one) overwrites its last.ckpt / best.ckpt; Lightning alone
    would write last-v1.ckpt beside a stale last.ckpt, which csmri would then resume from and evaluate."""
    import shutil

    original, copy = tmp_path / "original", tmp_path / "copy"
    first = run_csmri(*_args(phantom_root, original, "trainer.max_epochs=2"))
    assert first.returncode == 0, first.stderr[-3000:]
    shutil.copytree(original, copy)
    best_before = torch.load(copy / "checkpoints" / "best.ckpt", weights_only=False)["callbacks"]
    resumed = run_csmri(*_args(phantom_root, copy, f"ckpt_path={copy / 'checkpoints' / 'last.ckpt'}"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    names = sorted(p.name for p in (copy / "checkpoints").glob("*.ckpt"))
    assert names == ["best.ckpt", "last.ckpt"]  # no last-v1.ckpt / best-v1.ckpt
    said = f"resuming a run written in {original / 'checkpoints'}: its checkpoints are now in {copy / 'checkpoints'}"
    assert (resumed.stdout + resumed.stderr).count(said) == 1  # once, not once per checkpoint callback
    assert torch.load(copy / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 3
    state = next(
        v
        for k, v in torch.load(copy / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"].items()
        if k.startswith("ModelCheckpoint{'monitor': 'val/loss'")
    )
    old = next(v for k, v in best_before.items() if k.startswith("ModelCheckpoint{'monitor': 'val/loss'"))
    # the best score carried over: the copy's best is the better of the first two epochs and the last two
    assert state["best_model_score"] <= old["best_model_score"] and state["dirpath"] == str(copy / "checkpoints")
    assert (original / "checkpoints" / "last.ckpt").is_file()  # the original is left alone
    assert torch.load(original / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
