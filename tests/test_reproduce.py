"""`csmri reproduce profile=smoke`: the whole pipeline end to end, then a rerun that skips every stage."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import open_dict

import csmri.pipeline.runner as runner_module
from csmri.app.reproduce import load_profile, open_profile
from csmri.errors import ConfigError
from csmri.lit.precision import resolve_feature_precision
from csmri.pipeline import Runner
from csmri.pipeline.spec import runs_of
from experiments.seitzer2018 import project
from experiments.seitzer2018.results import runs_of_experiment
from experiments.seitzer2018.study import Study, load_study
from experiments.seitzer2018.study_report import over_seeds, point_key, seeds_table, sis_psnr_figure, zoom_limits
from tests.helpers import run_csmri


def _reproduce(tmp_path, *extra):
    args = [
        "reproduce",
        "profile=smoke",
        f"work_dir={tmp_path / 'work'}",
        f"results={tmp_path / 'results'}",
        *extra,
    ]
    return run_csmri(*args, timeout=900, CSMRI_DATA_DIR=str(tmp_path / "data"), TORCH_HOME=str(tmp_path / "torch"))


@pytest.mark.slow(seconds=180)  # the suite's longest test: started first (tests/conftest.py)
def test_smoke_pipeline_then_resume(tmp_path):
    result = _reproduce(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = tmp_path / "results"
    for name in ("table.md", "table.json", "per_slice.csv", "figure.png", "README.md", "curves.png"):
        assert (results / name).is_file(), name
    methods = [row["method"] for row in json.loads((results / "table.json").read_text())["rows"]]
    assert methods == ["ground_truth", "zero_filled", "recnet", "dagan", "dlmri", "refinement"]
    readme = (results / "README.md").read_text()
    assert "profile `smoke`" in readme and "seed: 0" in readme
    vgg = "bf16" if resolve_feature_precision("auto", "cpu") else "fp32"  # model.vgg_precision=auto
    assert f"stage 2 `vgg19-file:vgg19_autoencoder.pth (run in {vgg})`" in readme  # offline: the autoencoder stand-in
    footnote = (results / "table.md").read_text()
    assert (
        f"last.ckpt, epoch 0 (end of training); perceptual backbone vgg19-file:vgg19_autoencoder.pth run in {vgg}"
        in footnote
    )
    assert "offline stand-ins" in readme and "not comparable to ImageNet-VGG ones" in readme
    claims = readme[readme.index("## The paper's regime and claims") :]  # every check, measured on this table
    assert claims.count("| calibration |") == 3 and claims.count("| claim |") == 5
    training = readme[readme.index("## Training, on the validation split") :]  # from every stage's CSV log
    assert "![Training curves](curves.png)" in training and "- stage 1: validation PSNR" in training
    assert "- DAGAN: validation NMSE per epoch" in training
    assert "- stage 2 (stage2): validation PSNR per epoch" in training  # both runs of the refinement
    assert "- stage 2 (stage2_seed1): validation PSNR per epoch" in training
    assert "Refinement (ours): each slice's metrics averaged over 2 training runs (stage2: last.ckpt" in footnote
    assert "Refinement (ours) per training run (PSNR / SSIM / SIS): stage2 " in footnote
    assert "| Refinement (ours) (mean of 2 runs) (ref.) |" in footnote
    assert [r["method"] for r in json.loads((results / "table.json").read_text())["runs"]["refinement"]] == [
        "refinement:stage2",
        "refinement:stage2_seed1",
    ]

    again = _reproduce(tmp_path)
    assert again.returncode == 0
    assert again.stdout.count("finished earlier, skipped") == 7

    # the alpha / loss-weight study on the same work dir: reuses stage 1, segnet and DAGAN, then resumes
    study = [
        "study",
        "profile=smoke",
        f"profile_overrides=['work_dir={tmp_path / 'work'}']",
        f"results={tmp_path / 'study'}",
        "alpha_targets=[0.1]",  # the default α: alpha/0 is the default point
        "vgg_weights=[]",  # the w_vgg sweep is the α sweep's code with another key (unit tests below)
        "backbones=[random]",
        "seeds=[0,3]",  # 0 is the profile's seed: the default point, not run twice
        "seeded_sweeps=[backbone]",  # ... and the backbone sweep again at seed 3
    ]
    env = {"CSMRI_DATA_DIR": str(tmp_path / "data"), "TORCH_HOME": str(tmp_path / "torch")}
    first = run_csmri(*study, timeout=900, **env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    table = json.loads((tmp_path / "study" / "table.json").read_text())
    names = ["alpha/0", "backbone/0", "seed/0", "backbone-seed3/0"]
    assert [r["name"] for r in table["runs"]] == names
    assert [r["seed"] for r in table["runs"]] == [0, 0, 3, 3]
    assert [r["default"] for r in table["runs"]] == [True, False, True, False]
    seed_run = json.loads((tmp_path / "work" / "study" / "seed" / "0" / "run_info.json").read_text())
    assert "seed=3" in seed_run["overrides"] and "seed=0" not in seed_run["overrides"]
    repeat = json.loads((tmp_path / "work" / "study" / "backbone-seed3" / "0" / "run_info.json").read_text())
    assert "seed=3" in repeat["overrides"] and "model.net.perceptual.weights=random" in repeat["overrides"]
    assert table["runs"][3]["backbone"] == "vgg19-random"
    # the default point (alpha/0, seed/0) and the random backbone each ran at seeds 0 and 3: summarised over seeds
    settings = table["settings"]
    assert [(s["backbone"], s["default"], s["seeds"]) for s in settings] == [
        ("vgg19-file:vgg19_autoencoder.pth", True, [0, 3]),
        ("vgg19-random", False, [0, 3]),
    ]
    runs = {r["name"]: r for r in table["runs"]}
    paired = settings[1]["delta"]["3"]["psnr"]  # the random backbone minus the default point, both at seed 3
    assert paired == pytest.approx(runs["backbone-seed3/0"]["psnr"] - runs["seed/0"]["psnr"])
    assert "Over seeds" in (tmp_path / "study" / "table.md").read_text()
    assert table["runs"][0]["alpha_target"] == 0.1 and table["runs"][0]["vgg_weight"] == 1.0
    assert table["runs"][0]["backbone"] == "vgg19-file:vgg19_autoencoder.pth"  # offline: the profile's stand-in
    assert table["runs"][1]["backbone"] == "vgg19-random"
    assert set(table["references"]) == {"RecNet", "DAGAN"} and (tmp_path / "study" / "figure.png").is_file()
    assert "validation" in (tmp_path / "study" / "table.md").read_text()
    summary = (tmp_path / "work" / "study" / "backbone-seed3" / "sweep_summary.md").read_text()
    assert "| 0 | finished |" in summary  # each sweep's folder summarised as a Hydra multirun's is
    rerun = run_csmri(*study, timeout=900, **env)
    assert rerun.returncode == 0 and "Epoch" not in rerun.stdout + rerun.stderr  # nothing trained again


def test_profiles_load_and_typos_fail():
    for name in ("quick", "paper", "smoke"):
        profile = load_profile([f"profile={name}"])
        assert {"stage1", "segnet", "stage2", "dagan"} <= set(profile.stages)
    assert load_profile(["profile=smoke", "seed=3"]).seed == 3
    quick_open, quick = load_profile(["profile=quick_open"]), load_profile(["profile=quick"])  # quick, other phantom
    assert dict(quick_open.data.source) == {"atrium": "open", "noise_std": 0.04, "tracing": 1.3}
    assert quick_open.stages == quick.stages and quick_open.results != quick.results
    # the same evaluation but DLMRI's error thresholds, scaled to the noisy phantom's noise (chosen on validation)
    assert quick_open.eval.methods == quick.eval.methods and quick_open.eval.inputs == quick.eval.inputs
    assert list(quick_open.eval.overrides) == [*quick.eval.overrides, "dlmri.error_threshold_scale=2"]
    # `make reproduce`'s default: the phantom in the paper's segmentation regime (chosen on the validation split), into
    # results/; the walled phantom's profile beside it
    default = load_profile([])
    assert (default.name, str(default.results), str(quick.results)) == ("quick_open", "results", "results/quick")
    with pytest.raises(ConfigError, match="bad override"):
        load_profile(["profile=smoke", "sed=3"])
    with pytest.raises(ConfigError, match="unknown profile"):
        load_profile(["profile=fast"])


def test_interrupted_stage_resumes_from_its_checkpoint(tmp_path):
    pipeline = open_profile(["profile=smoke", f"work_dir={tmp_path}"])
    assert pipeline.status("stage1") == "todo"
    ckpt = tmp_path / "stage1" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    assert pipeline.status("stage1") == "resume"
    assert f"ckpt_path={ckpt}" in pipeline.command("stage1")
    assert any(a.startswith("model.net.recon_ckpt=") for a in pipeline.command("stage2"))


def _fake_run(run_dir, overrides, status="finished"):
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"")
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    info = {"status": status, **({"overrides": overrides} if overrides is not None else {})}
    (run_dir / "run_info.json").write_text(json.dumps(info))


def test_a_stage_folder_trained_with_other_overrides_is_stale(tmp_path):
    # the overrides `csmri train` records for stage 1 of the smoke profile: its command without hydra.* and the
    # resume point, written out here from the profile's data settings and stage-1 overrides
    pipeline = open_profile(["profile=smoke", f"work_dir={tmp_path}"])
    p = pipeline.cfg
    recorded = ["experiment=stage1", *pipeline.data_overrides(), *p.train_overrides, *p.stages.stage1.overrides]
    _fake_run(tmp_path / "stage1", recorded)
    assert pipeline.status("stage1") == "done"

    longer = open_profile(["profile=smoke", f"work_dir={tmp_path}", "stages.stage1.overrides=['trainer.max_epochs=9']"])
    assert longer.status("stage1") == "stale"
    old = [o for o in p.stages.stage1.overrides if o != "trainer.max_epochs=9"]
    change = f"the run had {old}, now ['trainer.max_epochs=9']"
    assert longer.stale_reason("stage1") == f"trained with other settings ({change})"
    # an interrupted run is not resumed under new settings either
    stage2 = ["experiment=stage2", *pipeline.data_overrides(), "model.net.recon_ckpt=elsewhere/best.ckpt", "seed=7"]
    _fake_run(tmp_path / "stage2", stage2, status="running")
    assert pipeline.status("stage2") == "stale"
    assert pipeline.stale_reason("stage2").startswith("trained with other settings (the run had ['seed=7'], now [")
    # runs from before csmri recorded overrides are trusted
    _fake_run(tmp_path / "dagan", None)
    assert pipeline.status("dagan") == "done"


def test_the_evaluation_reruns_when_its_command_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no ImageNet VGG: the autoencoder stage is needed
    pipeline = open_profile(["profile=smoke", f"work_dir={tmp_path}"])
    trained = [n for n, r in pipeline.runs.items() if r.command == "train"]
    for stage in trained:  # finished runs of a csmri that recorded neither overrides nor inputs
        _fake_run(tmp_path / stage, None)
    e = pipeline.cfg.eval
    recorded = [
        *pipeline.data_overrides(),
        f"methods=[{','.join(e.methods)}]",
        f"segnet.ckpt={pipeline.ckpt('segnet')}",
        f"recnet.ckpt={pipeline.ckpt('stage1')}",
        f"refinement.ckpt=[{tmp_path / 'stage2' / 'checkpoints' / 'last.ckpt'},"
        f"{tmp_path / 'stage2_seed1' / 'checkpoints' / 'last.ckpt'}]",
        f"dagan.ckpt={pipeline.ckpt('dagan')}",
        *e.overrides,
    ]
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / "table.json").write_text("{}")
    (eval_dir / "run_info.json").write_text(json.dumps({"status": "finished", "overrides": recorded}))
    table = (eval_dir / "table.json").stat().st_mtime
    for ckpt in tmp_path.glob("*/checkpoints/*.ckpt"):
        os.utime(ckpt, (table - 60, table - 60))  # trained before the table was written
    assert pipeline.status("eval") == "done"
    fewer = open_profile(["profile=smoke", f"work_dir={tmp_path}", "eval.methods=[zero_filled,recnet]"])
    assert fewer.status("eval") == "todo"


@pytest.mark.parametrize("name", ["quick", "paper", "smoke"])
def test_gan_stages_are_evaluated_as_the_paper_does(name, tmp_path):
    pipeline = open_profile([f"profile={name}", f"work_dir={tmp_path}"])
    assert pipeline.ckpt("stage2").name == "last.ckpt"  # the end of training
    assert pipeline.ckpt("dagan").name == "best.ckpt"  # DAGAN's protocol: best val NMSE


def test_every_segnet_stage_joins_the_sis_ensemble(tmp_path):
    smoke = open_profile(["profile=smoke", f"work_dir={tmp_path}"])
    assert runs_of_experiment(smoke, "segnet") == ["segnet"]
    assert f"segnet.ckpt={tmp_path / 'segnet' / 'checkpoints' / 'best.ckpt'}" in smoke.command("eval")
    quick = open_profile(["profile=quick", f"work_dir={tmp_path}"])
    names = runs_of_experiment(quick, "segnet")
    assert names[0] == "segnet" and len(names) == 3
    seeds = [[o for o in quick.command(n) if o.startswith("seed=")][-1] for n in names]
    assert len(set(seeds)) == 3  # the same net trained from three seeds (the last seed= wins in Hydra)
    expected = ",".join(str(tmp_path / n / "checkpoints" / "best.ckpt") for n in names)
    assert f"segnet.ckpt=[{expected}]" in quick.command("eval")
    profile = load_profile(["profile=smoke"])
    with open_dict(profile):
        del profile.stages["segnet"]
    with pytest.raises(ConfigError, match="eval: unknown stage 'segnet'"):  # the evaluation's SIS refers to it
        Runner(profile)


def test_every_refinement_stage_is_a_run_of_the_tables_refinement_row(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no ImageNet VGG: the autoencoder stand-in
    quick = open_profile(["profile=quick", f"work_dir={tmp_path}"])
    names = [r.name for r in runs_of(quick.runs, "stage2")]
    assert names == ["stage2", "stage2_seed1", "stage2_seed2"]
    recon = f"model.net.recon_ckpt={tmp_path / 'stage1' / 'checkpoints' / 'best.ckpt'}"
    weights = f"model.net.perceptual.weights={tmp_path / 'perceptual' / 'vgg19_autoencoder.pth'}"
    commands = [quick.command(n) for n in names]
    assert all(recon in c and weights in c and "experiment=stage2" in c for c in commands)  # the same R and backbone
    assert all(
        "model.net.discriminator.net.strides=[2,2,2,1,1,1]" in c for c in commands
    )  # the paper's 16x16 grid at 128²
    seeds = [[o for o in c if o.startswith("seed=")][-1] for c in commands]
    assert seeds == ["seed=0", "seed=1", "seed=2"]  # the last seed= wins in Hydra
    expected = ",".join(str(tmp_path / n / "checkpoints" / "last.ckpt") for n in names)  # each at the end of training
    assert f"refinement.ckpt=[{expected}]" in quick.command("eval")
    paper = open_profile(["profile=paper", f"work_dir={tmp_path}"])
    assert f"refinement.ckpt={tmp_path / 'stage2' / 'checkpoints' / 'last.ckpt'}" in paper.command("eval")


def test_paper_profile_refuses_to_start_without_imagenet_vgg(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache
    pipeline = open_profile(["profile=paper", f"work_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"vgg19-dcbb9e9d\.pth.*vgg16-397923af\.pth.*vgg_standin=true"):
        project.check(pipeline)
    assert "model.net.perceptual.allow_random_fallback=false" in pipeline.command("stage2")
    opted_in = open_profile(["profile=paper", f"work_dir={tmp_path}", "vgg_standin=true"])
    project.check(opted_in)  # no error: the stand-in was asked for
    assert "model.net.perceptual.allow_random_fallback=false" not in opted_in.command("stage2")


def test_study_drops_a_sweep_left_without_values(tmp_path):
    argv = [
        f"profile_overrides=['work_dir={tmp_path}']",
        "vgg_weights=[1.0]",
        "alpha_targets=[0.01,10]",
        "backbones=[]",
        "seeds=[]",
    ]
    study = Study(load_study([*argv[:2], "alpha_targets=[0.01,0.1]", *argv[3:]]))
    assert _swept(study) == {"alpha": ("loss.alpha_target", [0.01, 0.1])}  # w_vgg 1.0 at α 0.1: run by alpha
    assert [(p["name"], p["default"]) for p in study.points()] == [("alpha/0", False), ("alpha/1", True)]
    study = Study(load_study(argv))  # no α sweep point at the default α: the weight sweep runs the default point
    assert _swept(study) == {"alpha": ("loss.alpha_target", [0.01, 10]), "weights": ("loss.weights.vgg", [1.0])}
    assert [p["default"] for p in study.points()] == [False, False, True]


def _swept(study):
    """Sweep name -> (key, values) of a study at the profile's seed."""
    return {name: (s.key, s.values) for name, s in study.sweeps().items() if s.seed is None}


