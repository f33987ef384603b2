"""csmri installed from a wheel (not editable) finds its configs: they are package data under ``csmri/conf``.

The wheel is built from a copy of the sources in a temporary folder: nothing (``build/``, ``csmri.egg-info/``) is
written into the working tree, and no ``build/lib`` left by an earlier build can ship modules that no longer exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "csmri")  # what the build reads (pyproject: readme, packages.find csmri*)
BUILD_LEFTOVERS = ("build", "csmri.egg-info", "dist")


def copy_sources(dest: Path) -> Path:
    """The files a wheel is built from, copied to ``dest`` (no caches, no build folders)."""
    dest.mkdir(parents=True)
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(source, dest / name)
    return dest


def build_wheel(tmp_path: Path) -> Path:
    """A wheel of the current sources, built in ``tmp_path``; its path."""
    src = copy_sources(tmp_path / "src")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)]
    subprocess.run(build, check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("csmri-*.whl")
    return wheel


def leftovers() -> dict[str, int]:
    """The build folders in the working tree and when they last changed."""
    return {name: (REPO / name).stat().st_mtime_ns for name in BUILD_LEFTOVERS if (REPO / name).exists()}


@pytest.mark.slow
def test_wheel_install_composes_configs_from_any_directory(tmp_path):
    before = leftovers()
    wheel = build_wheel(tmp_path)
    assert leftovers() == before  # nothing written into (or changed in) the working tree
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.startswith("csmri/") and n.endswith(".py")}
    sources = {str(p.relative_to(REPO)) for p in (REPO / "csmri").rglob("*.py") if "__pycache__" not in p.parts}
    assert shipped == sources  # exactly the modules of the tree: no stale build/lib leaks into the wheel

    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_MODE": "disabled"}
    probe = "import csmri; print(csmri.__file__)"
    where = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
    job = subprocess.run(
        [sys.executable, "-m", "csmri", "train", "experiment=stage1", "--cfg", "job"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert job.returncode == 0, job.stderr[-2000:]
    assert "experiment_name: stage1" in job.stdout and "_target_: csmri.lit.ReconstructionModule" in job.stdout


def test_a_stale_build_folder_cannot_leak_into_the_wheel(tmp_path, monkeypatch):
    """The copy the wheel is built from holds only the sources, whatever build folders the tree has."""
    fake_repo = tmp_path / "repo"
    (fake_repo / "csmri").mkdir(parents=True)
    (fake_repo / "csmri" / "__init__.py").write_text("")
    (fake_repo / "pyproject.toml").write_text("")
    (fake_repo / "README.md").write_text("")
    (fake_repo / "build" / "lib" / "csmri").mkdir(parents=True)
    (fake_repo / "build" / "lib" / "csmri" / "deleted_module.py").write_text("")
    (fake_repo / "csmri.egg-info").mkdir()
    (fake_repo / "csmri" / "__pycache__").mkdir()
    monkeypatch.setattr(sys.modules[__name__], "REPO", fake_repo)
    copied = copy_sources(tmp_path / "src")
    files = sorted(str(p.relative_to(copied)) for p in copied.rglob("*"))
    assert files == ["README.md", "csmri", "csmri/__init__.py", "pyproject.toml"]
