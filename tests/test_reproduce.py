"""`csmri reproduce profile=smoke`: the whole pipeline end to end, then a rerun that skips every stage."""

from __future__ import annotations

import json

import pytest

from csmri.app.reproduce import Pipeline, load_profile
from tests.helpers import run_csmri


def _reproduce(tmp_path, *extra):
    args = [
        "reproduce",
        "profile=smoke",
        f"work_dir={tmp_path / 'work'}",
        f"results={tmp_path / 'results'}",
        *extra,
    ]
    return run_csmri(*args, timeout=900, CSMRI_DATA_DIR=str(tmp_path / "data"))


@pytest.mark.slow
def test_smoke_pipeline_then_resume(tmp_path):
    result = _reproduce(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = tmp_path / "results"
    for name in ("table.md", "table.json", "per_slice.csv", "figure.png", "README.md"):
        assert (results / name).is_file(), name
    methods = [row["method"] for row in json.loads((results / "table.json").read_text())["rows"]]
    assert methods == ["ground_truth", "zero_filled", "recnet", "dagan", "dlmri", "refinement"]
    readme = (results / "README.md").read_text()
    assert "profile `smoke`" in readme and "vgg19-" in readme and "seed: 0" in readme

    again = _reproduce(tmp_path)
    assert again.returncode == 0
    assert again.stdout.count("finished earlier, skipped") == 5


def test_profiles_load_and_typos_fail():
    for name in ("quick", "paper", "smoke"):
        profile = load_profile([f"profile={name}"])
        assert set(profile.stages) == {"stage1", "segnet", "stage2", "dagan"}
    assert load_profile(["profile=smoke", "seed=3"]).seed == 3
    with pytest.raises(SystemExit, match="bad override"):
        load_profile(["profile=smoke", "sed=3"])
    with pytest.raises(SystemExit, match="unknown profile"):
        load_profile(["profile=fast"])


def test_interrupted_stage_resumes_from_its_checkpoint(tmp_path):
    pipeline = Pipeline(load_profile(["profile=smoke", f"work_dir={tmp_path}"]))
    assert pipeline.status("stage1") == "todo"
    ckpt = tmp_path / "stage1" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    assert pipeline.status("stage1") == "resume"
    assert f"ckpt_path={ckpt}" in pipeline.train_command("stage1")
    assert any(a.startswith("model.recon_ckpt=") for a in pipeline.train_command("stage2"))