def test_study_compares_perceptual_backbones_at_the_default_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no ImageNet VGG file
    argv = [f"profile_overrides=['work_dir={tmp_path}']", "alpha_targets=[]", "vgg_weights=[1.0]", "seeds=[]"]
    # the quick profile trains the autoencoder stand-in as a stage and stage 2 uses it: the weight sweep runs that
    # default point, the backbone sweep adds the others
    study = Study(load_study(argv))
    assert _swept(study) == {
        "weights": ("loss.weights.vgg", [1.0]),
        "backbone": ("model.net.perceptual.weights", ["random"]),
    }
    points = study.points()
    assert [p["name"] for p in points] == ["weights/0", "backbone/0"]
    assert points[1]["alpha_target"] == 0.1 and points[1]["vgg_weight"] == 1.0  # the defaults
    autoencoder = str(tmp_path / "perceptual" / "vgg19_autoencoder.pth")
    # no other sweep: the backbone sweep runs the default
    alone = Study(load_study([*argv[:2], "vgg_weights=[]", "seeds=[]"]))
    assert _swept(alone) == {"backbone": ("model.net.perceptual.weights", [autoencoder, "random"])}
    # neither the α nor the w_vgg sweep runs the default point and `backbones` leaves it out: the backbone sweep adds it
    only_random = Study(load_study([*argv[:1], "alpha_targets=[]", "vgg_weights=[]", "seeds=[]", "backbones=[random]"]))
    assert _swept(only_random) == {"backbone": ("model.net.perceptual.weights", [autoencoder, "random"])}
    command = study.train_command("backbone/0")
    assert "model.net.perceptual.weights=random" in command and "loss.alpha_target=0.1" in command
    assert [a for a in command if a.startswith("model.net.perceptual.weights=")] == [
        "model.net.perceptual.weights=random"
    ]
    assert study.autoencoder_command() == study.pipeline.command("perceptual")
    # a profile without that stage (paper, stand-in allowed): the study trains its own on the profile's data
    argv = ["profile=paper", "profile_overrides=['work_dir=" + str(tmp_path) + "','vgg_standin=true']", *argv[1:]]
    study = Study(load_study(argv))
    weights = str(tmp_path / "study" / "autoencoder" / "vgg19_autoencoder.pth")
    assert _swept(study)["backbone"] == ("model.net.perceptual.weights", [weights, "random"])
    autoencoder = study.autoencoder_command()
    assert "experiment=vgg_autoencoder" in autoencoder and f"hydra.run.dir={tmp_path / 'study' / 'autoencoder'}" in (
        autoencoder
    )
    assert set(study.pipeline.data_overrides()) <= set(autoencoder)  # the profile's own data, no labels
    assert not any(a.startswith("ckpt_path=") for a in autoencoder)
    last = tmp_path / "study" / "autoencoder" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")  # interrupted: the same command resumes it
    assert study.autoencoder_command()[-1] == f"ckpt_path={last}"
    with pytest.raises(ConfigError, match="unknown backbone 'imagent'"):
        Study(load_study([*argv, "backbones=[imagent]"])).sweeps()


