"""A run killed with SIGKILL resumes from its last checkpoint and ends where an uninterrupted run ends."""

from __future__ import annotations

import signal
import subprocess
import time

import torch

from tests.helpers import CSMRI, SUBPROCESS_ENV, run_csmri


def _args(phantom_root, run_dir, *extra):
    return [
        "train",
        "experiment=stage1",
        f"data.root={phantom_root}",
        "model.nf=4",
        "data.batch_size=2",
        "data.acceleration=4",
        "trainer.max_epochs=4",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        "callbacks.last_checkpoint.every_n_train_steps=2",
        *extra,
    ]


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
