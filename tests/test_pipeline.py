"""The declared pipeline's graph: references resolved to their producers' files, order, errors, run keys, grids."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from csmri.app.cli import main as csmri_main
from csmri.errors import ConfigError
from csmri.pipeline import Ref, open_pipeline, parse_ref
from csmri.pipeline.configs import check_configs
from csmri.pipeline.inputs import run_key


def _pipeline(tmp_path: Path, stages: str, evaluation: str = "", *overrides: str):
    """A runner of a pipeline file with ``stages`` (YAML under ``stages:``) and an optional ``eval:`` body."""
    body = textwrap.dedent(
        f"""\
        # @package _global_
        name: test
        description: a test pipeline
        seed: 0
        work_dir: {tmp_path / "work"}
        results: {tmp_path / "results"}
        launcher: local
        data: {{config: phantom, root: {tmp_path / "data"}, size: 32, patients: 2, slices: 2, acceleration: 4}}
        train_overrides: [trainer.max_epochs=1]
        stages:
        """
    )
    body += textwrap.indent(textwrap.dedent(stages), "  ")
    if evaluation:
        body += "eval:\n" + textwrap.indent(textwrap.dedent(evaluation), "  ")
    path = tmp_path / "pipeline.yaml"
    path.write_text(body)
    return open_pipeline(path, list(overrides))


TWO_STAGES = """\
stage2:                       # declared before what it reads: the order follows the references
  experiment: stage2
  seeds: [0, 1]
  checkpoint: last
  inputs: {model.net.recon_ckpt: "${stage:stage1.ckpt}", model.net.perceptual.weights: "${stage:ae/vgg.pth}"}
  overrides: [trainer.max_epochs=3]