def test_study_reruns_the_default_point_with_other_seeds(tmp_path):
    argv = [f"profile_overrides=['work_dir={tmp_path}']", "alpha_targets=[0.1,10]", "vgg_weights=[]", "backbones=[]"]
    study = Study(load_study([*argv, "seeds=[0,1,2]"]))  # the quick profile's seed is 0: its point is alpha/0
    assert _swept(study)["seed"] == ("seed", [1, 2])
    points = {p["name"]: p for p in study.points()}
    assert [points[n]["seed"] for n in ("alpha/0", "alpha/1", "seed/0", "seed/1")] == [0, 0, 1, 2]
    assert points["seed/1"]["alpha_target"] == 0.1 and points["seed/1"]["vgg_weight"] == 1.0  # the default point
    command = study.train_command("seed/1")
    assert [a for a in command if a.startswith("seed=")] == ["seed=2"]  # the profile's seed=0 replaced
    assert "loss.alpha_target=0.1" in command and f"hydra.run.dir={tmp_path / 'study' / 'seed' / '1'}" in command
    assert "seed" not in Study(load_study([*argv, "seeds=[0]"])).sweeps()  # only the default point: nothing to add


def test_study_repeats_a_seeded_sweep_at_every_other_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no ImageNet VGG file: the autoencoder is the default
    argv = [f"profile_overrides=['work_dir={tmp_path}']", "alpha_targets=[0.01,0.1]", "vgg_weights=[]", "seeds=[0,1,2]"]
    study = Study(load_study([*argv, "backbones=[autoencoder,random]", "seeded_sweeps=[alpha,backbone]"]))
    sweeps = study.sweeps()
    # the default point (α 0.1, the autoencoder) runs at seed 0 in alpha/1 and at seeds 1, 2 in seed/: the repeats
    # leave it out
    assert {name: (s.values, s.seed) for name, s in sweeps.items() if s.seed is not None} == {
        "alpha-seed1": ([0.01], 1),
        "alpha-seed2": ([0.01], 2),
        "backbone-seed1": (["random"], 1),
        "backbone-seed2": (["random"], 2),
    }
    points = {p["name"]: p for p in study.points()}
    assert {n for n, p in points.items() if p["default"]} == {"alpha/1", "seed/0", "seed/1"}
    assert (points["backbone-seed2/0"]["seed"], points["backbone-seed2/0"]["sweep"]) == (2, "backbone")
    assert points["alpha-seed1/0"]["alpha_target"] == 0.01 and points["alpha-seed1/0"]["seed"] == 1
    command = study.train_command("backbone-seed2/0")
    assert [a for a in command if a.startswith("seed=")] == ["seed=2"]  # the profile's seed=0 replaced
    assert "model.net.perceptual.weights=random" in command and "loss.alpha_target=0.1" in command
    assert f"hydra.run.dir={tmp_path / 'study' / 'backbone-seed2' / '0'}" in command
    with pytest.raises(ConfigError, match=r"seeded_sweeps: unknown sweep\(s\) \['seed'\]"):
        Study(load_study([*argv, "seeded_sweeps=[seed]"])).sweeps()


