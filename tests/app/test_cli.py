"""The `csmri` command (csmri/app/cli.py): user mistakes end as one line and exit status 2, the Hydra apps' help and
shell completion."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_csmri


def _one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("csmri: error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


@pytest.mark.slow(seconds=30)
def test_cli_user_errors_are_one_line(tmp_path):
    line = _one_line(run_csmri("train", "experiment=stage2", f"hydra.run.dir={tmp_path}/a"))
    assert "missing required value `model.net.recon_ckpt`" in line
    info = json.loads((tmp_path / "a" / "run_info.json").read_text())
    assert info["status"] == "failed" and "model.net.recon_ckpt" in info["error"]
    line = _one_line(run_csmri("train", "data=h5", f"data.root={tmp_path}/none", f"hydra.run.dir={tmp_path}/b"))
    assert "no dataset at" in line
    info = json.loads((tmp_path / "b" / "run_info.json").read_text())
    assert info["status"] == "failed" and "no dataset at" in info["error"]
    assert not (tmp_path / "b" / "checkpoints" / "on_exception.ckpt").exists()
    result = run_csmri("train", "+trainer.max_epoch=1", f"data.root={tmp_path}/p", f"hydra.run.dir={tmp_path}/c")
    assert "did you mean `trainer.max_epochs`" in _one_line(result)
    assert not (tmp_path / "p").exists()  # nothing prepared for a run that could not start
    data_dir = str(tmp_path / "data")  # the default data root, which a run that cannot start must leave alone
    result = run_csmri("eval", "methods=[zero_filled,unet]", f"hydra.run.dir={tmp_path}/d", CSMRI_DATA_DIR=data_dir)
    line = _one_line(result)
    assert "unknown method `unet`" in line and "data" not in line.split("configured methods:")[1]
    assert not (tmp_path / "data").exists()
    debug = run_csmri("train", "experiment=stage2", f"hydra.run.dir={tmp_path}/f", CSMRI_DEBUG="1")
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    version = run_csmri("--version")
    assert version.returncode == 0 and version.stdout.startswith("csmri ")


@pytest.mark.slow
def test_help_lists_only_the_apps_groups():
    result = run_csmri("eval", "--help")
    groups = result.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    assert "data:" in groups and "experiment:" not in groups and "method" not in groups
    completion = run_csmri("train", "--shell-completion", "install=bash")
    assert completion.returncode == 0 and completion.stdout.rstrip().endswith("hydra_bash_completion csmri")
    query = run_csmri("-sc", "query=bash", COMP_LINE="csmri train experiment=st")
    assert "experiment=stage1" in query.stdout.split()
