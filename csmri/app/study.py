"""`csmri study` / `make study`: the α / loss-weight study of the paper's stage 2 (``experiments/seitzer2018``).

    csmri study [key=value ...]          # keys of experiments/seitzer2018/study.yaml, e.g. alpha_targets=[0.01,1,100]

The study is the pipeline runner (:mod:`csmri.pipeline`) over a grid of stage-2 settings; the paper's project
(``experiments/seitzer2018/study.py``) declares the grid and writes ``results/study/``.
"""

from __future__ import annotations

import sys

from csmri.app.reproduce import project_dir
from csmri.pipeline import import_hooks


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    study = import_hooks("experiments.seitzer2018.study", project_dir() / "study.yaml")
    return study.main(argv)


if __name__ == "__main__":
    sys.exit(main())