def test_study_summarises_each_setting_over_seeds():
    def run(seed, psnr, sis, backbone="ae", default=False, alpha=0.1):
        setting = {"alpha_target": alpha, "vgg_weight": 1.0, "backbone": backbone, "default": default}
        return {"seed": seed, **setting, "psnr": psnr, "ssim": 0.5, "sis": sis}

    rows = [
        run(0, 21.0, 0.6, backbone="random"),
        run(0, 22.71, 0.732, default=True),
        run(0, 23.0, 0.8, alpha=0.01),  # one seed only: not summarised
        run(1, 22.45, 0.654, default=True),
        run(1, 22.50, None, backbone="random"),  # no SIS for this run: PSNR still paired
        run(2, 21.66, 0.563, default=True),
        run(2, 21.0, 0.5, backbone="random"),
    ]
    default, random = over_seeds(rows)
    assert default["default"] and default["seeds"] == [0, 1, 2] and "delta" not in default
    assert default["psnr"] == pytest.approx({"mean": 66.82 / 3, "min": 21.66, "max": 22.71})
    assert default["sis"] == pytest.approx({"mean": 1.949 / 3, "min": 0.563, "max": 0.732})
    assert random["seeds"] == [0, 1, 2] and random["sis"] == pytest.approx({"mean": 0.55, "min": 0.5, "max": 0.6})
    assert random["delta"][0] == pytest.approx({"psnr": -1.71, "sis": -0.132})
    assert random["delta"][1]["psnr"] == pytest.approx(0.05) and random["delta"][1]["sis"] is None
    assert random["delta"][2] == pytest.approx({"psnr": -0.66, "sis": -0.063})
    table = seeds_table([default, random])
    assert "α target 0.1, w_vgg 1, `ae` (default)" in table and "22.27 (21.66 to 22.71)" in table
    assert "-1.71, +0.05, -0.66" in table and "-0.132, -0.063" in table
    assert over_seeds(rows[:3]) == []  # every setting ran once
    no_sis = over_seeds([{**r, "sis": None} for r in rows])[1]
    assert "| n/a | -1.71, +0.05, -0.66 | n/a |" in seeds_table([default, no_sis])  # no SIS anywhere: PSNR still paired
    other_seeds = [run(5, 21.0, 0.5, backbone="random"), run(6, 21.2, 0.4, backbone="random")]
    unpaired = over_seeds([r for r in rows if r["default"]] + other_seeds)[1]
    assert unpaired["delta"] == {}
    assert seeds_table([default, unpaired]).count("n/a (no seed shared with the default point)") == 2


