"""What ``run_info.json`` says about a run that was stopped: real signals to a ``python -m csmri train`` process,
and the record (and ``csmri compare`` line) of a resumed run."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import CSMRI, SUBPROCESS_ENV, compose_config

TINY_STAGE1 = ["experiment=stage1", "model.net.nf=8", "data.batch_size=4", "logger=csv"]


def _default_sigint() -> None:
    """A process started in the background of a non-interactive shell inherits SIGINT ignored; Python then never
    raises KeyboardInterrupt. A user's terminal delivers Ctrl-C: restore that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(run_dir: Path, phantom_root: Path) -> subprocess.Popen:
    args = [*TINY_STAGE1, f"data.root={phantom_root}", "trainer.max_epochs=1000", "trainer.log_every_n_steps=1"]
    return subprocess.Popen(
        [*CSMRI, "train", *args, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=SUBPROCESS_ENV,
        preexec_fn=_default_sigint,
    )


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert process.poll() is None, f"training ended before {path.name} appeared:\n{process.communicate()[0]}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def _stop(process: subprocess.Popen, signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    try:
        output, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "reason", "code"), [(signal.SIGINT, "SIGINT (Ctrl-C)", 130), (signal.SIGTERM, "SIGTERM", 143)]
)
@pytest.mark.slow
def test_a_signal_during_training_records_interrupted(tmp_path, phantom_root, signum, reason, code):
    """Lightning ends a Ctrl-C with ``sys.exit(1)`` and a SIGTERM with ``SIGTERMException`` (exit 0): both are
    ``interrupted``, named, with a resumable checkpoint, and the process exits with 128 + the signal."""
    run_dir = tmp_path / "run"
    process = _start(run_dir, phantom_root)
    _wait_for(run_dir / "csv" / "metrics.csv", process)  # the fit loop has logged a step
    returncode, output = _stop(process, signum)
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["status"] == "interrupted", output
    assert info["error"] == reason
    assert returncode == code, output
    assert f"run interrupted by {reason}: {run_dir}" in output
    assert any((run_dir / "checkpoints").glob("*.ckpt"))
    assert "Traceback" not in output


@pytest.mark.slow
def test_sigterm_before_training_starts_records_interrupted(tmp_path, phantom_root):
    """SIGTERM while the run is still being set up (before Lightning installs its own handler) is an interruption
    too, not a silent death that leaves ``running`` behind."""
    run_dir = tmp_path / "run"
    process = _start(run_dir, phantom_root)
    _wait_for(run_dir / "run_info.json", process)
    returncode, output = _stop(process, signal.SIGTERM)
    info = json.loads((run_dir / "run_info.json").read_text())
    assert (info["status"], info["error"], returncode) == ("interrupted", "SIGTERM", 143), output


def test_sigterm_that_a_library_turns_into_another_error_is_still_an_interruption(tmp_path, phantom_root, monkeypatch):
    """A SIGTERM raised inside library code may surface as that library's own error (OmegaConf, while Hydra builds the
    Trainer, once failed with ``AttributeError: 'NoneType' object has no attribute '_invalidate_flags_cache'``): the
    run was still stopped by the signal, and says so."""
    import os

    import csmri.app.train as app
    from csmri.run_info import RunTerminated

    def build_trainer_interrupted(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # csmri's handler raises RunTerminated here
        except RunTerminated:
            raise AttributeError("'NoneType' object has no attribute '_invalidate_flags_cache'") from None

    monkeypatch.setattr(app, "build_trainer", build_trainer_interrupted)
    cfg = compose_config("train", [*TINY_STAGE1, f"data.root={phantom_root}"], tmp_path / "run")
    with pytest.raises(SystemExit) as stopped:
        app.train(cfg)
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert (info["status"], info["error"], stopped.value.code) == ("interrupted", "SIGTERM", 143)


def test_a_failure_is_failed_with_one_line(tmp_path, phantom_root, monkeypatch):
    """Any other exception is ``failed`` with its one line (not ``interrupted``)."""
    import lightning as L

    from csmri.app.train import train

    def broken(self, *args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(L.Trainer, "fit", broken)
    cfg = compose_config("train", [*TINY_STAGE1, f"data.root={phantom_root}"], tmp_path / "run")
    with pytest.raises(RuntimeError):
        train(cfg)
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert (info["status"], info["error"]) == ("failed", "RuntimeError: disk on fire")


def test_a_resumed_run_records_and_compare_shows_what_it_resumed_from(tmp_path, phantom_root, capsys, monkeypatch):
    from csmri.app.compare import main as compare_main
    from csmri.app.train import train

    common = [*TINY_STAGE1, f"data.root={phantom_root}", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
    first, second, third = tmp_path / "first", tmp_path / "second", tmp_path / "third"
    train(compose_config("train", [*common, "trainer.max_epochs=1"], first))
    ckpt = first / "checkpoints" / "last.ckpt"
    train(compose_config("train", [*common, "trainer.max_epochs=2", f"ckpt_path={ckpt}"], second))
    ckpt2 = second / "checkpoints" / "last.ckpt"
    train(compose_config("train", [*common, "trainer.max_epochs=3", f"ckpt_path={ckpt2}"], third))

    assert "resumed_from" not in json.loads((first / "run_info.json").read_text())
    resumed = json.loads((third / "run_info.json").read_text())["resumed_from"]
    assert resumed["run_dir"] == str(second) and resumed["checkpoint"] == str(ckpt2)
    assert resumed["run_status"] == "finished"
    assert resumed["resumed_from"]["run_dir"] == str(first)  # the chain survives in the newest record

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert compare_main(["third", "first", "--out", "c.png"]) == 0
    table = capsys.readouterr().out
    assert "resumed from" in table
    assert "second/checkpoints/last.ckpt <- first/checkpoints/last.ckpt" in table


def test_a_resume_into_its_own_folder_keeps_the_earlier_record(tmp_path, phantom_root):
    """Resuming into the folder that wrote the checkpoint replaces its run_info.json: what it replaced (status,
    start) is kept in ``resumed_from``."""
    from csmri.app.train import train

    common = [*TINY_STAGE1, f"data.root={phantom_root}", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
    run = tmp_path / "run"
    train(compose_config("train", [*common, "trainer.max_epochs=1"], run))
    started = json.loads((run / "run_info.json").read_text())["started"]
    info_path = run / "run_info.json"
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()), "status": "interrupted"}))
    train(compose_config("train", [*common, "trainer.max_epochs=2", f"ckpt_path={run}/checkpoints/last.ckpt"], run))
    info = json.loads(info_path.read_text())
    assert info["status"] == "finished"
    assert info["resumed_from"]["run_status"] == "interrupted" and info["resumed_from"]["started"] == started
