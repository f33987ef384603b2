"""`csmri reproduce` / `make reproduce`: a declared pipeline, run by :mod:`csmri.pipeline`.

    csmri reproduce [profile=quick_open|quick|paper|smoke | pipeline=FILE] [data.root=DIR] [results=DIR] [key=value ...]

``profile=NAME`` runs the paper's pipeline file ``experiments/seitzer2018/pipelines/<NAME>.yaml`` (default quick_open)
of a source checkout; ``pipeline=FILE`` runs any pipeline file (its format: :mod:`csmri.pipeline.spec`). Every other
``key=value`` overrides a key of that file (a key that is not in it is an error). The runner trains the stages in
dependency order, skips finished runs, resumes interrupted ones, retrains stale ones (an input's content changed) and
everything downstream, saying why, then evaluates; see :mod:`csmri.pipeline.runner`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import csmri
from csmri.errors import ConfigError
from csmri.pipeline import Runner, load_pipeline, open_pipeline

PROJECT = Path("experiments") / "seitzer2018"  # the paper's project, beside the library in a source checkout
DEFAULT_PROFILE = "quick_open"


def project_dir() -> Path:
    """``experiments/seitzer2018`` of the working directory, else of the checkout csmri was installed from."""
    for root in (Path.cwd(), Path(csmri.__file__).resolve().parents[1]):
        if (root / PROJECT / "pipelines").is_dir():
            return root / PROJECT
    raise ConfigError(
        f"the paper's pipeline files ({PROJECT}/pipelines) are not here",
        "run from a source checkout of csmri (git clone), or pass pipeline=FILE",
    )


def pipeline_file(argv: list[str]) -> tuple[Path, list[str]]:
    """The pipeline file ``argv`` names (``pipeline=FILE``, else ``profile=NAME``) and the remaining overrides."""
    files = [a.split("=", 1)[1] for a in argv if a.startswith("pipeline=")]
    names = [a.split("=", 1)[1] for a in argv if a.startswith("profile=")]
    rest = [a for a in argv if not a.startswith(("pipeline=", "profile="))]
    if files:
        path = Path(files[-1])
        if not path.is_file():
            raise ConfigError(f"no pipeline file {path}")
        return path, rest
    name = names[-1] if names else DEFAULT_PROFILE
    folder = project_dir() / "pipelines"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"unknown profile {name!r}", f"choose one of {known}, or pass pipeline=FILE")
    return path, rest


def load_profile(argv: list[str]):
    """The pipeline file ``argv`` names, composed with its other ``key=value`` overrides."""
    path, rest = pipeline_file(argv)
    return load_pipeline(path, rest)


def open_profile(argv: list[str]) -> Runner:
    """The runner of the pipeline file ``argv`` names, with its other ``key=value`` overrides."""
    path, rest = pipeline_file(argv)
    return open_pipeline(path, rest)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    open_profile(argv).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