def test_stage2_uses_the_autoencoder_stand_in_only_without_imagenet_weights(tmp_path, monkeypatch):
    from csmri.models.vgg import imagenet_weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    pipeline = open_profile(["profile=quick", f"work_dir={tmp_path}"])
    weights = f"model.net.perceptual.weights={tmp_path / 'perceptual' / 'vgg19_autoencoder.pth'}"
    assert pipeline.status("perceptual") == "todo" and weights in pipeline.command("stage2")
    assert "experiment=vgg_autoencoder" in pipeline.command("perceptual")
    imagenet = imagenet_weights_file("vgg19")
    imagenet.parent.mkdir(parents=True)
    imagenet.write_bytes(b"")  # ImageNet weights present: they stay the default, the stand-in is not trained
    assert pipeline.status("perceptual") == "unneeded" and weights not in pipeline.command("stage2")


def test_study_figure_zooms_on_the_runs_and_recnet():
    rows = [
        {"name": "alpha/0", "psnr": 23.5, "sis": 0.786},
        {"name": "alpha/1", "psnr": 24.1, "sis": 0.820},
        {"name": "weights/0", "psnr": 22.0, "sis": None},  # not evaluated: ignored
    ]
    references = {"RecNet": {"psnr": 24.3, "sis": 0.833}, "DAGAN": {"psnr": 20.0, "sis": 0.04}}
    (x_lo, x_hi), (y_lo, y_hi) = zoom_limits(rows, references)
    assert (x_lo, x_hi) == pytest.approx((23.25, 24.55)) and (y_lo, y_hi) == pytest.approx((0.766, 0.853))
    assert zoom_limits([], {}) is None


