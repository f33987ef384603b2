"""Blinded reader-study kit, standing in for the paper's expert mean opinion score (MOS).

Workflow::

    csmri eval ... hydra.run.dir=EVAL                  # writes EVAL/recons.npz (csmri.eval.recons)
    csmri readers export --eval-dir EVAL --out STUDY [--seed 0]
    # hand STUDY/study/ (index.html + images/) to each reader; keep STUDY/key.json away from them
    csmri readers score r1.csv r2.csv --key STUDY/key.json [--reference refinement]

Modules: :mod:`.export` (anonymous PNGs, the rating page ``page.html``, ``key.json``), :mod:`.score`
(un-blinding, MOS, Wilcoxon p-values), :mod:`.protocol` (criteria, rating scale, key format). The command line
``csmri readers`` is :mod:`csmri.app.readers`.
"""

from csmri.eval.reader_study.export import export_reader_study, render_page, select_slices
from csmri.eval.reader_study.protocol import CRITERIA, CRITERIA_TITLES, KEY_FORMAT, RATING_SCALE
from csmri.eval.reader_study.score import read_ratings, score_ratings, write_scores

__all__ = [
    "CRITERIA",
    "CRITERIA_TITLES",
    "KEY_FORMAT",
    "RATING_SCALE",
    "export_reader_study",
    "render_page",
    "read_ratings",
    "score_ratings",
    "select_slices",
    "write_scores",
]