stage1: {experiment: stage1, overrides: [model.net.nf=8]}
ae: {experiment: vgg_autoencoder, enabled: true}
"""
EVAL = """\
methods: [recnet, refinement]
inputs: {recnet.ckpt: "${stage:stage1.best}", refinement.ckpt: "${stage:stage2.ckpt}"}
overrides: [dlmri.progress=false]
"""


def test_references_resolve_to_their_producers_files_in_dependency_order(tmp_path):
    runner = _pipeline(tmp_path, TWO_STAGES, EVAL)
    work = tmp_path / "work"
    assert list(runner.runs) == ["stage2", "stage2_seed1", "stage1", "ae", "eval"]
    assert runner.planned() == ["stage1", "ae", "stage2", "stage2_seed1", "eval"]
    stage2 = runner.command("stage2")
    assert stage2[3:5] == ["train", "experiment=stage2"]
    assert f"model.net.recon_ckpt={work / 'stage1' / 'checkpoints' / 'best.ckpt'}" in stage2  # stage1 declares best
    assert f"model.net.perceptual.weights={work / 'ae' / 'vgg.pth'}" in stage2  # a file its run writes
    assert "seed=0" in stage2 and not any(a.startswith("seed=1") for a in stage2)
    seed1 = runner.command("stage2_seed1")
    assert seed1[-1] == "seed=1" and f"hydra.run.dir={work / 'stage2_seed1'}" in seed1
    assert stage2.index("trainer.max_epochs=1") < stage2.index("trainer.max_epochs=3")  # the stage's own win
    evaluation = runner.command("eval")
    assert evaluation[3] == "eval" and f"recnet.ckpt={work / 'stage1' / 'checkpoints' / 'best.ckpt'}" in evaluation
    runs = [work / "stage2" / "checkpoints" / "last.ckpt", work / "stage2_seed1" / "checkpoints" / "last.ckpt"]
    assert f"refinement.ckpt=[{runs[0]},{runs[1]}]" in evaluation  # a stage with seeds stands for all its runs
    assert [i.name for i in runner.stage_inputs("stage2")] == ["data", "stage1 checkpoint", "ae/vgg.pth"]
    assert [i.producer for i in runner.stage_inputs("eval")] == [None, "stage1", "stage2", "stage2_seed1"]


def test_a_disabled_stage_is_unneeded_and_inputs_referring_to_it_are_left_out(tmp_path):
    runner = _pipeline(tmp_path, TWO_STAGES, EVAL, "stages.ae.enabled=false")
    assert runner.status("ae") == "unneeded" and runner.status("stage1") == "todo"
    assert not any(a.startswith("model.net.perceptual.weights=") for a in runner.command("stage2"))
    assert [i.name for i in runner.stage_inputs("stage2")] == ["data", "stage1 checkpoint"]


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ("a: {experiment: stage1, inputs: {x: '${stage:b.best}'}}\n", r"a: unknown stage 'b' in \$\{stage:b.best\}"),
        (
            "a: {experiment: stage1, inputs: {x: '${stage:c.best}'}}\n"
            "b: {experiment: stage1, inputs: {x: '${stage:a.last}'}}\n"
            "c: {experiment: stage1, inputs: {x: '${stage:b.dir}'}}\n",
            "cycle: a -> c -> b -> a",
        ),
        ("a: {experiment: stage1, inputs: {x: '${stage:a.best}'}}\n", "cycle: a -> a"),
        (
            "a: {experiment: stage1, inputs: {x: '${stage:a.bogus}'}}\n",
            "malformed stage reference in stages.a.inputs.x",
        ),
        ("a: {experiment: stage1, inputs: {x: 'dir/${stage:a.best}'}}\n", "must be a whole value"),
        ("a: {experiment: stage1, inputs: {x: some/file.pth}}\n", "every value must be a stage reference"),
        ("a: {overrides: []}\n", "stages.a names no experiment"),
        ("a: {experiment: stage1, seeds: [0, 1]}\na_seed1: {experiment: stage1}\n", "two runs are named 'a_seed1'"),
    ],
)
def test_a_bad_graph_is_a_clear_error(tmp_path, stages, message):
    with pytest.raises(ConfigError, match=message):
        _pipeline(tmp_path, stages)


def test_parse_ref():
    assert parse_ref("${stage:stage1.ckpt}") == Ref("stage1", "ckpt")
    assert parse_ref("${stage:perceptual/sub/vgg19.pth}") == Ref("perceptual", "file", "sub/vgg19.pth")
    assert str(Ref("a", "file", "w.pth")) == "${stage:a/w.pth}" and str(Ref("a", "last")) == "${stage:a.last}"
    assert parse_ref("trainer.max_epochs=3") is None


def test_the_run_key_changes_with_a_setting_or_an_input_and_not_otherwise():
    inputs = {"data": {"path": "/d", "sha256": "aa"}, "stage1 checkpoint": {"path": "/c", "sha256": "bb"}}
    key = run_key(["experiment=stage2", "seed=0", "trainer.max_epochs=3"], inputs)
    assert len(key) == 12 and int(key, 16) >= 0
    assert run_key(["trainer.max_epochs=3", "experiment=stage2", "seed=0"], inputs) == key  # order of distinct keys
    assert run_key(["experiment=stage2", "seed=5", "trainer.max_epochs=3", "seed=0"], inputs) == key  # last wins
    moved = {**inputs, "stage1 checkpoint": {"path": "/elsewhere", "sha256": "bb"}}
    assert run_key(["experiment=stage2", "seed=0", "trainer.max_epochs=3"], moved) == key  # contents, not paths
    assert run_key(["experiment=stage2", "seed=0", "trainer.max_epochs=4"], inputs) != key
    assert run_key(["experiment=stage2", "seed=0", "trainer.max_epochs=3", "+x=1"], inputs) != key
    changed = {**inputs, "stage1 checkpoint": {"path": "/c", "sha256": "cc"}}
    assert run_key(["experiment=stage2", "seed=0", "trainer.max_epochs=3"], changed) != key
    assert run_key(["experiment=stage2", "seed=0", "trainer.max_epochs=3"], {"data": inputs["data"]}) != key


def test_a_runs_key_follows_its_settings_and_its_inputs_contents(tmp_path):
    runner = _pipeline(tmp_path, TWO_STAGES, EVAL)
    ckpt = tmp_path / "work" / "stage1" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"stage 1")
    key, other = runner.key("stage2"), runner.key("stage2_seed1")
    assert key != other  # another seed
    os.utime(ckpt, (1e9, 1e9))
    assert runner.key("stage2") == key  # touched: the same bytes
    ckpt.write_bytes(b"stage 1 trained again")
    changed = runner.key("stage2")
    assert changed != key and runner.key("stage1") == _pipeline(tmp_path, TWO_STAGES, EVAL).key("stage1")
    longer = _pipeline(tmp_path, TWO_STAGES, EVAL, "stages.stage2.overrides=['trainer.max_epochs=4']")
    assert longer.key("stage2") != changed and longer.key("stage1") == runner.key("stage1")
    unrelated = _pipeline(tmp_path, TWO_STAGES, EVAL, "eval.overrides=[]")
    assert unrelated.key("stage2") == changed  # another run's settings


def test_a_grid_point_is_a_variant_of_a_run(tmp_path):
    runner = _pipeline(tmp_path, TWO_STAGES, EVAL)
    base = runner.runs["stage2"]
    point = base.variant("grid/0", tmp_path / "grid" / "0", {"model.net.perceptual.weights": "random", "seed": 3})
    runner.add(point)
    command = runner.command("grid/0")
    assert [a for a in command if a.startswith("model.net.perceptual.weights=")] == [
        "model.net.perceptual.weights=random"
    ]
    assert [a for a in command if a.startswith("seed=")] == ["seed=3"]  # the pipeline's seed replaced
    assert f"hydra.run.dir={tmp_path / 'grid' / '0'}" in command and point.seed == 3
    # a value replaces the input it stood for: the point no longer reads (nor waits for) the autoencoder's file
    assert [i.name for i in runner.stage_inputs("grid/0")] == ["data", "stage1 checkpoint"]
    assert runner.planned(["grid/0"]) == ["stage1", "grid/0"]
    back = point.variant(
        "grid/1", tmp_path / "grid" / "1", {"model.net.perceptual.weights": Ref("ae", "file", "x.pth")}
    )
    runner.add(back)
    assert f"model.net.perceptual.weights={tmp_path / 'work' / 'ae' / 'x.pth'}" in runner.command("grid/1")
    assert runner.planned(["grid/1"]) == ["stage1", "ae", "grid/1"]  # a target and what it reads from
    with pytest.raises(ConfigError, match="already has a run named 'grid/1'"):
        runner.add(back)
    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        runner.add(base.variant("grid/2", tmp_path, {"x": Ref("nope", "best")}))


def test_a_hydra_launcher_runs_each_training_as_a_one_job_multirun(tmp_path):
    runner = _pipeline(tmp_path, TWO_STAGES, EVAL, "launcher=slurm")
    command = runner.command("stage1")
    assert command[3:6] == ["train", "-m", "hydra/launcher=slurm"]
    work = tmp_path / "work"
    assert f"hydra.sweep.dir={work}" in command and "hydra.sweep.subdir=stage1" in command
    assert not any(a.startswith("hydra.run.dir=") for a in command)
    assert runner.command("eval")[3] == "eval"  # the evaluation runs here


def test_a_typo_in_a_late_stage_fails_before_the_first_stage_trains(tmp_path, monkeypatch):
    import csmri.pipeline.runner as runner_module

    launched = []
    monkeypatch.setattr(runner_module, "subprocess", SimpleNamespace(run=launched.append))
    stages = TWO_STAGES.replace("overrides: [trainer.max_epochs=3]", "overrides: [trainer.max_epohs=3]")
    runner = _pipeline(tmp_path, stages, EVAL)
    with pytest.raises(ConfigError, match="run stage2: unknown config key `trainer.max_epohs`"):
        runner.run()
    assert launched == []  # nothing trained
    check_configs(_pipeline(tmp_path, TWO_STAGES, EVAL), ["stage1", "stage2"])  # the same runs, spelled right


def test_the_cli_reports_pipeline_mistakes_in_one_line(tmp_path, capsys):
    (tmp_path / "cycle.yaml").write_text(
        "name: c\ndescription: c\nseed: 0\nwork_dir: w\nresults: r\ndata: {config: phantom, size: 8}\n"
        "stages:\n  a: {experiment: stage1, inputs: {x: '${stage:a.best}'}}\n"
    )
    assert csmri_main(["reproduce", f"pipeline={tmp_path / 'cycle.yaml'}"]) == 2
    assert capsys.readouterr().err.strip() == "csmri reproduce: error: the stages' references form a cycle: a -> a"
    assert csmri_main(["reproduce", "profile=fast"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("csmri reproduce: error: unknown profile 'fast'")
        and "quick" in err
        and len(err.splitlines()) == 2
    )
    assert csmri_main(["reproduce", "profile=smoke", "sed=3"]) == 2
    assert "bad override" in capsys.readouterr().err
    assert csmri_main(["study", "alpha_target=[1]"]) == 2
    assert "bad override" in capsys.readouterr().err


def test_the_phantoms_further_settings_reach_every_step_and_name_its_folder(tmp_path, monkeypatch):
    """``data.source`` of a pipeline (e.g. the open, traced phantom) is passed to every step as ``data.source.*``
    and names the default data folder, so a phantom of other settings never lands in the same one; a misspelt
    setting fails as the profile loads."""
    from csmri.app.reproduce import open_profile

    monkeypatch.setenv("CSMRI_DATA_DIR", str(tmp_path))
    plain = open_profile(["profile=smoke"])
    traced = open_profile(
        ["profile=smoke", "data.source.atrium=open", "data.source.noise_std=0.04", "data.source.tracing=1.3"]
    )
    settings = ["data.source.atrium=open", "data.source.noise_std=0.04", "data.source.tracing=1.3"]
    assert set(settings) <= set(traced.data_overrides())
    assert not any(o.startswith(("data.source.atrium", "data.source.tracing")) for o in plain.data_overrides())
    assert plain.data_root == tmp_path / "phantom_64_res0.5-1"
    assert traced.data_root == tmp_path / "phantom_64_res0.5-1_atriumopen_noise_std0.04_tracing1.3"
    check_configs(traced, ["stage1"])
    with pytest.raises(ConfigError, match="bad override"):
        open_profile(["profile=smoke", "data.source.atrum=open"])