def test_study_figure_numbers_every_run_and_keys_it_in_sweep_order(tmp_path):
    def run(name, sweep, sis, **settings):
        return {"name": name, "sweep": sweep, "psnr": 25.0, "sis": sis, "lambda": -0.0123, "seed": 0, **settings}

    rows = [
        run("seed/0", "seed", 0.86, seed=1),
        run("alpha/0", "alpha", 0.85, alpha_target=0.001),
        run("weights/0", "weights", None, vgg_weight=4.0),  # not evaluated: not plotted, not keyed
        run("alpha-seed1/0", "alpha", 0.84, alpha_target=0.01, seed=1),
    ]
    key = point_key(rows)
    # alpha before seed (the sweeps' order), a seeded repeat says its seed, λ with its sign
    assert [(n, text) for n, _, text in key] == [
        (1, "α·L_pen=0.001, λ=-0.012"),
        (2, "α·L_pen=0.01, seed=1, λ=-0.012"),
        (3, "seed=1, λ=-0.012"),
    ]
    references = {"RecNet": {"psnr": 25.5, "sis": 0.86}, "DAGAN": {"psnr": 20.0, "sis": 0.1}}
    assert sis_psnr_figure(rows, references, tmp_path / "figure.png").stat().st_size > 0


# -- stale stages: `csmri reproduce` against fake `csmri train` / `csmri eval` subprocesses ---------------------------


class FakeCsmri:
    """Stands in for the ``csmri train`` / ``csmri eval`` subprocesses of :meth:`Runner.run_stage`: writes what the
    pipeline reads of a finished run (``run_info.json`` with the job's overrides, checkpoints whose bytes are new for
    every training, the autoencoder's weights file, the evaluation's table). ``calls``: the run folders' names and
    arguments, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.envs: list[dict[str, str]] = []
        self.trainings = 0

    def __call__(self, command, *args, env=None, **kwargs):
        verb, argv = command[3], command[4:]
        run_dir = Path(next(a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")))
        self.calls.append((run_dir.name, argv))
        self.envs.append(env or {})
        run_dir.mkdir(parents=True, exist_ok=True)
        if verb == "train":
            self.trainings += 1
            weights = f"{run_dir.name}: training {self.trainings}".encode()  # every training ends elsewhere
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            for name in ("best.ckpt", "last.ckpt"):
                (run_dir / "checkpoints" / name).write_bytes(weights)
            if "experiment=vgg_autoencoder" in argv:
                (run_dir / "vgg19_autoencoder.pth").write_bytes(weights)
        else:
            (run_dir / "table.json").write_text("{}")
        overrides = [a for a in argv if not a.startswith(("hydra.", "ckpt_path="))]  # as csmri records them
        (run_dir / "run_info.json").write_text(json.dumps({"status": "finished", "overrides": overrides}))
        return subprocess.CompletedProcess(command, 0)

    def ran(self) -> list[str]:
        """The folders run since the last call."""
        names, self.calls = [c[0] for c in self.calls], []
        return names


def _fake_dataset(root: Path) -> Path:
    """A prepared layout as the pipeline's fingerprint sees it: meta.json and one file per patient and split."""
    for split in ("train", "val", "test"):
        (root / split).mkdir(parents=True)
        (root / split / f"{split}_000.h5").write_bytes(b"x" * 100)
    splits = {"train": ["train_000"], "val": ["val_000"], "test": ["test_000"]}
    (root / "meta.json").write_text(json.dumps({"format": "csmri-slices-v1", "source": "phantom", "splits": splits}))
    return root


@pytest.fixture
def fake_pipeline(tmp_path, monkeypatch):
    """``make(*overrides)``: a smoke-profile Runner on a fake dataset whose steps run :class:`FakeCsmri` (results are
    not collected); the fake is ``make.fake``. No ImageNet VGG file: stage 2 uses the profile's autoencoder stage."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fake = FakeCsmri()
    monkeypatch.setattr(runner_module, "subprocess", SimpleNamespace(run=fake))
    monkeypatch.setattr(runner_module, "check_configs", lambda runner, names: None)  # tests/test_pipeline.py pins it
    monkeypatch.setattr(Runner, "collect", lambda self, elapsed_s: self.results)
    data = _fake_dataset(tmp_path / "data")

    def make(*overrides):
        argv = [
            "profile=smoke",
            f"work_dir={tmp_path / 'work'}",
            f"results={tmp_path / 'results'}",
            f"data.root={data}",
        ]
        return open_profile([*argv, *overrides])

    make.fake, make.work = fake, tmp_path / "work"
    return make


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


ALL_STEPS = ["stage1", "segnet", "perceptual", "stage2", "stage2_seed1", "dagan", "eval"]  # the smoke profile's


def test_a_stage_whose_settings_changed_is_set_aside_and_retrained_with_everything_downstream(fake_pipeline, capsys):
    fake, work = fake_pipeline.fake, fake_pipeline.work
    fake_pipeline().run()
    assert fake.ran() == ALL_STEPS
    old_stage1 = (work / "stage1" / "checkpoints" / "best.ckpt").read_bytes()
    longer = "stages.stage1.overrides=['trainer.max_epochs=3']"  # e.g. a pulled profile that trains stage 1 longer
    capsys.readouterr()
    fake_pipeline(longer).run()
    out = capsys.readouterr().out
    assert fake.ran() == ["stage1", "stage2", "stage2_seed1", "eval"]  # segnet, the autoencoder, DAGAN: unchanged
    assert "stage1: stale — trained with other settings (the run had " in out
    assert f"now ['trainer.max_epochs=3']); the old run moved to {work / 'stage1.stale-1'}, training afresh" in out
    assert (work / "stage1.stale-1" / "checkpoints" / "best.ckpt").read_bytes() == old_stage1  # kept, not deleted
    assert "stage2: stale — stage1 runs again first (stage1 checkpoint will change)" in out
    fake_pipeline(longer).run()
    assert fake.ran() == []  # the new runs recorded the new settings
    fake_pipeline().run()  # back to the profile's own settings: stage 1 and what reads it again
    assert fake.ran() == ["stage1", "stage2", "stage2_seed1", "eval"]
    assert (work / "stage1.stale-2").is_dir()


def test_a_work_dir_and_dataset_moved_elsewhere_are_the_same_runs(fake_pipeline, tmp_path):
    # every path in the runs' recorded overrides changes (data.root, the inputs' checkpoints); contents do not
    fake, work = fake_pipeline.fake, fake_pipeline.work
    fake_pipeline().run()
    assert fake.ran() == ALL_STEPS
    (tmp_path / "data").rename(tmp_path / "data_moved")
    work.rename(tmp_path / "work_moved")
    fake_pipeline(f"work_dir={tmp_path / 'work_moved'}", f"data.root={tmp_path / 'data_moved'}").run()
    assert fake.ran() == ["eval"]  # its command names the checkpoints' new paths: evaluated again, nothing retrained


def test_a_retrained_stage1_makes_reproduce_retrain_stage2_and_evaluate_again(fake_pipeline, capsys):
    fake, work = fake_pipeline.fake, fake_pipeline.work
    fake_pipeline().run()
    assert fake.ran() == ALL_STEPS
    # every run is told its pipeline (W&B's group) and profile (a W&B tag), as a `csmri train` reads them
    assert {(e.get("CSMRI_PIPELINE"), e.get("CSMRI_PROFILE")) for e in fake.envs} == {(f"smoke-{work.name}", "smoke")}
    fake_pipeline().run()
    assert fake.ran() == []  # every step finished, its inputs unchanged
    ckpt = work / "stage1" / "checkpoints" / "best.ckpt"
    old = _sha(ckpt)
    ckpt.write_bytes(b"stage 1 trained again")  # stage 1's weights changed (trained again outside the pipeline)
    new = _sha(ckpt)
    old_stage2 = (work / "stage2" / "checkpoints" / "last.ckpt").read_bytes()
    capsys.readouterr()
    fake_pipeline().run()
    out = capsys.readouterr().out
    assert fake.ran() == ["stage2", "stage2_seed1", "eval"]  # segnet, the autoencoder and DAGAN do not read stage 1
    reason = f"stage1 checkpoint changed (sha256 {old[:8]}… → {new[:8]}…)"
    assert f"stage2: stale — {reason}" in out and f"stage2_seed1: stale — {reason}" in out
    assert f"stage2: stale — {reason}; the old run moved to {work / 'stage2.stale-1'}, training afresh" in out
    assert (work / "stage2.stale-1" / "checkpoints" / "last.ckpt").read_bytes() == old_stage2  # kept, not deleted
    assert (work / "stage2" / "checkpoints" / "last.ckpt").read_bytes() != old_stage2  # a new run
    assert f"eval: stale — {reason}; stage2 checkpoint changed (sha256 " in out
    fake_pipeline().run()
    assert fake.ran() == []  # the new runs recorded the new stage-1 checkpoint


def test_a_touched_checkpoint_retrains_nothing(fake_pipeline):
    fake, work = fake_pipeline.fake, fake_pipeline.work
    fake_pipeline().run()
    fake.ran()
    later = (work / "eval" / "table.json").stat().st_mtime + 3600
    for ckpt in work.glob("*/checkpoints/*.ckpt"):
        os.utime(ckpt, (later, later))  # newer than every run that read it and than the table; same bytes
    assert fake_pipeline().status("stage2") == "done" and fake_pipeline().status("eval") == "done"
    fake_pipeline().run()
    assert fake.ran() == []


def test_changed_perceptual_weights_make_stage2_stale(fake_pipeline, capsys):
    fake, work = fake_pipeline.fake, fake_pipeline.work
    fake_pipeline().run()
    fake.ran()
    weights = work / "perceptual" / "vgg19_autoencoder.pth"
    old = _sha(weights)
    weights.write_bytes(b"another autoencoder")
    pipeline = fake_pipeline()
    reason = f"perceptual/vgg19_autoencoder.pth changed (sha256 {old[:8]}… → {_sha(weights)[:8]}…)"
    assert [pipeline.status(s) for s in ALL_STEPS] == ["done", "done", "done", "stale", "stale", "done", "stale"]
    assert pipeline.stale_reason("stage2") == reason
    assert pipeline.stale_reason("eval") == (
        "stage2 runs again first (stage2 checkpoint will change); "
        "stage2_seed1 runs again first (stage2_seed1 checkpoint will change)"
    )
    capsys.readouterr()
    pipeline.run()
    assert f"stage2: stale — {reason}" in capsys.readouterr().out
    assert fake.ran() == ["stage2", "stage2_seed1", "eval"]


def test_a_changed_dataset_makes_every_step_stale(fake_pipeline):
    fake, work = fake_pipeline.fake, fake_pipeline.work
    fake_pipeline().run()
    fake.ran()
    (work.parent / "data" / "train" / "train_000.h5").write_bytes(b"x" * 101)  # a case written again, other size
    pipeline = fake_pipeline()
    assert [pipeline.status(s) for s in ALL_STEPS] == ["stale"] * 7
    assert pipeline.stale_reason("stage1").startswith("data changed (sha256 ")
    pipeline.run()
    assert fake.ran() == ALL_STEPS
    assert sorted(p.name for p in work.glob("*.stale-1")) == sorted(f"{s}.stale-1" for s in ALL_STEPS[:-1])


def test_a_stage_trained_again_in_the_same_invocation_retrains_its_downstream(fake_pipeline, capsys):
    fake, work = fake_pipeline.fake, fake_pipeline.work
    fake_pipeline().run()
    fake.ran()
    shutil.rmtree(work / "stage1")  # stage 1 is trained again from scratch
    capsys.readouterr()
    pipeline = fake_pipeline()
    pipeline.run()
    out = capsys.readouterr().out
    assert "stage2: stale — stage1 runs again first (stage1 checkpoint will change)" in out  # the plan says why
    assert fake.ran() == ["stage1", "stage2", "stage2_seed1", "eval"]
    assert "stage2: stale — stage1 checkpoint changed (sha256" in out  # ... and the step, once stage 1 has run


def test_a_stale_interrupted_stage_starts_afresh(fake_pipeline):
    fake, work = fake_pipeline.fake, fake_pipeline.work
    fake_pipeline().run()
    fake.ran()
    info = work / "stage2" / "run_info.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "status": "interrupted"}))
    assert fake_pipeline().status("stage2") == "resume"  # inputs unchanged: resumed from last.ckpt
    (work / "stage1" / "checkpoints" / "best.ckpt").write_bytes(b"stage 1 trained again")
    pipeline = fake_pipeline()
    assert pipeline.status("stage2") == "stale"
    pipeline.run()
    calls = dict(fake.calls)
    assert not any(a.startswith("ckpt_path=") for a in calls["stage2"])  # a new run, not the old one resumed
    assert (work / "stage2.stale-1" / "run_info.json").is_file()


def test_a_run_without_recorded_inputs_is_kept_with_a_note(fake_pipeline, capsys):
    fake, work = fake_pipeline.fake, fake_pipeline.work
    fake_pipeline().run()
    fake.ran()
    (work / "stage2" / "inputs.json").unlink()  # as trained by a csmri that recorded no inputs
    (work / "stage1" / "checkpoints" / "best.ckpt").write_bytes(b"stage 1 trained again")
    pipeline = fake_pipeline()
    assert pipeline.status("stage2") == "done" and pipeline.status("stage2_seed1") == "stale"
    capsys.readouterr()
    pipeline.run()
    assert "stage2: inputs not recorded (an earlier csmri); kept as it is" in capsys.readouterr().out
    assert fake.ran() == ["stage2_seed1", "eval"]
    # the evaluation without a record: the earlier rule, a checkpoint newer than its table
    (work / "eval" / "inputs.json").unlink()
    table = (work / "eval" / "table.json").stat().st_mtime
    os.utime(work / "stage2" / "checkpoints" / "last.ckpt", (table - 60, table - 60))
    for other in work.glob("*/checkpoints/*.ckpt"):
        if other.parent.parent.name != "stage2":
            os.utime(other, (table - 60, table - 60))
    assert fake_pipeline().status("eval") == "done"
    os.utime(work / "stage2" / "checkpoints" / "last.ckpt", (table + 60, table + 60))
    assert fake_pipeline().stale_reason("eval").startswith("inputs not recorded; ")


def test_the_study_trains_a_stale_prerequisite_afresh(fake_pipeline, tmp_path):
    fake, work = fake_pipeline.fake, fake_pipeline.work
    fake_pipeline().run()
    fake.ran()
    assert fake_pipeline().run_stage("stage1").returncode == 0 and fake.ran() == []  # done: nothing runs
    (tmp_path / "data" / "meta.json").write_text("{}")  # another dataset
    overrides = f"profile_overrides=['work_dir={work}','data.root={tmp_path / 'data'}']"
    Study(load_study(["profile=smoke", overrides])).ensure_prerequisites()
    # what the study's points and references read from, each trained afresh (the autoencoder too: it read the data)
    assert fake.ran() == ["stage1", "segnet", "perceptual", "dagan"]
    assert (work / "stage1.stale-1" / "checkpoints" / "best.ckpt").is_file()
